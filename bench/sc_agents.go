package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/privateconnect/pc/sdk/agent"
	"github.com/privateconnect/pc/sdk/client"
)

func init() {
	register(scenario{name: "idle-agents", desc: "N idle agents connected to one edge (default 10,000): edge memory per agent",
		target: "≥ 10,000 agents; edge memory per idle agent ≤ 64 KiB", run: runIdleAgents})
}

// agentsLine prefixes the helper's progress lines.
const agentsLine = "PCBENCH-AGENTS "

func runIdleAgents(ctx context.Context, r *runner, res *Result) error {
	e := r.env
	n := r.opts.IdleAgents
	if n <= 0 {
		n = 10000
		if r.opts.Quick {
			n = 20
		}
	}
	// File descriptors: one per agent in the helper and one per agent in
	// the edge (which inherits pcbench's raised limit when pcbench started
	// it).
	limit := raiseFileLimit()
	if need := uint64(n + 512); limit > 0 && limit < need {
		old := n
		n = int(limit) - 512
		res.note("open-files limit %d (ulimit -n; hard limit included): %d agents instead of %d", limit, n, old)
	}
	if n <= 0 {
		return unavailable("open-files limit too low for idle agents")
	}
	// 1. Provision the identities through the API.
	start := time.Now()
	ids := make([]string, n)
	var seq atomic.Int64
	var provErr atomic.Value
	var wg sync.WaitGroup
	provLive := &liveCounters{}
	stopProg := r.prog.start(res.Scenario+"/provision", time.Now(), 0, unitReqs, provLive)
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(seq.Add(1) - 1)
				if i >= n || ctx.Err() != nil || provErr.Load() != nil {
					return
				}
				var p *client.ProvisionedAgent
				err := e.keys.call(ctx, func(c *client.Client) (err error) {
					p, err = c.ProvisionAgent(ctx, client.ProvisionRequest{ClientType: "sdk", Name: fmt.Sprintf("idle-%d", i), Label: "pcbench-idle"})
					return err
				})
				if err != nil {
					provErr.Store(err)
					return
				}
				ids[i] = p.AgentID + " " + p.Token
				provLive.ops.Add(1)
			}
		}()
	}
	wg.Wait()
	stopProg()
	if err, _ := provErr.Load().(error); err != nil {
		return fmt.Errorf("provision agents: %w", err)
	}
	provision := time.Since(start)
	res.metric("agents provisioned through the API", float64(n), "agents", "", nil)
	res.metric("provisioning rate", float64(n)/provision.Seconds(), "agents/s", "", nil)
	file := filepath.Join(e.dir, "idle-agents.txt")
	if err := os.WriteFile(file, []byte(strings.Join(ids, "\n")+"\n"), 0o600); err != nil {
		return err
	}
	if err := e.waitSynced(ctx, e.EdgeAdmin, 2*time.Minute); err != nil {
		return err
	}
	// 2. Edge memory before.
	edgeProc := e.edge
	base, err := getEdgeHealth(e.EdgeAdmin)
	if err != nil {
		return err
	}
	time.Sleep(2 * time.Second)
	before, err := readProc(edgeProc.PID())
	if err != nil {
		return err
	}
	memBefore, _ := getGoMem(e.EdgeAdmin)
	// 3. Connect them all from one helper process.
	helper, err := startProc("agents", nil, e.opts.Self, "agents", "--edge", e.EdgeTunnel, "--file", file)
	if err != nil {
		return err
	}
	e.track(helper)
	defer helper.Stop(30 * time.Second)
	mon := newMonitor(map[string]int{edgeProc.Name: edgeProc.PID(), "agents": helper.PID(), "control": e.control.PID()})
	connStart := time.Now()
	live := &liveCounters{}
	stopProg = r.prog.start(res.Scenario+"/connect", time.Now(), 0, unitReqs, live)
	want := base.ConnectedAgents + n
	err = helper.waitFor(ctx, 5*time.Minute, fmt.Sprintf("%d agents connected", n), func() bool {
		h, err := getEdgeHealth(e.EdgeAdmin)
		if err != nil {
			return false
		}
		live.ops.Store(int64(h.ConnectedAgents - base.ConnectedAgents))
		return h.ConnectedAgents >= want
	})
	stopProg()
	if err != nil {
		res.System = &Phase{Procs: mon.end()}
		return err
	}
	connectAll := time.Since(connStart)
	// 4. Idle: let keep-alives run and the heap settle, then measure.
	idle := 10 * time.Second
	if r.opts.Quick {
		idle = 2 * time.Second
	}
	cpu0, _ := readProc(edgeProc.PID())
	time.Sleep(idle)
	cpu1, _ := readProc(edgeProc.PID())
	after, err := readProc(edgeProc.PID())
	if err != nil {
		return err
	}
	helperStat, _ := readProc(helper.PID())
	memAfter, _ := getGoMem(e.EdgeAdmin)
	// Propagation while every agent is connected: each swap pushes the
	// service list to every agent session.
	created, revoked, _, perr := r.propagation(ctx, map[bool]int{true: 2, false: 10}[r.opts.Quick])
	res.System = &Phase{Procs: mon.end(), Target: fmt.Sprintf("edge %s, %d agents from one helper process", e.EdgeTunnel, n), Unit: "agents"}
	perAgent := float64(after.RSSBytes-before.RSSBytes) / float64(n) / 1024
	pass := perAgent <= 64 && n >= 10000
	res.metric("agents connected", float64(n), "agents", "≥ 10000", boolPtr(n >= 10000))
	res.metric("time to connect all", float64(connectAll.Milliseconds()), "ms", "", nil)
	res.metric("edge RSS before", mib(before.RSSBytes), "MiB", "", nil)
	res.metric("edge RSS with the agents idle", mib(after.RSSBytes), "MiB", "", nil)
	res.metric("edge memory per idle agent", perAgent, "KiB", "≤ 64", boolPtr(perAgent <= 64))
	res.metric("edge CPU while idle", (cpu1.CPUSeconds-cpu0.CPUSeconds)/idle.Seconds()*100, "% of one core", "", nil)
	if memBefore != nil && memAfter != nil {
		// Where the memory is: RSS counts the pages touched, the Go heap what is allocated
		// (smux gives every session 64 KiB of channel buffers, resident only once written:
		// see docs/benchmarks.md).
		res.metric("edge goroutines per agent", (memAfter.Goroutines-memBefore.Goroutines)/float64(n), "", "", nil)
		res.metric("edge goroutine stacks per agent", (memAfter.StackInuse-memBefore.StackInuse)/float64(n)/1024, "KiB", "", nil)
		res.metric("edge Go heap allocated per agent (live and not yet collected)", (memAfter.HeapAlloc-memBefore.HeapAlloc)/float64(n)/1024, "KiB", "", nil)
		// smux's session buffers count in the live heap although untouched, so
		// the next collection's goal sits near twice that: the garbage of the
		// connection storm stays resident until it (or Go's forced collection
		// every 2 minutes) comes.
		res.metric("edge GC heap goal with the agents idle", mib(int64(memAfter.NextGC)), "MiB", "", nil)
	}
	res.metric("helper (agent side) RSS per agent", float64(helperStat.RSSBytes)/float64(n)/1024, "KiB", "", nil)
	if perr == nil {
		all := summarizeDurations(append(created, revoked...))
		res.metric(fmt.Sprintf("config propagation with %d agents connected: p50", n), all.P50, "ms", "", nil)
		res.metric(fmt.Sprintf("config propagation with %d agents connected: p99", n), all.P99, "ms", "", nil)
	} else {
		res.note("propagation with the agents connected failed: %v", perr)
	}
	res.Pass = boolPtr(pass)
	return nil
}

