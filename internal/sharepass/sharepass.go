// Package sharepass hashes and verifies share-link passwords. The control
// plane stores and pushes only the hash (config.Share.PasswordHash); the edge
// verifies a visitor's password against it.
//
// Format: "pbkdf2-sha256$<iterations>$<salt, base64url>$<key, base64url>"
// (PBKDF2-HMAC-SHA256, 16-byte random salt, 32-byte key). Verification costs
// about a millisecond, so an edge should remember a successful check (for
// example in a signed cookie) rather than verify on every request.
package sharepass

import (
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
)

// Iterations is the PBKDF2 work factor of new hashes.
const Iterations = 10000

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
	enc := base64.RawURLEncoding
	return prefix + "$" + strconv.Itoa(Iterations) + "$" + enc.EncodeToString(salt) + "$" + enc.EncodeToString(key), nil
}

// Verify reports whether password matches the encoded hash, in constant time
// with respect to the key.
func Verify(encoded, password string) bool {
	parts := strings.Split(encoded, "$")
	if len(parts) != 4 || parts[0] != prefix {
		return false
	}
	iter, err := strconv.Atoi(parts[1])
	if err != nil || iter < 1 || iter > 10_000_000 {
		return false
	}
	enc := base64.RawURLEncoding
	salt, err1 := enc.DecodeString(parts[2])
	want, err2 := enc.DecodeString(parts[3])
	if err1 != nil || err2 != nil || len(want) == 0 || len(want) > 64 {
		return false
	}
	got, err := pbkdf2.Key(sha256.New, password, salt, iter, len(want))
	if err != nil {
		return false
	}
	return subtle.ConstantTimeCompare(got, want) == 1
}
