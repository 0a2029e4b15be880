package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/google/uuid"
	"github.com/privateconnect/pc/internal/tunnel"
)

// ErrNotConnected is returned by Dial when the agent holds no edge session.
var ErrNotConnected = errors.New("agent: not connected to any edge")

// ErrNoSuchService is returned by Dial when the edge knows no such service
// in the agent's workspace (deleted, say): retrying cannot help.
var ErrNoSuchService = errors.New("agent: reach refused by edge: no such service")

// Dial opens a TCP connection to a service of the agent's workspace through
// an edge (agent → edge → the service's agent → target). It is what
// `connect reach` uses for each local connection.
func (a *Agent) Dial(ctx context.Context, serviceID string) (net.Conn, error) {
	id, err := uuid.Parse(serviceID)
	if err != nil {
		return nil, fmt.Errorf("agent: service id: %w", err)
	}
	var lastErr error = ErrNotConnected
	for _, ec := range a.liveSessions() {
		st, err := ec.sess.OpenStream()
		if err != nil {
			lastErr = err
			continue
		}
		// Registered first: the edge's abort may follow its reply at once.
		// The caller copies into it from pooled buffers (tunnel.Pipe in
		// `connect reach`): its failed writes settle (tunnel.SettledStream).
		ac := ec.aborts.Wrap(ec.settled(st), st.ID())
		hdr, _ := tunnel.AppendStreamHeader(nil, &tunnel.StreamHeader{Kind: tunnel.KindReach, ServiceID: id})
		if dl, ok := ctx.Deadline(); ok {
			_ = st.SetDeadline(dl)
		} else {
			_ = st.SetDeadline(time.Now().Add(15 * time.Second))
		}
		if _, err := st.Write(hdr); err != nil {
			ac.Close()
			lastErr = err
			continue
		}
		res, err := tunnel.ReadResult(st)
		if err != nil {
			ac.Close()
			lastErr = err
			continue
		}
		_ = st.SetDeadline(time.Time{})
		if res.Status != tunnel.ReplyOK {
			ac.Close()
			if res.Status == tunnel.ReplyUnknownService {
				return nil, fmt.Errorf("%w: %s", ErrNoSuchService, res.Message)
			}
			return nil, fmt.Errorf("agent: reach refused by edge: %s", res.Message)
		}
		// A reset of the connection at either end reaches the other
		// (tunnel.CtlAbort); tunnel.Pipe resets the caller's side.
		return ac, nil
	}
	return nil, lastErr
}

// WaitConnected blocks until the agent holds at least one edge session, ctx
// ends, or Run has ended (its error, or ErrNotRunning). Rejections that Run
// retries do not end the wait: watch EventRejected, or bound ctx.
func (a *Agent) WaitConnected(ctx context.Context) error {
	for {
		if len(a.liveSessions()) > 0 {
			return nil
		}
		a.mu.Lock()
		ended, runErr := a.runCtx != nil && a.runCtx.Err() != nil, a.runErr
		a.mu.Unlock()
		if ended {
			if runErr != nil {
				return runErr
			}
			return ErrNotRunning
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// ErrNotRunning: Run has ended.
var ErrNotRunning = errors.New("agent: not running")

func (a *Agent) liveSessions() []*edgeConn {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]*edgeConn, 0, len(a.sessions))
	for _, s := range a.sessions {
		out = append(out, s)
	}
	return out
}
