// Command maintenance is an example plugin written with the Private Connect SDK: during
// configured maintenance windows it answers 503 with a Retry-After header and a small page,
// except for visitors presenting a bypass header (for the people doing the maintenance).
//
// Config:
//
//	{"windows": [{"start": "2025-06-01T22:00:00Z", "end": "2025-06-02T02:00:00Z"}],
//	 "message": "Back soon.", "bypassHeader": "X-Maintenance-Bypass", "bypassToken": "..."}
//
// Build it with
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -trimpath -ldflags=-s -o maintenance.wasm .
//
// and test it without Wasm: see main_test.go.
package main

import (
	"crypto/subtle"
	"errors"
	"html"
	"strconv"
	"time"

	"github.com/privateconnect/pc/sdk/plugin"
)

type window struct {
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
}

type config struct {
	Windows      []window `json:"windows"`
	Message      string   `json:"message"`
	BypassHeader string   `json:"bypassHeader"`
	BypassToken  string   `json:"bypassToken"`
}

func parse(b []byte) (*config, error) {
	c, err := plugin.DecodeJSON[*config](b)
	if err != nil {
		return nil, err
	}
	for _, w := range c.Windows {
		if !w.End.After(w.Start) {
			return nil, errors.New("each window must end after it starts")
		}
	}
	if (c.BypassHeader == "") != (c.BypassToken == "") {
		return nil, errors.New("bypassHeader and bypassToken go together")
	}
	if c.Message == "" {
		c.Message = "This service is down for maintenance."
	}
	return c, nil
}

func init() {
	plugin.Handle(handle)
	plugin.ValidateConfig(func(b []byte) error { _, err := parse(b); return err })
}

func handle(r *plugin.Request) plugin.Result {
	cfg, err := plugin.ParseConfig(r, parse)
	if err != nil {
		return plugin.Error(err)
	}
	now := r.Now()
	for _, w := range cfg.Windows {
		if now.Before(w.Start) || !now.Before(w.End) {
			continue
		}
		if cfg.BypassHeader != "" {
			if v, ok := r.Header(cfg.BypassHeader); ok && subtle.ConstantTimeCompare([]byte(v), []byte(cfg.BypassToken)) == 1 {
				r.RemoveRequestHeader(cfg.BypassHeader)
				return plugin.Allow()
			}
		}
		retry := int(w.End.Sub(now).Seconds()) + 1
		body := "<!doctype html><title>Maintenance</title><p>" + html.EscapeString(cfg.Message) + "</p>\n"
		return plugin.Respond(503, []byte(body)).
			WithHeader("Content-Type", "text/html; charset=utf-8").
			WithHeader("Retry-After", strconv.Itoa(retry))
	}
	return plugin.Allow()
}

func main() {}
