//go:build !unix

package plugins

// processCPU is unavailable: budgets are then wall-clock only.
func processCPU() (int64, bool) { return 0, false }
