package cliconf

import (
	"context"
	"io"
	"log/slog"
)

// LogHandler is the servers' and connect's log handler: JSON or text on w,
// durations as text, one "component" key per line (componentHandler).
func LogHandler(w io.Writer, json bool, level slog.Leveler) slog.Handler {
	opts := &slog.HandlerOptions{Level: level, ReplaceAttr: durationsAsText}
	if json {
		return newComponentHandler(slog.NewJSONHandler(w, opts))
	}
	return newComponentHandler(slog.NewTextHandler(w, opts))
}

// durationsAsText writes durations as Go duration strings ("5s", "1.5ms")
// in every format: the JSON handler would write them as integer
// nanoseconds (5000000000).
func durationsAsText(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		return slog.String(a.Key, a.Value.Duration().String())
	}
	return a
}

// componentHandler keeps one "component" key per line: a logger of
// component "edge" that a library narrows to "configsync" logs
// "component":"edge.configsync", not the key twice (JSON objects with a
// repeated key lose one of them in most parsers).
type componentHandler struct {
	inner     slog.Handler
	component string // the path so far, not yet handed to inner
}

func newComponentHandler(h slog.Handler) slog.Handler { return &componentHandler{inner: h} }

func (h *componentHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.inner.Enabled(ctx, l)
}

func (h *componentHandler) Handle(ctx context.Context, r slog.Record) error {
	comp, dup := h.component, false
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "component" {
			dup = true
			return false
		}
		return true
	})
	if dup {
		// A component given with the message (log.Info(msg, "component", x)).
		nr := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "component" {
				comp = join(comp, a.Value.String())
			} else {
				nr.AddAttrs(a)
			}
			return true
		})
		r = nr
	}
	if comp != "" {
		r = r.Clone()
		r.AddAttrs(slog.String("component", comp))
	}
	return h.inner.Handle(ctx, r)
}

func (h *componentHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	comp := h.component
	rest := make([]slog.Attr, 0, len(attrs))
	for _, a := range attrs {
		if a.Key == "component" {
			comp = join(comp, a.Value.String())
		} else {
			rest = append(rest, a)
		}
	}
	inner := h.inner
	if len(rest) > 0 {
		inner = inner.WithAttrs(rest)
	}
	return &componentHandler{inner: inner, component: comp}
}

// WithGroup hands the component to the inner handler first: it stays at
// the top level, outside the group.
func (h *componentHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	inner := h.inner
	if h.component != "" {
		inner = inner.WithAttrs([]slog.Attr{slog.String("component", h.component)})
	}
	return &componentHandler{inner: inner.WithGroup(name)}
}

func join(a, b string) string {
	if a == "" {
		return b
	}
	if b == "" {
		return a
	}
	return a + "." + b
}
