package config

import "testing"

func TestLogPath(t *testing.T) {
	for in, want := range map[string]string{
		"/shared/tok/api/x?": "/api/x?",
		"/shared/tok/":       "/",
		"/shared/tok":        "/",
		"/api/x":             "/api/x",
		"/":                  "/",
		"/sharedx/tok/a":     "/sharedx/tok/a",
	} {
		if got := LogPath(in); got != want {
			t.Errorf("LogPath(%q) = %q, want %q", in, got, want)
		}
	}
}
