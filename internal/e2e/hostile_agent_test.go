package e2e

// A malicious agent against a real edge (issue #8, part 2): wrong tokens,
// a handshake replayed from a captured real connection, protocol versions
// and garbage, slowloris during the handshake, stream floods beyond the
// per-agent cap in both directions, cross-workspace reach, oversized control
// frames and garbage smux frames. Each is rejected cleanly and the edge
// keeps serving the honest agent's share.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"github.com/xtaci/smux"

	"github.com/privateconnect/pc/edge"
	"github.com/privateconnect/pc/internal/testenv"
	"github.com/privateconnect/pc/internal/tunnel"
	"github.com/privateconnect/pc/sdk/agent"
	"github.com/privateconnect/pc/sdk/client"
)

// rogue is a hand-rolled agent connection.
type rogue struct {
	conn net.Conn
	br   *bufio.Reader
	res  tunnel.Result
	err  error
}

// dialRogue runs the agent side of the handshake with the given identity
// (token may be wrong) and returns the edge's result.
func dialRogue(t *testing.T, addr, agentID, token string, version byte) *rogue {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(15 * time.Second))
	r := &rogue{conn: c, br: bufio.NewReader(c)}
	sh, err := tunnel.ReadServerHello(r.br)
	require.NoError(t, err)
	id := uuid.MustParse(agentID)
	ch := tunnel.NewClientHello(version, id, token, sh, "rogue/1")
	require.NoError(t, tunnel.WriteClientHello(c, ch))
	r.res, r.err = tunnel.ReadResult(r.br)
	_ = c.SetDeadline(time.Time{})
	return r
}

// session starts smux over an accepted rogue connection (the agent is the
// smux server).
func (r *rogue) session(t *testing.T) *smux.Session {
	t.Helper()
	require.NoError(t, r.err)
	require.Equal(t, tunnel.ResultOK, r.res.Status, r.res.Message)
	s, err := smux.Server(&bufferedNetConn{Conn: r.conn, r: r.br}, tunnel.SmuxConfig())
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	return s
}

type bufferedNetConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedNetConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// closedByPeer reports whether the edge closed c within d.
func closedByPeer(c net.Conn, d time.Duration) bool {
	_ = c.SetReadDeadline(time.Now().Add(d))
	buf := make([]byte, 4096)
	for {
		_, err := c.Read(buf)
		if err == nil {
			continue
		}
		var ne net.Error
		return !(errors.As(err, &ne) && ne.Timeout())
	}
}

// captureProxy forwards TCP to target and records the first bytes each
// client sends.
type captureProxy struct {
	ln  net.Listener
	mu  sync.Mutex
	got [][]byte
}

func newCaptureProxy(t *testing.T, target string) *captureProxy {
	p := &captureProxy{}
	p.ln = tcpService(t, func(c net.Conn) {
		up, err := net.Dial("tcp", target)
		if err != nil {
			c.Close()
			return
		}
		rec := &recorder{p: p}
		go func() { _, _ = io.Copy(c, up); c.Close() }()
		_, _ = io.Copy(io.MultiWriter(up, rec), c)
		up.Close()
		rec.flush()
	})
	return p
}

type recorder struct {
	p    *captureProxy
	buf  bytes.Buffer
	done bool
}

func (r *recorder) Write(b []byte) (int, error) {
	if !r.done {
		r.buf.Write(b)
		if r.buf.Len() >= 512 {
			r.flush()
		}
	}
	return len(b), nil
}

func (r *recorder) flush() {
	if r.done {
		return
	}
	r.done = true
	r.p.mu.Lock()
	r.p.got = append(r.p.got, append([]byte(nil), r.buf.Bytes()...))
	r.p.mu.Unlock()
}

func (p *captureProxy) first() []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.got) == 0 {
		return nil
	}
	return p.got[0]
}