// RunAgents is the hidden `pcbench agents` command: it runs one sdk/agent
// per line of file ("agentId token") against edge, until ctx ends.
func RunAgents(ctx context.Context, edge, file string, w io.Writer) error {
	limit := raiseFileLimit()
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	var list [][2]string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		id, tok, ok := strings.Cut(strings.TrimSpace(sc.Text()), " ")
		if ok {
			list = append(list, [2]string{id, tok})
		}
	}
	fmt.Fprintf(w, "%sstarting %d agents (open-files limit %d)\n", agentsLine, len(list), limit)
	var connected atomic.Int64
	log := slog.New(slog.DiscardHandler)
	var wg sync.WaitGroup
	for i, it := range list {
		a, err := agent.New(agent.Config{AgentID: it[0], Token: it[1], Edges: []string{edge}, Logger: log,
			MinBackoff: 500 * time.Millisecond, MaxBackoff: 10 * time.Second, DialTimeout: 30 * time.Second,
			OnEvent: func(ev agent.Event) {
				switch ev.Kind {
				case agent.EventConnected:
					connected.Add(1)
				case agent.EventDisconnected:
					connected.Add(-1)
				}
			}})
		if err != nil {
			return err
		}
		wg.Add(1)
		go func() { defer wg.Done(); _ = a.Run(ctx) }()
		if i%200 == 199 { // a connection storm, but not one SYN flood
			sleepCtx(ctx, 20*time.Millisecond)
		}
	}
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			wg.Wait()
			return nil
		case <-t.C:
			fmt.Fprintf(w, "%sconnected %d\n", agentsLine, connected.Load())
		}
	}
}
