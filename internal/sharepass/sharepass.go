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
	"errors"
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

// Parse splits an encoded hash into its parts, checked as the password
// plugin needs them: 1 to 100,000 iterations, a salt of 8 bytes at least and
// a 32-byte key (a shorter one would match by chance).
func Parse(encoded string) (iter int, salt, key []byte, err error) {
	parts := strings.Split(encoded, ":")
	if len(parts) != 4 || parts[0] != prefix {
		return 0, nil, nil, errors.New(`passwordHash must be "pbkdf2-sha256:<iterations>:<salt hex>:<key hex>"`)
	}
	if iter, err = strconv.Atoi(parts[1]); err != nil || iter < 1 || iter > 100_000 {
		return 0, nil, nil, errors.New("passwordHash: iterations must be 1..100000")
	}
	if salt, err = hex.DecodeString(parts[2]); err != nil || len(salt) < 8 {
		return 0, nil, nil, errors.New("passwordHash: bad salt")
	}
	if key, err = hex.DecodeString(parts[3]); err != nil || len(key) != 32 {
		return 0, nil, nil, errors.New("passwordHash: bad key")
	}
	return iter, salt, key, nil
}

// Verify reports whether password matches the encoded hash, in constant time
// with respect to the key.
func Verify(encoded, password string) bool {
	iter, salt, want, err := Parse(encoded)
	if err != nil {
		return false
	}
	got, err := pbkdf2.Key(sha256.New, password, salt, iter, len(want))
	if err != nil {
		return false
	}
	return subtle.ConstantTimeCompare(got, want) == 1
}
