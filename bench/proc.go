package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// Proc is a child process pcbench started (origin, servers, agents).
type Proc struct {
	Name string
	Addr string // the address it serves, for the helpers that print one
	cmd  *exec.Cmd
	out  tailBuffer
	done chan struct{}
	err  error
}

// startProc starts path with args; its output is kept (the tail) for error
// messages. The child is killed if pcbench dies.
func startProc(name string, env []string, path string, args ...string) (*Proc, error) {
	p := &Proc{Name: name, cmd: exec.Command(path, args...), done: make(chan struct{})}
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// PID is the process id.
func (p *Proc) PID() int { return p.cmd.Process.Pid }

// Exited reports whether the process has ended.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Output is the tail of the process's combined output.
func (p *Proc) Output() string { return p.out.String() }

// Stop sends SIGTERM and waits up to timeout, then kills.
func (p *Proc) Stop(timeout time.Duration) {
	if p == nil || p.Exited() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(timeout):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// errExited describes a process that ended early, with its last output.
func (p *Proc) errExited() error {
	return fmt.Errorf("%s exited (%v); last output:\n%s", p.Name, p.err, lastLines(p.Output(), 20))
}

// waitFor polls cond until it is true, the process exits, or timeout.
func (p *Proc) waitFor(ctx context.Context, timeout time.Duration, what string, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return nil
		}
		if p != nil && p.Exited() {
			return p.errExited()
		}
		if time.Now().After(deadline) {
			out := ""
			if p != nil {
				out = "; last output:\n" + lastLines(p.Output(), 20)
			}
			return fmt.Errorf("%s not ready within %v%s", what, timeout, out)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// tailBuffer keeps the last 64 KiB written to it.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
}

const tailMax = 64 << 10

func (t *tailBuffer) Write(b []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, b...)
	if len(t.buf) > tailMax {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-tailMax:]...)
	}
	return len(b), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}

func lastLines(s string, n int) string {
	end := len(s)
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == '\n' && i != len(s)-1 {
			n--
			if n == 0 {
				return s[i+1 : end]
			}
		}
	}
	return s
}

// ProcStat is what one process used during a phase.
type ProcStat struct {
	Name       string  `json:"name"`
	PID        int     `json:"pid"`
	CPUSeconds float64 `json:"cpuSeconds"`
	// PeakRSSMiB is the highest resident set size sampled during the phase.
	PeakRSSMiB float64 `json:"peakRssMiB"`
	// HWMMiB is the process's lifetime peak (VmHWM) at the end of the phase.
	HWMMiB float64 `json:"hwmMiB"`
	// StartRSSMiB and EndRSSMiB are the resident set sizes at the phase's
	// start and end.
	StartRSSMiB float64 `json:"startRssMiB"`
	EndRSSMiB   float64 `json:"endRssMiB"`
}

// monitor samples the CPU time and memory of a set of processes during a
// phase.
type monitor struct {
	mu     sync.Mutex
	procs  []monProc
	stop   chan struct{}
	done   chan struct{}
	record bool // keep every sample's resident memory (soak)
}

type monProc struct {
	name  string
	pid   int
	start ProcSample
	peak  int64
	rss   []rssSample // when recording
}

// newMonitor starts sampling every 100 ms; end stops it.
func newMonitor(procs map[string]int) *monitor { return startMonitor(procs, false) }

// startMonitor is newMonitor, keeping every sample's resident memory when
// record is set.
func startMonitor(procs map[string]int, record bool) *monitor {
	m := &monitor{stop: make(chan struct{}), done: make(chan struct{}), record: record}
	for _, name := range sortedKeys(procs) {
		pid := procs[name]
		s, err := readProc(pid)
		if err != nil {
			continue
		}
		m.procs = append(m.procs, monProc{name: name, pid: pid, start: s, peak: s.RSSBytes})
	}
	go m.loop()
	return m
}

func (m *monitor) loop() {
	defer close(m.done)
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-m.stop:
			return
		case <-t.C:
			m.sample()
		}
	}
}

func (m *monitor) sample() {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := time.Now()
	for i := range m.procs {
		p := &m.procs[i]
		s, err := readProc(p.pid)
		if err != nil {
			continue
		}
		p.peak = max(p.peak, s.RSSBytes)
		if m.record {
			p.rss = append(p.rss, rssSample{at: now, rss: s.RSSBytes, anon: s.AnonBytes})
		}
	}
}

// end stops sampling and returns each process's use over the phase.
func (m *monitor) end() []ProcStat {
	close(m.stop)
	<-m.done
	m.sample()
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]ProcStat, 0, len(m.procs))
	for _, p := range m.procs {
		s, err := readProc(p.pid)
		if err != nil {
			continue
		}
		// The end reading is a sample too: the peak is never below it.
		p.peak = max(p.peak, s.RSSBytes)
		out = append(out, ProcStat{Name: p.name, PID: p.pid, CPUSeconds: round3(s.CPUSeconds - p.start.CPUSeconds),
			PeakRSSMiB: mib(p.peak), HWMMiB: mib(s.HWMBytes), StartRSSMiB: mib(p.start.RSSBytes), EndRSSMiB: mib(s.RSSBytes)})
	}
	return out
}

func mib(b int64) float64 { return round3(float64(b) / (1 << 20)) }
