package webhooks

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
)

// KeyFile returns the webhook key stored in path (64 hex characters),
// creating the file (mode 0600) with a fresh key when it does not exist.
// Keep it apart from database backups: it opens the webhook secrets.
func KeyFile(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		key := make([]byte, SecretKeySize)
		_, _ = rand.Read(key)
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, fs.ErrExist) {
			return KeyFile(path) // created meanwhile
		}
		if err != nil {
			return nil, fmt.Errorf("webhooks: key file: %w", err)
		}
		_, err = f.WriteString(hex.EncodeToString(key) + "\n")
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return nil, fmt.Errorf("webhooks: key file: %w", err)
		}
		return key, nil
	}
	if err != nil {
		return nil, fmt.Errorf("webhooks: key file: %w", err)
	}
	key, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(key) != SecretKeySize {
		return nil, fmt.Errorf("webhooks: key file %s: want %d hex-encoded bytes", path, SecretKeySize)
	}
	return key, nil
}
