package sharepass

import "testing"

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
	h2, _ := Hash("correct horse")
	if h == h2 {
		t.Fatal("salt not random")
	}
}
