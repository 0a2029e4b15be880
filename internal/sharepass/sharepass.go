// Package sharepass hashes and verifies share-link passwords. The control
// plane stores and pushes only the hash (config.Share.PasswordHash); the
// edge's `password` built-in plugin verifies a visitor's password against it
// inside the Wasm sandbox.
//
// Format: "pbkdf2-sha256:<iterations>:<salt hex>:<key hex>"
// (PBKDF2-HMAC-SHA256, 16-byte random salt, 32-byte key) — the format the
// password plugin parses. The work factor is deliberately modest
// (Iterations) because the check runs on the request path inside the
// plugin's time budget; the plugin then remembers a successful login in a
// signed cookie, and share passwords are 8-128 characters.
package sharepass

import (
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
)

// Iterations is the PBKDF2 work factor of new hashes.
const Iterations = 1000

const prefix = "pbkdf2-sha256"

// Hash returns the encoded hash of password with a random salt.
func Hash(password string) (string, error) {
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("sharepass: salt: %w", err)
	}
	key, err := pbkdf2.Key(sha256.New, password, salt, Iterations, 32)
	if err != nil {
		return "", fmt.Errorf("sharepass: hash: %w", err)
	}
	return prefix + ":" + strconv.Itoa(Iterations) + ":" + hex.EncodeToString(salt) + ":" + hex.EncodeToString(key), nil
}

// Verify reports whether password matches the encoded hash, in constant time
// with respect to the key.
func Verify(encoded, password string) bool {
	parts := strings.Split(encoded, ":")
	if len(parts) != 4 || parts[0] != prefix {
		return false
	}
	iter, err := strconv.Atoi(parts[1])
	if err != nil || iter < 1 || iter > 100_000 {
		return false
	}
	salt, err1 := hex.DecodeString(parts[2])
	want, err2 := hex.DecodeString(parts[3])
	// As the password plugin parses it: a 32-byte key (a short one would
	// match by chance), a salt of 8 bytes at least.
	if err1 != nil || err2 != nil || len(want) != 32 || len(salt) < 8 {
		return false
	}
	got, err := pbkdf2.Key(sha256.New, password, salt, iter, len(want))
	if err != nil {
		return false
	}
	return subtle.ConstantTimeCompare(got, want) == 1
}
