package bench

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

// OriginAddrs are the listeners of the benchmark origin.
type OriginAddrs struct {
	HTTP   string `json:"http"`   // fasthttp: /small /bytes /upload /sse /ws
	Echo   string `json:"echo"`   // TCP: echoes what it reads
	Sink   string `json:"sink"`   // TCP: reads to EOF, answers the count (8 bytes, big endian)
	Source string `json:"source"` // TCP: reads a count (8 bytes), sends that many bytes
}

// originLine prefixes the line the origin prints with its addresses.
const originLine = "PCBENCH-ORIGIN "

// The origin's payloads.
var (
	smallBody = patternBytes(1024)
	bigBuf    = patternBytes(1 << 20)
)

func patternBytes(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = 'a' + byte(i%26)
	}
	return b
}

// patternReader yields n bytes of the pattern without allocating.
type patternReader struct{ n, off int64 }

func (r *patternReader) Read(p []byte) (int, error) {
	if r.n <= 0 {
		return 0, io.EOF
	}
	total := 0
	for len(p) > 0 && r.n > 0 {
		start := int(r.off % int64(len(bigBuf)))
		c := copy(p, bigBuf[start:])
		if int64(c) > r.n {
			c = int(r.n)
		}
		p, total = p[c:], total+c
		r.n -= int64(c)
		r.off += int64(c)
	}
	return total, nil
}

// Origin is the benchmark's private service.
type Origin struct {
	Addrs OriginAddrs
	// sseActive counts event streams still being written (GET /stats);
	// GET /stats?abortSSE=1 bumps sseEpoch, which ends every open stream.
	sseActive atomic.Int64
	sseEpoch  atomic.Int64
	srv       *fasthttp.Server
	lns       []net.Listener
	wg        sync.WaitGroup
}

// StartOrigin starts the origin on 127.0.0.1 with kernel-chosen ports (or
// the given host:port for HTTP).
func StartOrigin(httpAddr string) (*Origin, error) {
	if httpAddr == "" {
		httpAddr = "127.0.0.1:0"
	}
	o := &Origin{}
	ln, err := net.Listen("tcp", httpAddr)
	if err != nil {
		return nil, err
	}
	o.lns = append(o.lns, ln)
	o.srv = &fasthttp.Server{
		Handler:               o.handle,
		Name:                  "pcbench-origin",
		NoDefaultServerHeader: true,
		NoDefaultDate:         true,
		StreamRequestBody:     true,
		MaxRequestBodySize:    1 << 20,
		ReadBufferSize:        16 << 10,
		WriteBufferSize:       16 << 10,
		IdleTimeout:           2 * time.Minute,
		Concurrency:           1 << 20,
		CloseOnShutdown:       true,
	}
	o.wg.Add(1)
	go func() { defer o.wg.Done(); _ = o.srv.Serve(ln) }()
	o.Addrs.HTTP = ln.Addr().String()
	for _, s := range []struct {
		addr  *string
		serve func(net.Conn)
	}{{&o.Addrs.Echo, serveEcho}, {&o.Addrs.Sink, serveSink}, {&o.Addrs.Source, serveSource}} {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			o.Close()
			return nil, err
		}
		o.lns = append(o.lns, l)
		*s.addr = l.Addr().String()
		o.wg.Add(1)
		go func() {
			defer o.wg.Done()
			acceptLoop(l, s.serve)
		}()
	}
	return o, nil
}

// Close stops the origin.
func (o *Origin) Close() {
	_ = o.srv.Shutdown()
	for _, l := range o.lns {
		l.Close()
	}
	o.wg.Wait()
}

// RunOrigin runs the origin until ctx ends, printing its addresses on w (the
// hidden `pcbench origin` command).
func RunOrigin(ctx context.Context, httpAddr string, w io.Writer) error {
	o, err := StartOrigin(httpAddr)
	if err != nil {
		return err
	}
	b, _ := json.Marshal(o.Addrs)
	fmt.Fprintf(w, "%s%s\n", originLine, b)
	<-ctx.Done()
	o.Close()
	return nil
}

func acceptLoop(l net.Listener, serve func(net.Conn)) {
	for {
		c, err := l.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			return
		}
		go serve(c)
	}
}

func serveEcho(c net.Conn) {
	defer c.Close()
	buf := make([]byte, 64<<10)
	_, _ = io.CopyBuffer(c, c, buf)
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	}
}

func serveSink(c net.Conn) {
	defer c.Close()
	buf := make([]byte, 256<<10)
	n, _ := io.CopyBuffer(io.Discard, onlyReader{c}, buf)
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(n))
	_, _ = c.Write(b[:])
}

