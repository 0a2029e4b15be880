package bench

import (
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/privateconnect/pc/internal/tunnel"
)

// The ceiling: how fast could any proxy be on this machine? pcbench answers
// it in the same run by loading the origin through bare TCP relays, separate
// processes (the hidden `pcbench relay` command) that do nothing but copy
// bytes: no HTTP parsing, no multiplexing, no policy, no logs. One relay is
// the cheapest possible proxy; a chain of two has the topology of the
// system (the edge, then the agent next to the service), so the system's
// throughput over the two-relay chain's is the part of the ceiling the
// system's own work leaves, and the two-relay chain's over direct is what
// the extra hops cost before any of that work.

const relayLine = "PCBENCH-RELAY "

// RunRelay accepts connections on listen and relays each to to until ctx
// ends, printing its address on w.
func RunRelay(ctx context.Context, listen, to string, w io.Writer) error {
	l, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "%s%s\n", relayLine, l.Addr())
	go func() {
		<-ctx.Done()
		l.Close()
	}()
	acceptLoop(l, func(c net.Conn) { relay(c, to) })
	return nil
}

// relay copies c ↔ a new connection to addr with the tunnel's own copy
// (tunnel.Pipe: 32 KiB buffers, copying rather than splice(2), which
// measured no faster here; half-close passed on).
func relay(c net.Conn, addr string) {
	u, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		c.Close()
		return
	}
	tunnel.Pipe(c, u)
}

// relayChain starts two relay processes in front of addr: near relays to
// addr, far relays to near. The one-hop ceiling loads near, the two-hop one
// far. Chains are started once per address and kept for the run.
func (e *Env) relayChain(ctx context.Context, addr string) (near, far *Proc, err error) {
	e.mu.Lock()
	if e.relays == nil {
		e.relays = map[string][2]*Proc{}
	}
	ch, ok := e.relays[addr]
	e.mu.Unlock()
	if ok {
		return ch[0], ch[1], nil
	}
	if near, err = e.startRelay(ctx, "relay-near", addr); err != nil {
		return nil, nil, err
	}
	if far, err = e.startRelay(ctx, "relay-far", near.Addr); err != nil {
		return nil, nil, err
	}
	e.mu.Lock()
	e.relays[addr] = [2]*Proc{near, far}
	e.mu.Unlock()
	return near, far, nil
}

func (e *Env) startRelay(ctx context.Context, name, to string) (*Proc, error) {
	p, err := startProc(name, nil, e.opts.Self, "relay", "--to", to)
	if err != nil {
		return nil, err
	}
	e.track(p)
	err = p.waitFor(ctx, 10*time.Second, name, func() bool {
		out := p.Output()
		i := strings.Index(out, relayLine)
		if i < 0 {
			return false
		}
		line, _, ok := strings.Cut(out[i+len(relayLine):], "\n")
		p.Addr = strings.TrimSpace(line)
		return ok
	})
	return p, err
}

// ceiling loads the origin at addr through one, then two bare relays with
// the phase function of the scenario (given the address to load) and
// records both phases and their ratios.
func (r *runner) ceiling(ctx context.Context, res *Result, addr string, phase func(label, addr string) *Phase) error {
	e := r.env
	if e == nil || res.Direct == nil || ctx.Err() != nil {
		return nil
	}
	near, far, err := e.relayChain(ctx, addr)
	if err != nil {
		return fmt.Errorf("relay: %w", err)
	}
	for _, hop := range []struct {
		label string
		procs []*Proc
	}{{"relay-1", []*Proc{near}}, {"relay-2", []*Proc{near, far}}} {
		pids := e.procPIDs(false)
		for _, p := range hop.procs {
			pids[p.Name] = p.PID()
		}
		ph := measurePIDs(pids, func() *Phase { return phase(res.Scenario+"/"+hop.label, hop.procs[len(hop.procs)-1].Addr) })
		ph.Target = fmt.Sprintf("%d bare relay process(es) in front of %s", len(hop.procs), addr)
		res.Ceiling = append(res.Ceiling, ph)
	}
	return nil
}

// noteCeiling adds the ceiling's ratios to the metrics, once the system
// phase is measured.
func (res *Result) noteCeiling() {
	if res.Direct == nil || res.Direct.Rate == 0 || len(res.Ceiling) != 2 {
		return
	}
	one, two := res.Ceiling[0], res.Ceiling[1]
	res.metric("ceiling: one bare relay / direct", one.Rate/res.Direct.Rate, "×", "", nil)
	res.metric("ceiling: two bare relays (the edge + agent topology) / direct", two.Rate/res.Direct.Rate, "×", "", nil)
	if res.System != nil && two.Rate > 0 {
		res.metric("system / two bare relays", res.System.Rate/two.Rate, "×", "", nil)
	}
}
