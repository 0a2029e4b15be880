package cliconf

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
)

// TestStopSignalsRespectNohup: SIGHUP stops a command gracefully, except in
// a process started with it ignored (nohup), which must go on running when
// its terminal closes: handling the signal would undo the ignore.
func TestStopSignalsRespectNohup(t *testing.T) {
	if os.Getenv("PC_TEST_PRINT_STOP_SIGNALS") == "1" {
		fmt.Println(StopSignals())
		os.Exit(0)
	}
	nohup, err := exec.LookPath("nohup")
	if err != nil {
		t.Skip("nohup not found")
	}
	run := func(name string, args ...string) string {
		cmd := exec.Command(name, args...)
		cmd.Env = append(os.Environ(), "PC_TEST_PRINT_STOP_SIGNALS=1")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		return string(out)
	}
	self := os.Args[0]
	plain := run(self, "-test.run=TestStopSignalsRespectNohup")
	if !strings.Contains(plain, syscall.SIGHUP.String()) {
		t.Fatalf("SIGHUP does not stop a plain process: %s", plain)
	}
	ignored := run(nohup, self, "-test.run=TestStopSignalsRespectNohup")
	if strings.Contains(ignored, syscall.SIGHUP.String()) {
		t.Fatalf("under nohup SIGHUP is handled (and so no longer ignored): %s", ignored)
	}
}
