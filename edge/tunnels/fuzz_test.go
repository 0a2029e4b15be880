package tunnels

import (
	"bytes"
	"encoding/hex"
	"io"
	"net"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/privateconnect/pc/edge/routes"
	"github.com/privateconnect/pc/internal/config"
	"github.com/privateconnect/pc/internal/tunnel"
)

// scriptConn is a connection whose peer sends fixed bytes, then EOF, and
// records what the edge writes.
type scriptConn struct {
	r   io.Reader
	out bytes.Buffer
}

func (c *scriptConn) Read(p []byte) (int, error)  { return c.r.Read(p) }
func (c *scriptConn) Write(p []byte) (int, error) { return c.out.Write(p) }
func (c *scriptConn) Close() error                { return nil }
func (c *scriptConn) LocalAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 7070}
}
func (c *scriptConn) RemoteAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(192, 0, 2, 7), Port: 5555}
}
func (c *scriptConn) SetDeadline(time.Time) error      { return nil }
func (c *scriptConn) SetReadDeadline(time.Time) error  { return nil }
func (c *scriptConn) SetWriteDeadline(time.Time) error { return nil }

// FuzzHandshake plays arbitrary bytes as the agent's side of the tunnel
// handshake against the edge, whose table knows one agent: nothing panics,
// the edge always opens with a valid ServerHello, and it never accepts a
// session (the MAC binds a fresh nonce, so no fixed input can be a valid
// hello: a captured one cannot be replayed).
func FuzzHandshake(f *testing.F) {
	agentID := uuid.MustParse("6f1c5b1e-4a0e-4c39-9a57-2b9c0d1e2f30")
	key := tunnel.TokenKey("the-token")
	table, err := routes.Build(&config.Snapshot{Agents: []config.Agent{{ID: agentID.String(), TokenHash: hex.EncodeToString(key[:])}}})
	if err != nil {
		f.Fatal(err)
	}
	var hello bytes.Buffer
	ch := &tunnel.ClientHello{Version: tunnel.Version, AgentID: agentID, Software: "pc-agent"}
	ch.MAC = tunnel.ComputeMAC(key, ch.Version, [tunnel.NonceSize]byte{}, agentID, "edge-1") // a stale nonce
	_ = tunnel.WriteClientHello(&hello, ch)
	f.Add(hello.Bytes())
	f.Add(append(append([]byte{}, hello.Bytes()...), 2, 0, 0, 0, 1, 0, 0, 0))
	f.Add([]byte("PCT1"))
	f.Add([]byte("PCT1\x09"))
	f.Add(append([]byte("PCT1\x01"), make([]byte, 16+tunnel.MACSize+1)...))
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"))

	f.Fuzz(func(t *testing.T, b []byte) {
		var events []config.AgentEvent
		r := New(Config{EdgeID: func() string { return "edge-1" }, Table: func() *routes.Table { return table },
			OnEvent: func(e config.AgentEvent) { events = append(events, e) }})
		c := &scriptConn{r: bytes.NewReader(b)}
		r.wg.Add(1)
		r.handle(c, "192.0.2.7")
		if n := len(r.Connected()); n != 0 {
			t.Fatalf("a session was accepted from %x", b)
		}
		out := bytes.NewReader(c.out.Bytes())
		sh, err := tunnel.ReadServerHello(out)
		if err != nil || sh.EdgeID != "edge-1" || sh.Version != tunnel.Version {
			t.Fatalf("bad server hello: %+v %v", sh, err)
		}
		if out.Len() > 0 {
			res, err := tunnel.ReadResult(out)
			if err != nil {
				t.Fatalf("bad result: %v", err)
			}
			if res.Status == tunnel.ResultOK {
				t.Fatalf("handshake accepted for %x", b)
			}
		}
		for _, e := range events {
			if e.Event != config.EventRejected {
				t.Fatalf("unexpected event %+v", e)
			}
		}
	})
}
