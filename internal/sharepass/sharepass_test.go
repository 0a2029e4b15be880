package sharepass

import (
	"crypto/pbkdf2"
	"crypto/sha256"
	"encoding/hex"
	"testing"
)

// keyHex is the hex PBKDF2-SHA256 key of password (salt in hex).
func keyHex(password, saltHex string, iter, n int) string {
	salt, _ := hex.DecodeString(saltHex)
	k, _ := pbkdf2.Key(sha256.New, password, salt, iter, n)
	return hex.EncodeToString(k)
}

func TestHashVerify(t *testing.T) {
	h, err := Hash("correct horse")
	if err != nil {
		t.Fatal(err)
	}
	if !Verify(h, "correct horse") {
		t.Fatal("right password rejected")
	}
	for _, bad := range []string{"", "correct hors", "correct horse "} {
		if Verify(h, bad) {
			t.Fatalf("wrong password %q accepted", bad)
		}
	}
	for _, enc := range []string{"", "x", "pbkdf2-sha256:0:aa:bb", "pbkdf2-sha256:10:!!:bb", "md5:1:a:b"} {
		if Verify(enc, "x") {
			t.Fatalf("bad encoding %q accepted", enc)
		}
	}
	// A short key would match by chance (1 byte: 1 password in 256); the
	// password plugin takes 32-byte keys only.
	salt := "00112233445566778899aabbccddeeff"
	for _, enc := range []string{
		"pbkdf2-sha256:1:" + salt + ":" + keyHex("x", salt, 1, 1),
		"pbkdf2-sha256:1:" + salt + ":" + keyHex("x", salt, 1, 16),
		"pbkdf2-sha256:1:0011:" + keyHex("x", "0011", 1, 32), // 2-byte salt
	} {
		if Verify(enc, "x") {
			t.Fatalf("hash %q accepted", enc)
		}
	}
	if !Verify("pbkdf2-sha256:1:"+salt+":"+keyHex("x", salt, 1, 32), "x") {
		t.Fatal("a well-formed hash of another iteration count rejected")
	}
	h2, _ := Hash("correct horse")
	if h == h2 {
		t.Fatal("salt not random")
	}
}
