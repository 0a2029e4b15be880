// Package headers is the built-in plugin that rewrites headers: it sets and removes headers
// on the request forwarded to the service and sets headers on the visitor's response.
//
// Config: {"setRequest": {"X-From": "share"}, "removeRequest": ["Cookie"],
// "setResponse": {"X-Frame-Options": "DENY"}}. Names must be HTTP tokens; values must not
// contain CR, LF or NUL; connection-level headers (Host, Content-Length, ...) cannot be edited.
package headers

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/privateconnect/pc/sdk/plugin"
)

type config struct {
	SetRequest    map[string]string `json:"setRequest"`
	RemoveRequest []string          `json:"removeRequest"`
	SetResponse   map[string]string `json:"setResponse"`
}

type compiled struct {
	setRequest, setResponse [][2]string
	removeRequest           []string
}

var forbidden = map[string]bool{
	"connection": true, "content-length": true, "host": true, "keep-alive": true,
	"proxy-connection": true, "te": true, "trailer": true, "transfer-encoding": true, "upgrade": true,
}

func checkName(n string) error {
	if n == "" || len(n) > 256 {
		return fmt.Errorf("invalid header name %q", n)
	}
	for i := 0; i < len(n); i++ {
		c := n[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return fmt.Errorf("invalid header name %q", n)
		}
	}
	if forbidden[strings.ToLower(n)] {
		return fmt.Errorf("header %q cannot be edited", n)
	}
	return nil
}

func pairs(m map[string]string) ([][2]string, error) {
	var out [][2]string
	for k, v := range m {
		if err := checkName(k); err != nil {
			return nil, err
		}
		if len(v) > 8192 || strings.ContainsAny(v, "\r\n\x00") {
			return nil, fmt.Errorf("invalid value for header %q", k)
		}
		out = append(out, [2]string{k, v})
	}
	sort.Slice(out, func(i, j int) bool { return out[i][0] < out[j][0] })
	return out, nil
}

func parse(b []byte) (*compiled, error) {
	cfg, err := plugin.DecodeJSON[*config](b)
	if err != nil {
		return nil, err
	}
	if len(cfg.SetRequest)+len(cfg.RemoveRequest)+len(cfg.SetResponse) > 64 {
		return nil, errors.New("at most 64 header edits")
	}
	c := &compiled{}
	if c.setRequest, err = pairs(cfg.SetRequest); err != nil {
		return nil, err
	}
	if c.setResponse, err = pairs(cfg.SetResponse); err != nil {
		return nil, err
	}
	for _, n := range cfg.RemoveRequest {
		if err := checkName(n); err != nil {
			return nil, err
		}
	}
	c.removeRequest = cfg.RemoveRequest
	return c, nil
}

// Validate checks a config.
func Validate(b []byte) error { _, err := parse(b); return err }

// Handle is the policy: the handler of the built-in's module (and a step of the bundle).
func Handle(r *plugin.Request) plugin.Result {
	c, err := plugin.ParseConfig(r, parse)
	if err != nil {
		return plugin.Error(err)
	}
	for _, n := range c.removeRequest {
		r.RemoveRequestHeader(n)
	}
	for _, kv := range c.setRequest {
		r.SetRequestHeader(kv[0], kv[1])
	}
	for _, kv := range c.setResponse {
		r.SetResponseHeader(kv[0], kv[1])
	}
	return plugin.Allow()
}
