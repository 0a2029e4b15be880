package main

import (
	"io"
	"testing"

	"github.com/privateconnect/pc/internal/docscheck"
)

// TestDocsFlags checks every pcd command line of README.md and docs/*.md
// (code spans that start with pcd, shell blocks) against pcd's commands
// and flags: a flag renamed or removed, or a typo in the docs, fails here
// with the file and line.
func TestDocsFlags(t *testing.T) {
	docscheck.CheckFlags(t, "../..", rootCmd(io.Discard, io.Discard))
}
