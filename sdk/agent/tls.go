package agent

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/privateconnect/pc/internal/devcert"
)

// ParsePin decodes an edge certificate pin (Config.PinSHA256, connect's
// --pin-sha256): the hex SHA-256 of the certificate's SubjectPublicKeyInfo,
// colons allowed. pcd logs it at start for its own certificate; from a
// certificate file:
//
//	openssl x509 -in cert.pem -pubkey -noout | openssl pkey -pubin -outform der | sha256sum
func ParsePin(pin string) ([]byte, error) {
	b, err := hex.DecodeString(strings.ToLower(strings.ReplaceAll(pin, ":", "")))
	if err != nil || len(b) != sha256.Size {
		return nil, errors.New("a pin is the hex SHA-256 of the edge certificate's public key (64 hex characters)")
	}
	return b, nil
}

// edgeTLSConfig builds the TLS configuration used to verify edges.
func (a *Agent) edgeTLSConfig() (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if a.cfg.CAFile != "" {
		pool, err := devcert.CertPool(a.cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("agent: CA file: %w", err)
		}
		tc.RootCAs = pool
	}
	if a.cfg.PinSHA256 != "" {
		want, err := ParsePin(a.cfg.PinSHA256)
		if err != nil {
			return nil, fmt.Errorf("agent: PinSHA256: %w", err)
		}
		// The pin replaces chain verification: the certificate is accepted
		// when its public key matches, whoever signed it.
		tc.InsecureSkipVerify = true //nolint:gosec // verified by VerifyPeerCertificate
		tc.VerifyPeerCertificate = func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) == 0 {
				return errors.New("agent: edge sent no certificate")
			}
			cert, err := x509.ParseCertificate(raw[0])
			if err != nil {
				return err
			}
			got := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
			if !strings.EqualFold(hex.EncodeToString(got[:]), hex.EncodeToString(want)) {
				return errors.New("agent: edge certificate does not match the pinned key")
			}
			return nil
		}
	} else if a.cfg.InsecureSkipVerify {
		tc.InsecureSkipVerify = true //nolint:gosec // explicit dev option
	}
	return tc, nil
}

// tlsConfigFor returns the TLS config for one edge address.
func (a *Agent) tlsConfigFor(hostport string) *tls.Config {
	tc := a.tlsConf.Clone()
	if tc.ServerName == "" {
		if host, _, err := net.SplitHostPort(hostport); err == nil {
			tc.ServerName = host
		}
	}
	return tc
}
