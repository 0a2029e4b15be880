package badgerstore

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/privateconnect/pc/control/store"
)

// privateKiB is this process's private resident memory (RssAnon).
func privateKiB() int64 {
	b, _ := os.ReadFile("/proc/self/status")
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "RssAnon:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return n
		}
	}
	return 0
}

// BenchmarkAccessLogIngest stores access logs as the control plane does
// (chunks of 500 records per transaction, store.RecordAccess) as fast as
// Badger takes them, and reports the peak private memory and Go heap of the
// process: what the control plane's memory comes to under a sustained
// stream of visitors (the pcbench soak). Run it for a while to let
// compactions start: -benchtime 45s.
func BenchmarkAccessLogIngest(b *testing.B) {
	dir := b.TempDir()
	s, err := Open(Options{Dir: dir, MinFreeBytes: -1})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	// The records have the control plane's shapes: UUIDs for the
	// workspace, the share, the edge and the record, pcbench's user agent.
	ws, share, edge := uuid.NewString(), uuid.NewString(), uuid.NewString()
	if err := s.Update(ctx, func(tx store.Tx) error {
		return store.CreateWorkspace(tx, &store.Workspace{ID: ws, Name: "x"})
	}); err != nil {
		b.Fatal(err)
	}
	stop, done := make(chan struct{}), make(chan struct{})
	var peakPrivate, peakHeap int64
	var heap []int64 // Go heap allocated, KiB, every 100 ms
	go func() {
		defer close(done)
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		var ms runtime.MemStats
		for {
			select {
			case <-stop:
				return
			case <-t.C:
			}
			runtime.ReadMemStats(&ms)
			peakPrivate, peakHeap = max(peakPrivate, privateKiB()), max(peakHeap, int64(ms.HeapInuse>>10))
			heap = append(heap, int64(ms.HeapAlloc>>10))
		}
	}()
	recs := make([]store.AccessRecord, 500)
	b.ResetTimer()
	for b.Loop() {
		now := time.Now().UTC()
		for i := range recs {
			recs[i] = store.AccessRecord{ID: uuid.NewString(), ShareID: share, EdgeID: edge, At: now, IP: "127.0.0.1",
				UserAgent: "fasthttp", Method: "GET", Path: "/small", StatusCode: 200, LatencyMs: 1.2, BytesOut: 1024, Decision: "allowed"}
		}
		if err := s.Update(ctx, func(tx store.Tx) error {
			return store.RecordAccess(tx, &store.AccessBatch{WorkspaceID: ws, ShareID: share, ServiceID: "svc", Records: recs},
				24*time.Hour, 10*time.Second, now)
		}); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	close(stop)
	<-done
	b.ReportMetric(float64(b.N*len(recs))/b.Elapsed().Seconds(), "records/s")
	b.ReportMetric(float64(peakPrivate)/1024, "peak-private-MiB")
	b.ReportMetric(float64(peakHeap)/1024, "peak-heap-MiB")
	// The heap's floor (its lowest sample) after a 30% warm-up and at the
	// end, as pcbench's soak judges memory: what Badger keeps between its
	// flushes and compactions as the tree grows.
	if n := len(heap); n >= 20 {
		w := max(n*15/100, 1)
		early, late := slices.Min(heap[n*30/100:n*30/100+w]), slices.Min(heap[n-w:])
		b.ReportMetric(float64(early)/1024, "heap-floor-early-MiB")
		b.ReportMetric(float64(late)/1024, "heap-floor-late-MiB")
	}
	var disk, tables int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if strings.HasSuffix(d.Name(), ".sst") {
				tables++
			}
			if fi, err := d.Info(); err == nil {
				disk += fi.Size()
			}
		}
		return nil
	})
	b.ReportMetric(float64(disk)/float64(b.N*len(recs)), "disk-B/record")
	b.ReportMetric(float64(tables), "tables")
}
