package plugins

import "github.com/privateconnect/pc/internal/sharepass"

// SharePasswordIterations is the PBKDF2 cost of HashSharePassword
// (sharepass.Iterations). It is deliberately small: the password plugin may
// verify a password on the request path (a Basic client's first request, a
// login) in a Go guest without assembly, where 1000 iterations took 7.5 ms
// on a 2-core EPYC VM and 10,000 took 58 ms, past the ABI's 50 ms budget. The hash protects the stored
// secret against casual disclosure, not against a determined offline attack
// on a weak password; share passwords are 8-128 characters (api-v1.md).
const SharePasswordIterations = sharepass.Iterations

// HashSharePassword returns the passwordHash the password built-in plugin expects:
// "pbkdf2-sha256:<iterations>:<16-byte salt hex>:<32-byte key hex>", as the control plane
// stores it (internal/sharepass).
func HashSharePassword(password string) string {
	h, err := sharepass.Hash(password)
	if err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return h
}

// VerifySharePassword checks password against a HashSharePassword hash.
func VerifySharePassword(hash, password string) bool { return sharepass.Verify(hash, password) }
