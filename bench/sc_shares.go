package bench

import (
	"context"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/privateconnect/pc/sdk/client"
)

func init() {
	register(scenario{name: "shares-100k", desc: "100,000 shares: API creation rate, edge catch-up, snapshot build and swap, lookup cost",
		target: "≥ 100,000 shares; lookup flat (O(1)); snapshot swap ≤ 1 s", run: runShares})
}

func runShares(ctx context.Context, r *runner, res *Result) error {
	e := r.env
	n := r.opts.Shares
	if n <= 0 {
		n = 100000
		if r.opts.Quick {
			n = 300
		}
	}
	// 1. Bulk creation through the API, bounded in time.
	var seq atomic.Int64
	stamp := time.Now().UnixNano() % 1e9
	budget := r.opts.SharesBudget
	if r.opts.Quick {
		budget = 20 * time.Second
	}
	res.System = r.measure(true, func() *Phase {
		return runLoad(ctx, loadSpec{Label: res.Scenario + "/create", Conns: r.conns(16), Duration: budget, MaxOps: int64(n), Unit: unitReqs,
			Op: func(w *worker) (int64, string) {
				i := seq.Add(1)
				err := e.keys.call(ctx, func(c *client.Client) error {
					_, err := c.CreateShare(ctx, e.HTTPService.ID, client.CreateShareRequest{Name: fmt.Sprintf("bulk-%d-%d", stamp, i), ExpiresIn: client.ExpiresNever})
					return err
				})
				if err != nil {
					if ae, ok := err.(*client.APIError); ok {
						return 0, statusKind(ae.StatusCode)
					}
					return 0, errKind(err)
				}
				return 0, ""
			}}, r.prog)
	})
	res.System.Target = "POST /v1/services/:id/shares, 16 connections"
	created := res.System.Ops
	res.metric("shares created through the API", float64(created), "shares", "", nil)
	res.metric("API creation rate", res.System.Rate, "shares/s", "", nil)
	if created < int64(n) {
		res.note("stopped after %v: %d of %d shares created; at %.0f shares/s, %d would take %.0f s", budget, created, n, res.System.Rate, n, float64(n)/max(res.System.Rate, 1))
	}
	// 2. How long the edge needs to catch up after the last creation.
	lastCreate := time.Now()
	if err := e.waitSynced(ctx, e.EdgeAdmin, 5*time.Minute); err != nil {
		return fmt.Errorf("edge catch-up: %w", err)
	}
	catchUp := time.Since(lastCreate)
	res.metric("edge catch-up after the last creation", float64(catchUp.Milliseconds()), "ms", "", nil)
	h, err := getEdgeHealth(e.EdgeAdmin)
	if err != nil {
		return err
	}
	res.metric("shares in the edge's table", float64(h.Shares), "shares", "≥ 100000", boolPtr(h.Shares >= 100000))

	// 3. One change at this size: commit → in force.
	k := 20
	if r.opts.Quick {
		k = 3
	}
	created2, revoked, _, err := r.propagation(ctx, k)
	if err != nil {
		return err
	}
	all := summarizeDurations(append(created2, revoked...))
	res.metric(fmt.Sprintf("config propagation at %d shares: p50", h.Shares), all.P50, "ms", "", nil)
	res.metric(fmt.Sprintf("config propagation at %d shares: p99", h.Shares), all.P99, "ms", "≤ 1000 (swap ≤ 1 s)", boolPtr(all.P99 <= 1000))

	// 4. A new edge loads the full snapshot: build + swap as it sees it.
	freshOK, err := r.freshEdge(ctx, res, h.Shares)
	if err != nil {
		res.note("fresh-edge snapshot load not measured: %v", err)
	}

	// 5. The routing table in this process: build, one change, lookups.
	sizes := []int{1000, 100000}
	if r.opts.Quick {
		sizes = []int{1000, 10000}
	}
	var costs []TableCost
	for _, s := range sizes {
		c, err := measureTable(s)
		if err != nil {
			return err
		}
		costs = append(costs, c)
		res.metric(fmt.Sprintf("routes.Build of %d shares (in process)", s), float64(c.Build.Microseconds())/1000, "ms", "", nil)
		res.metric(fmt.Sprintf("routes.Table.Apply of 1 change at %d shares (in process)", s), float64(c.Apply.Microseconds())/1000, "ms", "", nil)
		res.metric(fmt.Sprintf("share lookup (SHA-256 + map) at %d shares (in process)", s), float64(c.Lookup.Nanoseconds()), "ns", "", nil)
	}
	// A map lookup is O(1); what grows with the table is cache misses. The
	// bar: a lookup stays under 1 µs, negligible next to a proxied request.
	flat := costs[1].Lookup < time.Microsecond
	res.metric("lookup cost ratio large/small table", float64(costs[1].Lookup)/float64(costs[0].Lookup), "×", "", nil)
	res.metric(fmt.Sprintf("share lookup at %d shares", costs[1].Shares), float64(costs[1].Lookup.Nanoseconds()), "ns", "≤ 1000 (O(1) map; growth is cache misses)", boolPtr(flat))
	big := costs[len(costs)-1]
	swapOK := big.Build < time.Second && big.Apply < time.Second
	res.Pass = boolPtr(flat && swapOK && freshOK && all.P99 <= 1000 && h.Shares >= 100000)
	return nil
}

