package control

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

// drainer lets requests in flight finish before the HTTP server shuts down.
//
// fasthttp cancels the context of every request in flight (RequestCtx.Done
// is the server's shutdown signal) as soon as Shutdown starts, and the store
// refuses work on a cancelled context: a request being handled at SIGTERM
// would fail with 503 "the server is shutting down", possibly after its
// write committed. So Run first stops accepting connections, makes every
// response close its connection, and waits until no request has been in
// flight for a moment; only then does fasthttp's Shutdown close the idle
// connections.
type drainer struct {
	inflight atomic.Int64
	draining atomic.Bool
}

// drainQuiet is how long no request may be in flight before the drain ends
// (a request whose head is arriving on an idle connection reaches the
// handler within it).
const drainQuiet = 50 * time.Millisecond

// track counts the requests in flight through h.
func (d *drainer) track(h fasthttp.RequestHandler) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		d.inflight.Add(1)
		defer d.inflight.Add(-1)
		h(ctx)
		if d.draining.Load() {
			ctx.SetConnectionClose()
		}
	}
}

// drain closes ln and waits, until ctx ends, for the requests in flight.
func (d *drainer) drain(ctx context.Context, ln net.Listener) {
	d.draining.Store(true)
	_ = ln.Close()
	var quiet time.Time
	for ctx.Err() == nil {
		switch {
		case d.inflight.Load() > 0:
			quiet = time.Time{}
		case quiet.IsZero():
			quiet = time.Now()
		case time.Since(quiet) >= drainQuiet:
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// onceCloseListener makes Close idempotent, so that fasthttp's Shutdown
// does not fail on the listener drain already closed.
type onceCloseListener struct {
	net.Listener
	once sync.Once
	err  error
}

func (l *onceCloseListener) Close() error {
	l.once.Do(func() { l.err = l.Listener.Close() })
	return l.err
}
