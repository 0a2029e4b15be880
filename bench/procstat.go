package bench

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// clkTck is USER_HZ, the unit of utime and stime in /proc/<pid>/stat. It is
// 100 on every Linux architecture Go supports.
const clkTck = 100

// ProcSample is one reading of a process's resource use.
type ProcSample struct {
	CPUSeconds float64 // user + system time since the process started
	RSSBytes   int64   // resident set size now (VmRSS)
	AnonBytes  int64   // of which private memory (RssAnon; the rest is mapped files and shared memory)
	HWMBytes   int64   // peak resident set size (VmHWM)
	Threads    int
}

// readProc reads /proc/<pid>/stat and /proc/<pid>/status.
func readProc(pid int) (ProcSample, error) {
	var s ProcSample
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return s, err
	}
	// The command name (field 2) may hold spaces: fields are counted after
	// its closing parenthesis.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return s, fmt.Errorf("bench: /proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); utime is field 14, stime field 15.
	if len(f) < 13 {
		return s, fmt.Errorf("bench: /proc/%d/stat: too few fields", pid)
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	s.CPUSeconds = float64(ut+st) / clkTck
	b, err = os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		switch k {
		case "VmRSS":
			s.RSSBytes = parseKB(v)
		case "RssAnon":
			s.AnonBytes = parseKB(v)
		case "VmHWM":
			s.HWMBytes = parseKB(v)
		case "Threads":
			s.Threads, _ = strconv.Atoi(v)
		}
	}
	return s, nil
}

func parseKB(v string) int64 {
	n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(v, "kB")), 10, 64)
	return n << 10
}