func serveSource(c net.Conn) {
	defer c.Close()
	var b [8]byte
	if _, err := io.ReadFull(c, b[:]); err != nil {
		return
	}
	n := int64(binary.BigEndian.Uint64(b[:]))
	buf := make([]byte, 256<<10)
	_, _ = io.CopyBuffer(onlyWriter{c}, &patternReader{n: n}, buf)
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	}
	_, _ = io.Copy(io.Discard, c) // wait for the client to close
}

// onlyReader and onlyWriter hide ReadFrom/WriteTo so a buffer of our size is
// used (comparable per-syscall work on both paths).
type onlyReader struct{ io.Reader }
type onlyWriter struct{ io.Writer }

func (o *Origin) handle(ctx *fasthttp.RequestCtx) {
	switch string(ctx.Path()) {
	case "/small":
		ctx.SetContentType("text/plain")
		ctx.Response.SetBodyRaw(smallBody)
	case "/bytes":
		n, _ := strconv.ParseInt(string(ctx.QueryArgs().Peek("n")), 10, 64)
		if n < 0 {
			n = 0
		}
		ctx.SetContentType("application/octet-stream")
		if n <= int64(len(bigBuf)) {
			ctx.Response.SetBodyRaw(bigBuf[:n])
		} else {
			ctx.SetBodyStream(&patternReader{n: n}, int(n))
		}
	case "/upload":
		var n int64
		if ctx.Request.IsBodyStream() {
			buf := make([]byte, 64<<10)
			n, _ = io.CopyBuffer(io.Discard, onlyReader{ctx.RequestBodyStream()}, buf)
		} else {
			n = int64(len(ctx.PostBody()))
		}
		ctx.SetContentType("text/plain")
		ctx.SetBodyString(strconv.FormatInt(n, 10))
	case "/sse":
		o.sse(ctx)
	case "/stats":
		if string(ctx.QueryArgs().Peek("abortSSE")) == "1" {
			o.sseEpoch.Add(1)
		}
		ctx.SetContentType("application/json")
		ctx.SetBodyString(`{"sseActive":` + strconv.FormatInt(o.sseActive.Load(), 10) + `}`)
	case "/ws":
		o.ws(ctx)
	default:
		ctx.SetStatusCode(fasthttp.StatusNotFound)
		ctx.SetBodyString("not found")
	}
}

// sse streams events "data: <unix nanos> <padding>" at ?rate= per second
// (0: as fast as possible) for ?n= events (0: until the client leaves).
func (o *Origin) sse(ctx *fasthttp.RequestCtx) {
	rate, _ := strconv.Atoi(string(ctx.QueryArgs().Peek("rate")))
	n, _ := strconv.Atoi(string(ctx.QueryArgs().Peek("n")))
	size, _ := strconv.Atoi(string(ctx.QueryArgs().Peek("size")))
	if size < 32 {
		size = 32
	}
	ctx.SetContentType("text/event-stream")
	ctx.Response.Header.Set("Cache-Control", "no-cache")
	epoch := o.sseEpoch.Load()
	ctx.SetBodyStreamWriter(func(w *bufio.Writer) {
		o.sseActive.Add(1)
		defer o.sseActive.Add(-1)
		var interval time.Duration
		if rate > 0 {
			interval = time.Second / time.Duration(rate)
		}
		start := time.Now()
		line := make([]byte, 0, size+16)
		for i := 0; (n == 0 || i < n) && o.sseEpoch.Load() == epoch; i++ {
			if interval > 0 {
				if d := time.Until(start.Add(time.Duration(i) * interval)); d > 0 {
					time.Sleep(d)
				}
			}
			line = append(line[:0], "data: "...)
			line = strconv.AppendInt(line, time.Now().UnixNano(), 10)
			line = append(line, ' ')
			for len(line) < size-2 {
				line = append(line, 'x')
			}
			line = append(line, '\n', '\n')
			if _, err := w.Write(line); err != nil {
				return
			}
			if err := w.Flush(); err != nil {
				return
			}
		}
	})
}

// ws upgrades and echoes.
func (o *Origin) ws(ctx *fasthttp.RequestCtx) {
	key := string(ctx.Request.Header.Peek("Sec-WebSocket-Key"))
	if key == "" || !ctx.Request.Header.ConnectionUpgrade() {
		ctx.SetStatusCode(fasthttp.StatusBadRequest)
		ctx.SetBodyString("websocket upgrade expected")
		return
	}
	ctx.SetStatusCode(fasthttp.StatusSwitchingProtocols)
	ctx.Response.Header.Set("Upgrade", "websocket")
	ctx.Response.Header.Set("Connection", "Upgrade")
	ctx.Response.Header.Set("Sec-WebSocket-Accept", wsAccept(key))
	ctx.Hijack(wsServeEcho)
}
