package plugins

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"testing"
)

func TestHMACSHA256MatchesCryptoHMAC(t *testing.T) {
	for _, kl := range []int{0, 1, 20, 32, 63, 64, 65, 200} {
		for _, ml := range []int{0, 1, 55, 56, 64, 1000} {
			key, msg := bytes.Repeat([]byte{byte(kl + 1)}, kl), bytes.Repeat([]byte{byte(ml + 7)}, ml)
			m := hmac.New(sha256.New, key)
			m.Write(msg)
			if got := hmacSHA256(key, msg); !bytes.Equal(got[:], m.Sum(nil)) {
				t.Errorf("key %d bytes, message %d bytes: %x, want %x", kl, ml, got, m.Sum(nil))
			}
		}
	}
	if n := testing.AllocsPerRun(100, func() { _ = hmacSHA256([]byte("key"), []byte("message")) }); n != 0 {
		t.Errorf("%v allocations per call, want 0", n)
	}
}
