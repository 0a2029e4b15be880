package tunnel

import (
	"errors"
	"log/slog"
	"net"
	"time"
)

// AcceptBackoff paces an accept loop through a listener's errors. Only a
// closed listener ends the loop: any other error (a timeout, EMFILE or
// ENFILE when the process is out of descriptors, ECONNABORTED for a client
// gone before it was accepted) is transient, and a loop that returned on
// it would leave its port open but unserved for good. The loop sleeps 5 ms
// after the first error of a burst, doubling to 1 s, as net/http's Server
// does, and logs once per burst.
type AcceptBackoff struct {
	Log   *slog.Logger // may be nil
	What  string       // the listener, for the log ("TCP tunnel port 4001")
	delay time.Duration
	count int
}

// Retry is for an Accept that failed with err: it reports false when the
// listener is closed (the loop ends), else sleeps the backoff and reports
// true.
func (b *AcceptBackoff) Retry(err error) bool {
	if errors.Is(err, net.ErrClosed) {
		return false
	}
	if b.delay == 0 {
		b.delay = 5 * time.Millisecond
		if b.Log != nil {
			b.Log.Warn("accept failed; retrying with backoff", "listener", b.What, "err", err)
		}
	} else if b.delay *= 2; b.delay > time.Second {
		b.delay = time.Second
	}
	b.count++
	time.Sleep(b.delay)
	return true
}

// Accepted is for an Accept that succeeded: it ends a burst of errors.
func (b *AcceptBackoff) Accepted() {
	if b.delay == 0 {
		return
	}
	if b.Log != nil {
		b.Log.Info("accepting again", "listener", b.What, "failed_accepts", b.count)
	}
	b.delay, b.count = 0, 0
}
