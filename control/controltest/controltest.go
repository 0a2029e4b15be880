// Package controltest runs a control plane inside a test: on 127.0.0.1 with
// a kernel-chosen port and, unless the test says otherwise, an in-memory
// store and a temporary data directory.
package controltest

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/privateconnect/pc/control"
	"github.com/privateconnect/pc/control/store/memstore"
)

// Server is a running control plane.
type Server struct {
	*control.Server
	t      testing.TB
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
}

// Start runs cfg's control plane until the test ends (or Stop). Listen is
// always 127.0.0.1:0; a nil Store becomes a memstore and an empty DataDir a
// temporary directory.
func Start(t testing.TB, cfg control.Config) *Server {
	t.Helper()
	cfg.Listen = "127.0.0.1:0"
	if cfg.Store == nil && cfg.DataDir == "" {
		cfg.Store = memstore.New()
	}
	if cfg.DataDir == "" {
		cfg.DataDir = t.TempDir()
	}
	srv, err := control.New(cfg)
	if err != nil {
		t.Fatalf("controltest: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{Server: srv, t: t, cancel: cancel, done: make(chan error, 1)}
	go func() { s.done <- srv.Run(ctx) }()
	t.Cleanup(s.Stop)
	return s
}

// URL is the API's base URL.
func (s *Server) URL() string { return "http://" + s.Addr() }

// Stop stops the control plane and fails the test if it did not stop
// cleanly within 15 s. It may be called more than once.
func (s *Server) Stop() {
	s.once.Do(func() {
		s.cancel()
		select {
		case err := <-s.done:
			if err != nil {
				s.t.Errorf("controltest: Run: %v", err)
			}
		case <-time.After(15 * time.Second):
			s.t.Errorf("controltest: the control plane did not stop")
		}
	})
}
