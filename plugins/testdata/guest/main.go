// Command guest is the SDK conformance guest: a plugin written with sdk/plugin whose config
// {"op": "..."} selects a behaviour (see plugins/sdk_guest_test.go).
package main

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/privateconnect/pc/sdk/plugin"
)

type config struct {
	Op     string `json:"op"`
	Header string `json:"header,omitempty"`
}

var ops = map[string]bool{
	"allow": true, "echo": true, "allow-edits": true, "deny": true, "redirect": true, "error": true,
	"panic": true, "ratelimit": true, "hmac": true, "verify": true, "log": true, "bigheader": true,
	"loop": true, "alloc": true, "config": true, "now": true,
}

func parse(b []byte) (*config, error) {
	c, err := plugin.DecodeJSON[*config](b)
	if err != nil {
		return nil, err
	}
	if !ops[c.Op] {
		return nil, fmt.Errorf("unknown op %q", c.Op)
	}
	return c, nil
}

func init() {
	plugin.Handle(handle)
	plugin.ValidateConfig(func(b []byte) error { _, err := parse(b); return err })
}

var hog [][]byte

func handle(r *plugin.Request) plugin.Result {
	cfg, err := plugin.ParseConfig(r, parse)
	if err != nil {
		return plugin.Error(err)
	}
	switch cfg.Op {
	case "allow":
		return plugin.Allow()
	case "echo":
		v, ok := r.Header(cfg.Header)
		out, _ := json.Marshal(map[string]any{
			"method": r.Method(), "path": r.Path(), "query": r.Query(), "host": r.Host(),
			"clientIp": r.ClientIP(), "shareId": r.ShareID(), "header": v, "hasHeader": ok,
			"configId": strconv.FormatUint(r.ConfigID(), 10),
		})
		return plugin.Respond(200, out).WithHeader("Content-Type", "application/json")
	case "allow-edits":
		r.SetRequestHeader("X-A", "1")
		r.RemoveRequestHeader("X-Remove")
		r.SetResponseHeader("X-R", "2")
		return plugin.Allow()
	case "deny":
		return plugin.Deny(403, "nope")
	case "redirect":
		return plugin.Redirect("https://example.com/login")
	case "error":
		return plugin.Errorf("boom %d", 42)
	case "panic":
		panic("kaboom")
	case "ratelimit":
		return boolResult(r.RateLimit(r.Path(), 3, time.Minute))
	case "hmac":
		sum := r.HMACSHA256([]byte("key"), []byte(r.Path()))
		return plugin.Respond(200, []byte(hex.EncodeToString(sum[:])))
	case "verify":
		alg, _ := r.Header("X-Alg")
		key, _ := r.Header("X-Key")
		sig64, _ := r.Header("X-Sig")
		sig, err := base64.RawURLEncoding.DecodeString(sig64)
		if err != nil {
			return plugin.Error(errors.New("bad signature encoding"))
		}
		return boolResult(r.VerifySignature(alg, []byte(key), []byte(r.Path()), sig))
	case "log":
		r.Log(plugin.LevelWarn, "hello from go")
		fmt.Println("stdout from go")
		return plugin.Allow()
	case "bigheader":
		v, _ := r.Header("X-Big")
		return plugin.Respond(200, []byte(strconv.Itoa(len(v))))
	case "loop":
		for {
		}
	case "alloc":
		for {
			hog = append(hog, make([]byte, 1<<20))
		}
	case "config":
		return plugin.Respond(200, r.Config())
	case "now":
		return plugin.Respond(200, []byte(strconv.FormatInt(r.Now().UnixMilli(), 10)))
	}
	return plugin.Errorf("unreachable")
}

func boolResult(ok bool) plugin.Result {
	if ok {
		return plugin.Respond(200, []byte("1"))
	}
	return plugin.Respond(200, []byte("0"))
}

func main() {}
