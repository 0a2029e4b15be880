package main

import (
	"io"
	"testing"

	"github.com/privateconnect/pc/internal/docscheck"
)

// TestDocsFlags checks every pcbench command line of README.md and docs/*.md
// (code spans that start with pcbench, shell blocks) against pcbench's commands
// and flags: a flag renamed or removed, or a typo in the docs, fails here
// with the file and line.
func TestDocsFlags(t *testing.T) {
	docscheck.CheckFlags(t, "../..", rootCmd(io.Discard, io.Discard))
}