// freshEdge starts one more edge with an empty data directory and times
// its first full snapshot (fetch, decode, build, swap) and its memory.
func (r *runner) freshEdge(ctx context.Context, res *Result, shares int) (bool, error) {
	e := r.env
	httpAddr, _ := freeAddr()
	tunAddr, _ := freeAddr()
	adminAddr, _ := freeAddr()
	v, err := e.controlVersion(ctx)
	if err != nil {
		return false, err
	}
	start := time.Now()
	p, err := e.startEdge(ctx, "edge-fresh", httpAddr, tunAddr, adminAddr, filepath.Join(e.dir, "edge-fresh"))
	if err != nil {
		return false, err
	}
	defer func() {
		p.Stop(5 * time.Second)
		r.deleteEdges(ctx, tunAddr)
	}()
	var ready, listening time.Duration
	err = p.waitFor(ctx, 5*time.Minute, "fresh edge snapshot", func() bool {
		h, err := getEdgeHealth(adminAddr)
		if err == nil && listening == 0 {
			listening = time.Since(start)
		}
		if err == nil && h.ConfigVersion >= v && h.Shares >= shares {
			ready = time.Since(start)
			return true
		}
		return false
	})
	if err != nil {
		return false, err
	}
	s, err := readProc(p.PID())
	if err != nil {
		return false, err
	}
	res.metric("new edge: process start → /health answers", float64(listening.Milliseconds()), "ms", "", nil)
	res.metric(fmt.Sprintf("new edge: /health answers → %d-share snapshot in force (fetch, decode, build, swap)", shares), float64((ready - listening).Milliseconds()), "ms", "≤ 1000", boolPtr(ready-listening <= time.Second))
	res.metric("new edge RSS with the snapshot", mib(s.RSSBytes), "MiB", "", nil)
	if shares >= 10000 {
		res.metric("new edge RSS per share (whole process / shares)", float64(s.RSSBytes)/float64(shares), "bytes", "", nil)
	}
	return ready-listening <= time.Second, nil
}

// deleteEdges unregisters the edges with a tunnel address (so agents stop
// dialling an edge pcbench stopped).
func (r *runner) deleteEdges(ctx context.Context, tunAddr string) {
	e := r.env
	var edges []client.Edge
	_ = e.keys.call(ctx, func(c *client.Client) (err error) {
		edges, _, err = c.ListEdges(ctx, client.ListOptions{Limit: 500})
		return err
	})
	for _, ed := range edges {
		if ed.TunnelAddr == tunAddr {
			_ = e.keys.call(ctx, func(c *client.Client) error { return c.DeleteEdge(ctx, ed.ID) })
		}
	}
}
