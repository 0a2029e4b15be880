package plugins

import (
	"errors"
	"fmt"
	"strings"

	"github.com/privateconnect/pc/plugins/abi"
)

// Sentinel errors. A [Decision] of [Error] carries a *[PluginError] whose Kind is one of these,
// so callers branch with errors.Is.
var (
	ErrNotLoaded     = errors.New("plugin not loaded")
	ErrBreakerOpen   = errors.New("circuit breaker open")
	ErrNoInstance    = errors.New("no instance available in time")
	ErrTimeout       = errors.New("time budget exceeded")
	ErrMemoryLimit   = errors.New("memory limit exceeded")
	ErrTrap          = errors.New("guest trapped")
	ErrGuestError    = errors.New("guest returned ERROR")
	ErrABIViolation  = errors.New("ABI violation")
	ErrInvalidConfig = errors.New("invalid config")
	ErrInvalidModule = errors.New("invalid module")
	ErrClosed        = errors.New("host closed")
	ErrCanceled      = errors.New("request canceled")
)

// ErrConfigTooLarge is a config over abi.MaxConfigLen, which the host refuses
// before any plugin runs; it is an ErrInvalidConfig too.
var ErrConfigTooLarge = fmt.Errorf("%w: larger than %d bytes", ErrInvalidConfig, abi.MaxConfigLen)

// PluginError describes why a plugin call failed. Kind is a sentinel error above; Detail is a
// one-line description for logs (a guest's set_error reason, the trap message...). It is never
// meant for visitors.
type PluginError struct {
	PluginID string
	Kind     error
	Detail   string
}

func (e *PluginError) Error() string {
	var b strings.Builder
	b.WriteString("plugin ")
	b.WriteString(e.PluginID)
	b.WriteString(": ")
	b.WriteString(e.Kind.Error())
	if e.Detail != "" {
		b.WriteString(": ")
		b.WriteString(e.Detail)
	}
	return b.String()
}

func (e *PluginError) Unwrap() error { return e.Kind }

// firstLine trims wazero's multi-line errors (which carry a wasm stack trace) to their first
// line, bounded in size, for logs and Decision.Err.
func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	if len(s) > 512 {
		s = s[:512]
	}
	return s
}
