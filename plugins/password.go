package plugins

import (
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
)

// SharePasswordIterations is the PBKDF2 cost of HashSharePassword. It is deliberately small:
// the password plugin may verify a password on the request path (a Basic client's first
// request, a login), inside a 5 ms budget, in a Go guest without assembly. The hash protects
// the stored secret against casual disclosure, not against a determined offline attack on a
// weak password; share passwords are 8-128 characters (api-v1.md).
const SharePasswordIterations = 1000

// HashSharePassword returns the passwordHash the password built-in plugin expects:
// "pbkdf2-sha256:<iterations>:<16-byte salt hex>:<32-byte key hex>".
func HashSharePassword(password string) string {
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	key, err := pbkdf2.Key(sha256.New, password, salt, SharePasswordIterations, 32)
	if err != nil {
		panic(err)
	}
	return fmt.Sprintf("pbkdf2-sha256:%d:%s:%s", SharePasswordIterations, hex.EncodeToString(salt), hex.EncodeToString(key))
}

// VerifySharePassword checks password against a HashSharePassword hash.
func VerifySharePassword(hash, password string) bool {
	parts := strings.Split(hash, ":")
	if len(parts) != 4 || parts[0] != "pbkdf2-sha256" {
		return false
	}
	iter, err := strconv.Atoi(parts[1])
	if err != nil || iter < 1 || iter > 100000 {
		return false
	}
	salt, err1 := hex.DecodeString(parts[2])
	want, err2 := hex.DecodeString(parts[3])
	if err1 != nil || err2 != nil || len(want) != 32 {
		return false
	}
	key, err := pbkdf2.Key(sha256.New, password, salt, iter, 32)
	return err == nil && hmac.Equal(key, want)
}
