// Package devcert makes the self-signed TLS certificate of a development
// node (`pcd dev --tls`) and test certificate authorities. Agents trust a
// dev certificate with --ca-file <cert.pem> or --pin-sha256 <pin>.
package devcert

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// Files are a certificate and key on disk, with the certificate's pin.
type Files struct {
	CertFile, KeyFile string
	// Pin is the hex SHA-256 of the certificate's SubjectPublicKeyInfo, as
	// agents take it with --pin-sha256.
	Pin string
}

// Ensure returns the dev certificate in dir, creating a self-signed one
// (valid for hosts, one year) on first use.
func Ensure(dir string, hosts []string) (Files, error) {
	f := Files{CertFile: filepath.Join(dir, "cert.pem"), KeyFile: filepath.Join(dir, "key.pem")}
	if _, err := tls.LoadX509KeyPair(f.CertFile, f.KeyFile); err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			return f, fmt.Errorf("devcert: existing certificate unusable: %w", err)
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return f, err
		}
		certPEM, keyPEM, err := SelfSigned(hosts, 365*24*time.Hour)
		if err != nil {
			return f, err
		}
		if err := os.WriteFile(f.KeyFile, keyPEM, 0o600); err != nil {
			return f, err
		}
		if err := os.WriteFile(f.CertFile, certPEM, 0o644); err != nil {
			return f, err
		}
	}
	pin, err := PinOfFile(f.CertFile)
	f.Pin = pin
	return f, err
}

// SelfSigned returns a PEM certificate (its own CA) and key for hosts.
func SelfSigned(hosts []string, validity time.Duration) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	tpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{"Private Connect dev"}, CommonName: hosts[0]},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(validity),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tpl.IPAddresses = append(tpl.IPAddresses, ip)
		} else {
			tpl.DNSNames = append(tpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tpl, tpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), nil
}

// CertPool returns a pool of the certificates of a PEM file (a private CA,
// a dev certificate).
func CertPool(file string) (*x509.CertPool, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s: no PEM certificate", file)
	}
	return pool, nil
}

// ClientTLS returns a TLS client configuration trusting the certificates
// of a PEM file only.
func ClientTLS(file string) (*tls.Config, error) {
	pool, err := CertPool(file)
	if err != nil {
		return nil, err
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}

// PinOfFile returns the pin of the first certificate in a PEM file.
func PinOfFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return "", errors.New("devcert: no PEM certificate")
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(c.RawSubjectPublicKeyInfo)
	return hex.EncodeToString(sum[:]), nil
}
