package tunnel

import (
	"bytes"
	"io"
	"net"
	"runtime"
	"testing"
)

// readerConn is a net.Conn that reads from r (no WriterTo: a tunnel
// stream is not a TCP connection a splice could read).
type readerConn struct {
	net.Conn
	r io.Reader
}

func (c readerConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// Copying into a TCP connection uses the pooled buffer: the connection's
// ReadFrom, which cannot splice from a stream, allocated 32 KiB per copy.
func TestCopyHalfAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts differ under -race")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			_, _ = io.Copy(io.Discard, c)
			c.Close()
		}
	}()
	dst, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	payload := make([]byte, 4096)
	src := readerConn{r: bytes.NewReader(payload)}
	copyAll(dst, src) // the pool's buffer exists
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	const n = 50
	for range n {
		src.r.(*bytes.Reader).Reset(payload)
		copyAll(dst, src)
	}
	runtime.ReadMemStats(&after)
	if per := (after.TotalAlloc - before.TotalAlloc) / n; per > 1<<10 {
		t.Fatalf("%d bytes allocated per copy into a TCP connection (its ReadFrom's 32 KiB buffer?)", per)
	}
}
