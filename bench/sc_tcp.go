package bench

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"syscall"
	"time"
)

func init() {
	register(scenario{name: "tcp-bulk", desc: "TCP tunnel, one stream, 1 GiB download", target: "≥ 0.40 of direct loopback TCP",
		run: func(ctx context.Context, r *runner, res *Result) error {
			size := int64(1 << 30)
			if r.opts.Quick {
				size = 16 << 20
			}
			return runTCP(ctx, r, res, 1, size, 0.4)
		}})
	register(scenario{name: "tcp-parallel", desc: "TCP tunnel, 100 concurrent streams, 1 GiB in total", target: "aggregate ≥ 0.40 of direct",
		run: func(ctx context.Context, r *runner, res *Result) error {
			streams := 100
			size := int64(1 << 30)
			if r.opts.Quick {
				streams, size = 10, 16<<20
			}
			if r.opts.Connections > 0 {
				streams = r.opts.Connections
			}
			return runTCP(ctx, r, res, streams, size/int64(streams), 0.4)
		}})
}

// runTCP downloads size bytes on each of streams connections from the
// origin's source server, directly and through the edge's TCP tunnel port.
func runTCP(ctx context.Context, r *runner, res *Result, streams int, size int64, target float64) error {
	e := r.env
	svc, err := e.service(ctx, "bench-tcp-source", e.Origin.Source, "tcp")
	if err != nil {
		return err
	}
	if svc.TunnelPort == 0 {
		return unavailable("the control plane allocated no tunnel port for a TCP service")
	}
	edgeAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(svc.TunnelPort))
	if err := e.waitSynced(ctx, e.EdgeAdmin, 10*time.Second); err != nil {
		return err
	}
	if err := probeTCPPort(ctx, edgeAddr); err != nil {
		return err
	}
	phase := func(label, addr string) *Phase {
		return runLoad(ctx, loadSpec{Label: label, Conns: streams, MaxOps: int64(streams), Unit: unitMBps,
			Op: func(w *worker) (int64, string) {
				n, err := tcpDownload(addr, size)
				if err != nil {
					return 0, errKind(err)
				}
				if n != size {
					return 0, kindShort
				}
				return n, ""
			},
		}, r.prog)
	}
	res.Direct = r.measure(false, func() *Phase { return phase(res.Scenario+"/direct", e.Origin.Source) })
	res.Direct.Target = "origin " + e.Origin.Source
	res.System = r.measure(true, func() *Phase { return phase(res.Scenario+"/system", edgeAddr) })
	res.System.Target = "edge TCP port " + edgeAddr
	err = r.ceiling(ctx, res, e.Origin.Source, phase)
	res.note("%d stream(s) × %d MiB", streams, size>>20)
	res.judge(target, 0)
	res.noteCeiling()
	return err
}

// probeTCPPort checks that the edge listens on a service's tunnel port.
func probeTCPPort(ctx context.Context, addr string) error {
	var err error
	for i := 0; i < 50; i++ {
		var c net.Conn
		if c, err = net.DialTimeout("tcp", addr, 2*time.Second); err == nil {
			c.Close()
			return nil
		}
		sleepCtx(ctx, 40*time.Millisecond)
	}
	if errors.Is(err, syscall.ECONNREFUSED) {
		return unavailable("the edge does not listen on the service's TCP tunnel port %s (TCP tunnels not implemented in this build)", addr)
	}
	return fmt.Errorf("tcp tunnel port %s: %w", addr, err)
}

// tcpDownload asks the source server for n bytes and reads them.
func tcpDownload(addr string, n int64) (int64, error) {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(n))
	if _, err := c.Write(b[:]); err != nil {
		return 0, err
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Minute))
	buf := make([]byte, 256<<10)
	got, err := io.CopyBuffer(io.Discard, onlyReader{c}, buf)
	if err != nil {
		return got, err
	}
	return got, nil
}
