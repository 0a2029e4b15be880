package tunnel

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
)

func TestHandshakeRoundTrip(t *testing.T) {
	sh := &ServerHello{Version: Version, EdgeID: "edge-1"}
	_, _ = rand.Read(sh.Nonce[:])
	var buf bytes.Buffer
	require.NoError(t, WriteServerHello(&buf, sh))
	got, err := ReadServerHello(&buf)
	require.NoError(t, err)
	require.Equal(t, sh, got)

	// Version 2: an Ed25519 signature by the key derived from the token;
	// the edge holds only the public key.
	id := uuid.New()
	priv, pub := AgentSigningKey("secret-token"), AgentPublicKey("secret-token")
	require.Equal(t, priv.Public(), ed25519.PublicKey(pub[:]))
	ch := &ClientHello{Version: 2, AgentID: id, Software: "test/2"}
	ch.Sig = Sign(priv, ch.Version, sh.Nonce, id, sh.EdgeID)
	require.NoError(t, WriteClientHello(&buf, ch))
	gotCH, err := ReadClientHello(&buf)
	require.NoError(t, err)
	require.Equal(t, ch, gotCH)
	require.True(t, VerifySig(pub, sh, gotCH))
	require.False(t, VerifySig(AgentPublicKey("other"), sh, gotCH), "another agent's key")
	sh2 := *sh
	sh2.Nonce[0] ^= 1
	require.False(t, VerifySig(pub, &sh2, gotCH), "a replayed hello must fail against a fresh nonce")
	sh3 := *sh
	sh3.EdgeID = "edge-2"
	require.False(t, VerifySig(pub, &sh3, gotCH), "a hello for another edge must fail")
	down := *gotCH
	down.Version = 1
	require.False(t, VerifySig(pub, sh, &down), "the version is signed")

	// Version 1 (still accepted): an HMAC keyed by SHA-256(token).
	key := TokenKey("secret-token")
	ch = &ClientHello{Version: 1, AgentID: id, Software: "test/1"}
	ch.MAC = ComputeMAC(key, ch.Version, sh.Nonce, id, sh.EdgeID)
	require.NoError(t, WriteClientHello(&buf, ch))
	gotCH, err = ReadClientHello(&buf)
	require.NoError(t, err)
	require.Equal(t, ch, gotCH)
	require.True(t, VerifyMAC(key, sh, gotCH))

	// A different token, nonce or edge id fails.
	require.False(t, VerifyMAC(TokenKey("other"), sh, gotCH))
	require.False(t, VerifyMAC(key, &sh2, gotCH), "a replayed hello must fail against a fresh nonce")
	require.False(t, VerifyMAC(key, &sh3, gotCH), "a hello for another edge must fail")
}

func TestTokenKeyFromHash(t *testing.T) {
	k := TokenKey("abc")
	h := "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
	got, err := TokenKeyFromHash(h)
	require.NoError(t, err)
	require.Equal(t, k, got)
	_, err = TokenKeyFromHash("zz")
	require.Error(t, err)
}

func TestDecodeErrors(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		read func([]byte) error
		want error
	}{
		{"server hello bad magic", append([]byte("XXXX"), make([]byte, 40)...), func(b []byte) error { _, err := ReadServerHello(bytes.NewReader(b)); return err }, ErrBadMagic},
		{"server hello id too long", append(append([]byte(Magic), 1), append(make([]byte, NonceSize), 200)...), func(b []byte) error { _, err := ReadServerHello(bytes.NewReader(b)); return err }, ErrTooLong},
		{"client hello future version", append(append([]byte(Magic), 9), make([]byte, 16+MACSize+1)...), func(b []byte) error { _, err := ReadClientHello(bytes.NewReader(b)); return err }, ErrVersion},
		{"client hello version zero", append(append([]byte(Magic), 0), make([]byte, 16+MACSize+1)...), func(b []byte) error { _, err := ReadClientHello(bytes.NewReader(b)); return err }, ErrVersion},
		{"stream header bad version", []byte{9, 2}, func(b []byte) error {
			_, err := ReadStreamHeader(bytes.NewReader(append(b, make([]byte, 17)...)))
			return err
		}, ErrVersion},
		{"stream header bad kind", []byte{1, 77}, func(b []byte) error {
			_, err := ReadStreamHeader(bytes.NewReader(append(b, make([]byte, 17)...)))
			return err
		}, ErrBadKind},
		{"stream header ip too long", append([]byte{1, 2}, append(make([]byte, 16), 100)...), func(b []byte) error { _, err := ReadStreamHeader(bytes.NewReader(b)); return err }, ErrTooLong},
		{"result too long", []byte{0, 0xff, 0xff}, func(b []byte) error { _, err := ReadResult(bytes.NewReader(b)); return err }, ErrTooLong},
		{"control too big", []byte{0xff, 0, 0, 0}, func(b []byte) error { _, err := ReadControl(bufio.NewReader(bytes.NewReader(b))); return err }, ErrFrameTooBig},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.ErrorIs(t, tt.read(tt.in), tt.want)
		})
	}
}

