package proxy

import (
	"bufio"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

// TestFirstByteConnSwitches: the watch of a response's start finds a 101 as
// the HTTP client reads it (after interim responses, after blank lines),
// however the service's bytes are split between reads, and lets every other
// response through.
func TestFirstByteConnSwitches(t *testing.T) {
	const (
		sw    = "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"
		hints = "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"
		cont  = "HTTP/1.1 100 Continue\r\n\r\n"
		ok    = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
	)
	cases := []struct {
		resp     string
		switched bool
	}{
		{sw + ok, true},
		{"\r\n\n" + sw, true},
		{"HTTP/1.1   101 X\r\n\r\n", true},
		{"HTTP/1.0 101\r\n\r\n", true},
		{hints + sw + ok, true},
		{cont + hints + hints + sw, true},
		{ok, false},
		{ok + sw, false},
		{hints + ok, false},
		{cont + ok + sw, false},
		{"HTTP/1.1 404 Not Found\r\nX: 101\r\n\r\n", false},
		{"HTTP/1.1 204 No Content\r\n\r\n" + sw, false},
		{"HTTP/1.1 101 X\n\n", false}, // the client refuses it itself
	}
	for _, tc := range cases {
		// What the HTTP client makes of it.
		var r fasthttp.Response
		err := r.Read(bufio.NewReader(strings.NewReader(tc.resp)))
		if client := err == nil && r.StatusCode() == 101; client != tc.switched {
			t.Fatalf("%q: the client reads a 101: %v (%v)", tc.resp, client, err)
		}
		// Every split of the response in two reads.
		for i := 1; i <= len(tc.resp); i++ {
			c := &firstByteConn{sniff: true}
			got := c.switches([]byte(tc.resp[:i]))
			if !got && i < len(tc.resp) && c.sniff {
				got = c.switches([]byte(tc.resp[i:]))
			}
			if got != tc.switched {
				t.Fatalf("%q split at %d: switches %v, want %v", tc.resp, i, got, tc.switched)
			}
		}
		// One byte per read.
		c := &firstByteConn{sniff: true}
		got := false
		for i := 0; i < len(tc.resp) && c.sniff && !got; i++ {
			got = c.switches([]byte{tc.resp[i]})
		}
		if got != tc.switched {
			t.Fatalf("%q byte by byte: switches %v, want %v", tc.resp, got, tc.switched)
		}
	}
	// A common response is let through at its first read, nothing copied.
	c := &firstByteConn{sniff: true}
	if c.switches([]byte(ok)) || c.sniff || c.head != nil {
		t.Fatalf("a 200 was watched past its status line")
	}
}
