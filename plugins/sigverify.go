package plugins

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"math/big"
	"sync"

	"github.com/privateconnect/pc/plugins/abi"
)

// keyCache parses PEM public keys once: verify_signature is called per request with the same
// few keys. It holds at most maxCachedKeys entries and starts over when full.
type keyCache struct {
	mu sync.RWMutex
	m  map[string]cachedKey
}

type cachedKey struct {
	key any // *rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey, or nil when unparseable
}

const maxCachedKeys = 1024

func (c *keyCache) get(pemBytes []byte) any {
	c.mu.RLock()
	k, ok := c.m[string(pemBytes)]
	c.mu.RUnlock()
	if ok {
		return k.key
	}
	key, err := parsePublicKey(pemBytes)
	if err != nil {
		key = nil // never a typed nil
	}
	c.mu.Lock()
	if c.m == nil || len(c.m) >= maxCachedKeys {
		c.m = make(map[string]cachedKey)
	}
	c.m[string(pemBytes)] = cachedKey{key: key}
	c.mu.Unlock()
	return key
}

// parsePublicKey accepts "PUBLIC KEY" (PKIX), "RSA PUBLIC KEY" (PKCS#1) and "CERTIFICATE".
func parsePublicKey(b []byte) (any, error) {
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, errors.New("no PEM block")
	}
	switch block.Type {
	case "PUBLIC KEY":
		return x509.ParsePKIXPublicKey(block.Bytes)
	case "RSA PUBLIC KEY":
		return x509.ParsePKCS1PublicKey(block.Bytes)
	case "CERTIFICATE":
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, err
		}
		return cert.PublicKey, nil
	}
	return nil, errors.New("unsupported PEM block " + block.Type)
}

// verify implements verify_signature; see package abi for the formats.
func (c *keyCache) verify(alg, key, msg, sig []byte) bool {
	switch string(alg) {
	case abi.AlgHS256:
		if len(sig) != sha256.Size {
			return false
		}
		sum := hmacSHA256(key, msg)
		return hmac.Equal(sum[:], sig)
	case abi.AlgRS256:
		pub, ok := c.get(key).(*rsa.PublicKey)
		if !ok {
			return false
		}
		d := sha256.Sum256(msg)
		return rsa.VerifyPKCS1v15(pub, crypto.SHA256, d[:], sig) == nil
	case abi.AlgES256:
		pub, ok := c.get(key).(*ecdsa.PublicKey)
		if !ok || pub.Curve != elliptic.P256() {
			return false
		}
		d := sha256.Sum256(msg)
		if len(sig) == 64 {
			r := new(big.Int).SetBytes(sig[:32])
			s := new(big.Int).SetBytes(sig[32:])
			return ecdsa.Verify(pub, d[:], r, s)
		}
		return ecdsa.VerifyASN1(pub, d[:], sig)
	case abi.AlgEdDSA:
		pub, ok := c.get(key).(ed25519.PublicKey)
		if !ok || len(sig) != ed25519.SignatureSize {
			return false
		}
		return ed25519.Verify(pub, msg, sig)
	}
	return false
}
