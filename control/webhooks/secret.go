package webhooks

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/privateconnect/pc/control/store"
)

// Webhook secrets are 32 random bytes shown to the user once as 64 hex
// characters. The delivery worker needs the secret itself to sign each body,
// so it cannot be stored as a hash like API keys: it is sealed with
// AES-256-GCM under the control plane's webhook key, with the webhook id as
// additional data (a sealed secret copied onto another webhook does not
// open). The webhook key lives outside the database — <data>/webhook.key
// (0600), or Options.SecretKey — so a copy of the database alone (a backup,
// a stolen disk image of the Badger directory) does not reveal secrets. With
// no key configured the key is kept in the store (meta/webhookkey); that
// protects nothing beyond the store's own protection and is meant for tests
// and embedded uses.

// SecretKeySize is the size of the webhook key (AES-256).
const SecretKeySize = 32

const sealPrefix = "v1:"

// sealer seals and opens webhook secrets.
type sealer struct{ aead cipher.AEAD }

func newSealer(key []byte) (*sealer, error) {
	if len(key) != SecretKeySize {
		return nil, fmt.Errorf("webhooks: secret key must be %d bytes, got %d", SecretKeySize, len(key))
	}
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	g, err := cipher.NewGCM(b)
	if err != nil {
		return nil, err
	}
	return &sealer{aead: g}, nil
}

func (s *sealer) seal(webhookID, secret string) string {
	nonce := make([]byte, s.aead.NonceSize())
	_, _ = rand.Read(nonce)
	ct := s.aead.Seal(nonce, nonce, []byte(secret), []byte(webhookID))
	return sealPrefix + base64.RawStdEncoding.EncodeToString(ct)
}

func (s *sealer) open(webhookID, sealed string) (string, error) {
	b, err := base64.RawStdEncoding.DecodeString(strings.TrimPrefix(sealed, sealPrefix))
	if err != nil || !strings.HasPrefix(sealed, sealPrefix) || len(b) < s.aead.NonceSize() {
		return "", errors.New("webhooks: malformed sealed secret")
	}
	n := s.aead.NonceSize()
	pt, err := s.aead.Open(nil, b[:n], b[n:], []byte(webhookID))
	if err != nil {
		return "", fmt.Errorf("webhooks: secret does not open with this control plane's webhook key: %w", err)
	}
	return string(pt), nil
}

// storedKey loads (or, on first use, creates) the webhook key kept in the
// store when none is configured.
func storedKey(ctx context.Context, kv store.KV) ([]byte, error) {
	var key []byte
	err := kv.Update(ctx, func(tx store.Tx) error {
		v, err := store.GetMeta(tx, "webhookkey")
		if err == nil {
			key, err = hex.DecodeString(string(v))
			return err
		}
		if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		key = make([]byte, SecretKeySize)
		_, _ = rand.Read(key)
		return store.PutMeta(tx, "webhookkey", []byte(hex.EncodeToString(key)))
	})
	return key, err
}

// NewSecret returns a fresh webhook secret: 32 random bytes, hex.
func NewSecret() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Sign returns the X-Webhook-Signature value of body: "sha256=" and the hex
// HMAC-SHA256 of the raw body, keyed with the secret as shown to the user
// (its 64 hex characters, as bytes).
func Sign(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// Verify checks a signature header in constant time (for receivers and tests).
func Verify(secret string, body []byte, signature string) bool {
	return hmac.Equal([]byte(Sign(secret, body)), []byte(signature))
}