func TestStreamHeaderAndReply(t *testing.T) {
	h := StreamHeader{Kind: KindHTTP, ServiceID: uuid.New(), ClientIP: "2001:db8::1"}
	b, err := AppendStreamHeader(nil, &h)
	require.NoError(t, err)
	got, err := ReadStreamHeader(bytes.NewReader(b))
	require.NoError(t, err)
	require.Equal(t, h, got)
	_, err = AppendStreamHeader(nil, &StreamHeader{Kind: KindTCP, ClientIP: strings.Repeat("1", 46)})
	require.ErrorIs(t, err, ErrTooLong)

	var buf bytes.Buffer
	require.NoError(t, WriteResult(&buf, Result{Status: ReplyDialFailed, Message: strings.Repeat("x", 5000)}))
	r, err := ReadResult(&buf)
	require.NoError(t, err)
	require.Equal(t, ReplyDialFailed, r.Status)
	require.Len(t, r.Message, MaxMessageLen, "long messages are truncated on write")
}

func TestControlRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	c := &Control{Type: CtlServices, Services: []Service{{ID: "a", Name: "web", Protocol: "http", TargetHost: "127.0.0.1", TargetPort: 80}}}
	require.NoError(t, WriteControl(&buf, c))
	require.NoError(t, WriteControl(&buf, &Control{Type: CtlPing, Seq: 7}))
	br := bufio.NewReader(&buf)
	got, err := ReadControl(br)
	require.NoError(t, err)
	require.Equal(t, c, got)
	got, err = ReadControl(br)
	require.NoError(t, err)
	require.Equal(t, int64(7), got.Seq)
}

func FuzzReadClientHello(f *testing.F) {
	var buf bytes.Buffer
	_ = WriteClientHello(&buf, &ClientHello{Version: 1, AgentID: uuid.New(), Software: "x"})
	f.Add(buf.Bytes())
	f.Add([]byte("PCT1"))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := ReadClientHello(bytes.NewReader(b))
		if err == nil {
			var out bytes.Buffer
			if err := WriteClientHello(&out, h); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(out.Bytes(), b[:out.Len()]) {
				t.Fatalf("re-encoding differs")
			}
		}
	})
}

func FuzzReadServerHello(f *testing.F) {
	var buf bytes.Buffer
	_ = WriteServerHello(&buf, &ServerHello{Version: 1, EdgeID: "e"})
	f.Add(buf.Bytes())
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := ReadServerHello(bytes.NewReader(b))
		if err == nil && len(h.EdgeID) > MaxIDLen {
			t.Fatal("edge id over limit accepted")
		}
	})
}

func FuzzReadStreamHeader(f *testing.F) {
	b, _ := AppendStreamHeader(nil, &StreamHeader{Kind: KindTCP, ServiceID: uuid.New(), ClientIP: "10.0.0.1"})
	f.Add(b)
	f.Add([]byte{1, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := ReadStreamHeader(bytes.NewReader(b))
		if err != nil {
			return
		}
		out, err := AppendStreamHeader(nil, &h)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out, b[:len(out)]) {
			t.Fatal("re-encoding differs")
		}
	})
}

func FuzzReadControl(f *testing.F) {
	var buf bytes.Buffer
	_ = WriteControl(&buf, &Control{Type: CtlPing})
	f.Add(buf.Bytes())
	f.Add([]byte{0, 0, 0, 2, '{', '}'})
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = ReadControl(bufio.NewReader(bytes.NewReader(b)))
		_, _ = ReadResult(bytes.NewReader(b))
	})
}

func TestIsLoopbackAddr(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:7070":        true,
		"127.8.9.1:7070":        true,
		"tcp://127.0.0.1:7070":  true,
		"[::1]:7070":            true,
		"[::ffff:127.0.0.1]:70": true,
		"localhost:7070":        true,
		"LOCALHOST:7070":        true,
		":7070":                 false,
		"0.0.0.0:7070":          false,
		"[::]:7070":             false,
		"10.0.0.1:7070":         false,
		"edge.example.com:7070": false,
		"127.0.0.1":             false, // no port: not an address
		"tls://127.0.0.1:7070":  false, // a scheme other than tcp:// is not a plain address
	} {
		if got := IsLoopbackAddr(addr); got != want {
			t.Errorf("IsLoopbackAddr(%q) = %v, want %v", addr, got, want)
		}
	}
}
