// Package ratelimit is the built-in plugin behind a share's rateLimitPerMin: over the limit a
// request gets 429 with Retry-After, X-RateLimit-* headers and the API's JSON error body.
//
// Config: {"limit": 60, "windowSeconds": 60, "key": "ip"}. key is "ip" (per visitor address,
// the default), "share" (one counter for the share) or "header:<name>" (per value of a request
// header; requests without it share one counter). Counters are per share and shared by every
// instance on the edge (a sliding window).
package ratelimit

import (
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/privateconnect/pc/plugins/builtin/internal/envelope"
	"github.com/privateconnect/pc/sdk/plugin"
)

type config struct {
	Limit         int    `json:"limit"`
	WindowSeconds int    `json:"windowSeconds"`
	Key           string `json:"key"`
}

type compiled struct {
	limit    int
	window   time.Duration
	kind     byte // 'i', 's', 'h'
	header   string
	limitStr string
}

func parse(b []byte) (*compiled, error) {
	cfg, err := plugin.DecodeJSON[*config](b)
	if err != nil {
		return nil, err
	}
	if cfg.Limit < 1 || cfg.Limit > 1_000_000_000 {
		return nil, errors.New("limit must be between 1 and 1e9")
	}
	if cfg.WindowSeconds == 0 {
		cfg.WindowSeconds = 60
	}
	if cfg.WindowSeconds < 1 || cfg.WindowSeconds > 86400 {
		return nil, errors.New("windowSeconds must be between 1 and 86400")
	}
	c := &compiled{limit: cfg.Limit, window: time.Duration(cfg.WindowSeconds) * time.Second, limitStr: strconv.Itoa(cfg.Limit)}
	switch {
	case cfg.Key == "" || cfg.Key == "ip":
		c.kind = 'i'
	case cfg.Key == "share":
		c.kind = 's'
	case strings.HasPrefix(cfg.Key, "header:") && len(cfg.Key) > len("header:"):
		c.kind, c.header = 'h', cfg.Key[len("header:"):]
	default:
		return nil, errors.New(`key must be "ip", "share" or "header:<name>"`)
	}
	return c, nil
}

// Validate checks a config.
func Validate(b []byte) error { _, err := parse(b); return err }

var key [1024]byte

// Handle is the policy: the handler of the built-in's module (and a step of the bundle).
func Handle(r *plugin.Request) plugin.Result {
	c, err := plugin.ParseConfig(r, parse)
	if err != nil {
		return plugin.Error(err)
	}
	k := r.AppendShareID(key[:0])
	k = append(k, '|', c.kind, '|')
	switch c.kind {
	case 'i':
		k = r.AppendClientIP(k)
	case 'h':
		k, _ = r.AppendHeader(k, c.header)
	}
	if r.RateLimitKey(k, c.limit, c.window) {
		return plugin.Allow()
	}
	// Windows are aligned to multiples of the window since the epoch.
	now := r.Now()
	w := c.window.Milliseconds()
	resetMs := (now.UnixMilli()/w + 1) * w
	retry := max(1, (resetMs-now.UnixMilli()+999)/1000)
	return envelope.TooMany(int(retry), "Please wait before trying again").
		WithHeader("X-RateLimit-Limit", c.limitStr).
		WithHeader("X-RateLimit-Remaining", "0").
		WithHeader("X-RateLimit-Reset", strconv.FormatInt((resetMs+999)/1000, 10))
}