// TestHostileAgent attacks an edge as a malicious agent would.
func TestHostileAgent(t *testing.T) {
	if testing.Short() {
		t.Skip("whole system")
	}
	const maxStreams = 32
	env := testenv.New(t, testenv.Options{Edge: func(c *edge.Config) { c.MaxStreamsPerAgent = maxStreams }})
	ed := env.Edges[0]
	tunAddr := ed.TunnelAddr()
	ctx := context.Background()

	release := make(chan struct{})
	var releaseOnce sync.Once
	t.Cleanup(func() { releaseOnce.Do(func() { close(release) }) })
	org := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hold" { // held until the test releases it
			select {
			case <-release:
			case <-time.After(20 * time.Second):
			}
		}
		_, _ = io.WriteString(w, "ok")
	}))
	t.Cleanup(org.Close)
	honest, svc := env.ExposeAgent("honest", "web", org.URL)
	id := honest.ID
	// Another real agent connects once through a capturing proxy, so that
	// its genuine handshake can be replayed.
	capID, capToken, _ := env.ProvisionAgent("captured")
	proxy := newCaptureProxy(t, tunAddr)
	captured := env.RunAgentWith(capID, capToken, nil, func(c *agent.Config) { c.Edges = []string{proxy.ln.Addr().String()} })
	require.Eventually(t, func() bool { return slices.Contains(ed.ConnectedAgents(), capID) }, 5*time.Second, 10*time.Millisecond)
	captured.Stop() // the proxied connection closes: its first bytes are recorded
	require.Eventually(t, func() bool { return proxy.first() != nil }, 5*time.Second, 10*time.Millisecond)
	sh := env.Share(svc.ID, client.CreateShareRequest{})
	shareURL := testenv.ShareURL(ed, sh.Token)
	serves := func(t *testing.T) {
		t.Helper()
		eventuallyStatus(t, shareURL+"/", 200, 3*time.Second)
	}
	serves(t)

	rogueID, rogueToken, _ := env.ProvisionAgent("rogue")
	env.WaitSynced(5 * time.Second) // its key is on the edge before it dials

	// Slowloris during the handshake: connections that dribble a byte of
	// their hello now and then are cut at HandshakeTimeout; they never
	// stop honest agents or visitors (checked in the meantime by every
	// subtest below).
	slowStart := time.Now()
	var slow []net.Conn
	for i := 0; i < 50; i++ {
		c, err := net.Dial("tcp", tunAddr)
		require.NoError(t, err)
		t.Cleanup(func() { c.Close() })
		_, err = tunnel.ReadServerHello(c)
		require.NoError(t, err)
		_, _ = c.Write([]byte("P"))
		slow = append(slow, c)
	}
	go func() {
		for i := 0; i < 30; i++ {
			time.Sleep(500 * time.Millisecond)
			for _, c := range slow {
				_, _ = c.Write([]byte("C"))
			}
		}
	}()

	t.Run("wrong token", func(t *testing.T) {
		r := dialRogue(t, tunAddr, rogueID, "not-the-token", tunnel.Version)
		require.NoError(t, r.err)
		require.Equal(t, tunnel.ResultBadCredentials, r.res.Status)
		require.Equal(t, "invalid agent credentials", r.res.Message)
		require.True(t, closedByPeer(r.conn, 2*time.Second), "the edge closes a rejected connection")
		// An unknown agent gets the very same answer (no oracle for ids).
		u := dialRogue(t, tunAddr, uuid.NewString(), rogueToken, tunnel.Version)
		require.Equal(t, r.res, u.res)
		// The rejection is audited on the agent.
		require.Eventually(t, func() bool {
			logs, _, err := env.Client.ListAgentAuditLogs(ctx, rogueID, client.ListOptions{})
			if err != nil {
				return false
			}
			for _, l := range logs {
				if l.Event == "REJECTED" {
					return true
				}
			}
			return false
		}, 5*time.Second, 50*time.Millisecond, "a REJECTED audit event")
		serves(t)
	})

	t.Run("replayed handshake", func(t *testing.T) {
		hello := proxy.first()
		require.GreaterOrEqual(t, len(hello), 4+1+16+tunnel.SigSize+1, "a real hello was captured")
		ch, err := tunnel.ReadClientHello(bytes.NewReader(hello))
		require.NoError(t, err)
		require.Equal(t, capID, ch.AgentID.String())
		require.Equal(t, byte(tunnel.Version), ch.Version)
		n := 4 + 1 + 16 + tunnel.SigSize + 1 + len(ch.Software)
		for i := 0; i < 3; i++ {
			c, err := net.Dial("tcp", tunAddr)
			require.NoError(t, err)
			br := bufio.NewReader(c)
			_, err = tunnel.ReadServerHello(br) // a fresh nonce the replay cannot match
			require.NoError(t, err)
			_, err = c.Write(hello[:n])
			require.NoError(t, err)
			res, err := tunnel.ReadResult(br)
			require.NoError(t, err)
			require.Equal(t, tunnel.ResultBadCredentials, res.Status, "a replayed hello is refused")
			c.Close()
		}
		require.NotContains(t, ed.ConnectedAgents(), capID, "no session from a replay")
		require.Contains(t, ed.ConnectedAgents(), id, "the honest agent is unaffected")
		serves(t)
	})

	t.Run("bad versions and garbage", func(t *testing.T) {
		r := dialRogue(t, tunAddr, rogueID, rogueToken, 9)
		require.Equal(t, tunnel.ResultUnsupportedVersion, r.res.Status)
		r = dialRogue(t, tunAddr, rogueID, rogueToken, 0)
		require.Equal(t, tunnel.ResultUnsupportedVersion, r.res.Status)
		// Protocol 1 with the right token: its key is the token hash, which
		// edges no longer receive for tokens issued with a public key.
		r = dialRogue(t, tunAddr, rogueID, rogueToken, 1)
		require.Equal(t, tunnel.ResultUnsupportedVersion, r.res.Status, r.res.Message)
		require.Contains(t, r.res.Message, "version 1 is not accepted")
		// Not the protocol at all: dropped without an answer.
		c, err := net.Dial("tcp", tunAddr)
		require.NoError(t, err)
		defer c.Close()
		junk := make([]byte, 200)
		_, _ = rand.Read(junk)
		_, _ = c.Write(junk)
		require.True(t, closedByPeer(c, 2*time.Second))
		// A valid hello with smux bytes pipelined before the result.
		c2, err := net.Dial("tcp", tunAddr)
		require.NoError(t, err)
		defer c2.Close()
		sh, err := tunnel.ReadServerHello(c2)
		require.NoError(t, err)
		aid := uuid.MustParse(rogueID)
		ch := tunnel.NewClientHello(tunnel.Version, aid, rogueToken, sh, "")
		var b bytes.Buffer
		require.NoError(t, tunnel.WriteClientHello(&b, ch))
		b.WriteString("early smux frames")
		_, _ = c2.Write(b.Bytes())
		require.True(t, closedByPeer(c2, 2*time.Second), "data before the result is refused")
		require.NotContains(t, ed.ConnectedAgents(), rogueID)
		serves(t)
	})

	t.Run("agent-opened stream flood beyond the cap", func(t *testing.T) {
		r := dialRogue(t, tunAddr, rogueID, rogueToken, tunnel.Version)
		s := r.session(t)
		require.Eventually(t, func() bool { return slices.Contains(ed.ConnectedAgents(), rogueID) }, 3*time.Second, 10*time.Millisecond)
		runtime.GC()
		before := runtime.NumGoroutine()
		const flood = 3000
		var opened []*smux.Stream
		for i := 0; i < flood; i++ {
			st, err := s.OpenStream()
			if err != nil {
				break
			}
			opened = append(opened, st) // never send a header: each would hold the edge
		}
		time.Sleep(500 * time.Millisecond)
		grew := runtime.NumGoroutine() - before
		t.Logf("%d streams opened by the agent; goroutines grew by %d (cap %d)", len(opened), grew, maxStreams)
		require.Less(t, grew, 4*maxStreams+64, "agent-opened streams must be capped per agent")
		serves(t)
		// Streams over the cap are closed by the edge at once.
		closed := 0
		for _, st := range opened[len(opened)-100:] {
			_ = st.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
			if _, err := st.Read(make([]byte, 1)); err == io.EOF {
				closed++
			}
		}
		require.Equal(t, 100, closed, "streams beyond the cap are refused")
		// ...and counted, so an operator can see it.
		fams := scrapeMetrics(t, "http://"+ed.AdminAddr()+"/metrics")
		require.GreaterOrEqual(t, metricValue(fams, "pc_edge_streams_refused_total", nil), float64(len(opened)-maxStreams))
		s.Close()
		require.Eventually(t, func() bool { return !slices.Contains(ed.ConnectedAgents(), rogueID) }, 3*time.Second, 10*time.Millisecond)
	})

	t.Run("edge-opened stream flood beyond the cap", func(t *testing.T) {
		// Visitors flood the honest agent with slow requests: beyond the
		// per-agent stream cap they are refused at once with 503, and once
		// the flood ends the share serves again.
		var wg sync.WaitGroup
		cl := &http.Client{Timeout: 30 * time.Second}
		ctxSlow, cancel := context.WithCancel(ctx)
		var mu sync.Mutex
		fast := map[int]int{} // status → count of answers before the service answers the holds
		var released atomic.Bool
		for i := 0; i < 2*maxStreams; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				req, _ := http.NewRequestWithContext(ctxSlow, "GET", shareURL+"/hold", nil)
				resp, err := cl.Do(req)
				if err != nil {
					return
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				// Before the holds are released only a refusal can come back
				// (the flag is set before the release, so a hold's 200 always
				// sees it; a request whose goroutine started late is no
				// exception).
				if !released.Load() {
					mu.Lock()
					fast[resp.StatusCode]++
					mu.Unlock()
					if resp.StatusCode != 503 || !strings.Contains(string(b), "busy") {
						t.Errorf("a request beyond the cap got %d %s", resp.StatusCode, b)
					}
				}
			}()
		}
		time.Sleep(3 * time.Second)
		mu.Lock()
		refused := fast[503]
		mu.Unlock()
		// A visitor hanging up does not free its stream (the edge waits for
		// the service's answer); the service answering does.
		cancel()
		released.Store(true)
		releaseOnce.Do(func() { close(release) })
		wg.Wait()
		t.Logf("%d slow requests against a cap of %d streams: %d refused at once with 503", 2*maxStreams, maxStreams, refused)
		require.GreaterOrEqual(t, refused, maxStreams, "requests beyond the cap are refused at once")
		serves(t)
	})

	t.Run("cross-workspace reach", func(t *testing.T) {
		var ws struct {
			APIKey struct {
				Key string `json:"key"`
			} `json:"apiKey"`
		}
		_, err := env.Client.Do(ctx, "POST", "/v1/workspaces", nil, map[string]string{"name": "tenant-b"}, &ws)
		require.NoError(t, err)
		other := client.New(env.ControlURL(), ws.APIKey.Key)
		p, err := other.ProvisionAgent(ctx, client.ProvisionRequest{Name: "b"})
		require.NoError(t, err)
		_, err = other.RegisterAgent(ctx, client.RegisterAgentRequest{AgentID: p.AgentID, Token: p.Token})
		require.NoError(t, err)
		env.WaitSynced(5 * time.Second)
		r := dialRogue(t, tunAddr, p.AgentID, p.Token, tunnel.Version)
		s := r.session(t)
		st, err := s.OpenStream()
		require.NoError(t, err)
		hdr, _ := tunnel.AppendStreamHeader(nil, &tunnel.StreamHeader{Kind: tunnel.KindReach, ServiceID: uuid.MustParse(svc.ID)})
		_, err = st.Write(hdr)
		require.NoError(t, err)
		res, err := tunnel.ReadResult(st)
		require.NoError(t, err)
		require.Equal(t, tunnel.ReplyUnknownService, res.Status, "another workspace's service is invisible")
		// A stream kind agents may not open is refused.
		st2, err := s.OpenStream()
		require.NoError(t, err)
		hdr, _ = tunnel.AppendStreamHeader(nil, &tunnel.StreamHeader{Kind: tunnel.KindHTTP, ServiceID: uuid.MustParse(svc.ID)})
		_, _ = st2.Write(hdr)
		res, err = tunnel.ReadResult(st2)
		require.NoError(t, err)
		require.Equal(t, tunnel.ReplyRefused, res.Status)
		serves(t)
	})

	t.Run("oversized control frame", func(t *testing.T) {
		r := dialRogue(t, tunAddr, rogueID, rogueToken, tunnel.Version)
		s := r.session(t)
		ctl, err := s.AcceptStream()
		require.NoError(t, err)
		var lb [4]byte
		binary.BigEndian.PutUint32(lb[:], 1<<31)
		_, _ = ctl.Write(lb[:])
		_ = ctl.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err = io.Copy(io.Discard, ctl)
		var ne net.Error
		require.False(t, errors.As(err, &ne) && ne.Timeout(), "the edge kept a session that sent an oversized control frame")
		require.Eventually(t, func() bool { return !slices.Contains(ed.ConnectedAgents(), rogueID) }, 3*time.Second, 10*time.Millisecond)
		serves(t)
	})

	t.Run("garbage and oversized smux frames", func(t *testing.T) {
		for _, payload := range [][]byte{
			// version 9: not smux
			{9, 0, 0, 0, 0, 0, 0, 0},
			// a SYN carrying a length (protocol error)
			{2, 0, 16, 0, 1, 0, 0, 0},
			// a 64 KiB PSH to a stream that does not exist, then junk
			append(append([]byte{2, 2, 0xff, 0xff, 99, 0, 0, 0}, make([]byte, 0xffff)...), bytes.Repeat([]byte{0xee}, 64)...),
			// junk
			bytes.Repeat([]byte{0xab, 0xcd, 0x01}, 1400),
		} {
			r := dialRogue(t, tunAddr, rogueID, rogueToken, tunnel.Version)
			require.Equal(t, tunnel.ResultOK, r.res.Status)
			_, _ = r.conn.Write(payload)
			require.True(t, closedByPeer(r.conn, 35*time.Second), "the edge drops a session sending garbage frames")
			require.Eventually(t, func() bool { return !slices.Contains(ed.ConnectedAgents(), rogueID) }, 3*time.Second, 10*time.Millisecond)
			serves(t)
		}
	})

	// The slowloris connections were cut at the handshake timeout.
	time.Sleep(time.Until(slowStart.Add(tunnel.HandshakeTimeout + time.Second)))
	for i, c := range slow {
		require.True(t, closedByPeer(c, 2*time.Second), "slow handshake %d still open after %v", i, time.Since(slowStart))
	}
	require.Contains(t, ed.ConnectedAgents(), id)
	serves(t)
}
