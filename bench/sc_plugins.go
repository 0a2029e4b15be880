package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/privateconnect/pc/sdk/client"
	"github.com/valyala/fasthttp"
)

func init() {
	register(scenario{name: "plugins-default", desc: "http-small with the default policy chain (allowedPaths + allowedIps + rateLimitPerMin)",
		target: "≥ 0.90 of the no-plugin run", run: func(ctx context.Context, r *runner, res *Result) error { return runPlugins(ctx, r, res, 0, 0.9) }})
	register(scenario{name: "plugins-5", desc: "http-small with the default chain and 5 extra Wasm plugins",
		target: "≥ 0.80 of the no-plugin run", run: func(ctx context.Context, r *runner, res *Result) error { return runPlugins(ctx, r, res, 5, 0.8) }})
}

// defaultPolicy is a share whose built-in policies all run and all allow
// the benchmark's requests.
func defaultPolicy() client.CreateShareRequest {
	return client.CreateShareRequest{AllowedPaths: []string{"/small", "/bytes"}, AllowedIPs: []string{"127.0.0.0/8", "::1/128"},
		RateLimitPerMin: 100000}
}

func runPlugins(ctx context.Context, r *runner, res *Result, extra int, target float64) error {
	e := r.env
	req := defaultPolicy()
	if extra > 0 {
		var plugins []client.Plugin
		err := e.keys.call(ctx, func(c *client.Client) (err error) {
			plugins, _, err = c.ListPlugins(ctx, client.ListOptions{Limit: 100})
			return err
		})
		if client.IsStatus(err, http.StatusNotFound) || client.IsStatus(err, http.StatusMethodNotAllowed) {
			return unavailable("the control plane has no /v1/plugins route yet")
		}
		if err != nil {
			return err
		}
		// Five extra plugins whose configuration lets the benchmark's
		// requests through (built-ins, by name).
		byName := map[string]string{}
		for _, p := range plugins {
			byName[p.Name] = p.ID
		}
		chain := []struct{ name, config string }{
			{"allow-paths", `{"paths":["/small","/bytes"]}`},
			{"ip-allow", `{"allow":["127.0.0.0/8","::1/128"]}`},
			{"rate-limit", `{"limit":100000000,"windowSeconds":60}`},
			{"headers", `{"setRequest":{"X-Bench":"1"}}`},
			{"headers", `{"setResponse":{"X-Bench-Out":"1"}}`},
		}
		for _, c := range chain[:extra] {
			id, ok := byName[c.name]
			if !ok {
				return unavailable("no %q plugin in GET /v1/plugins (have %v)", c.name, sortedKeys(byName))
			}
			req.Plugins = append(req.Plugins, client.SharePlugin{PluginID: id, Config: json.RawMessage(c.config)})
		}
	}
	// Is the policy chain enforced at the edge? A path outside allowedPaths
	// must be refused by the edge (403), not forwarded to the origin (404).
	probe, err := e.createShares(ctx, e.HTTPService, 1, req)
	if err != nil {
		if extra > 0 {
			return unavailable("a share with %d plugins cannot be created: %v", extra, err)
		}
		return err
	}
	code, body, err := getStatus(e.shareURL(probe[0]) + "/not-allowed")
	if err != nil {
		return err
	}
	if code != fasthttp.StatusForbidden {
		return unavailable("the edge does not enforce share policies: a path outside allowedPaths answered %d %q instead of 403 (no policy engine is wired into the edge: edge.Config.Policy is nil in cmd/pcd)", code, truncate(body, 60))
	}
	if code, body, err := getStatus(e.shareURL(probe[0]) + "/small"); err != nil || code != 200 {
		return fmt.Errorf("allowed request through the policy chain: %d %q %v", code, truncate(body, 80), err)
	}
	if extra > 0 {
		// The last extra plugin sets a response header: proof the chain ran.
		h, err := getHeader(e.shareURL(probe[0])+"/small", "X-Bench-Out")
		if err != nil {
			return err
		}
		if h != "1" {
			return unavailable("the share's extra plugins did not run: no X-Bench-Out header from the headers plugin")
		}
	}
	conns := r.conns(64)
	hc := httpCase{wantBody: 1024}
	d := hc
	d.uris = [][]byte{[]byte("http://" + e.Origin.HTTP + "/small")}
	res.Direct = r.measure(false, func() *Phase {
		return r.httpPhase(ctx, res.Scenario+"/direct", e.Origin.HTTP, d, conns, r.opts.Duration)
	})
	res.Direct.Target = "origin " + e.Origin.HTTP
	// The no-plugin and plugin loads alternate in slices (interleave): the
	// ratio between them is the figure judged, and a burst of other work on
	// the machine then weighs on both instead of on one.
	phase := func(label string, sreq client.CreateShareRequest) (func(time.Duration) *Phase, error) {
		shares, err := r.sharesFor(ctx, res, e.HTTPService, opsRate(res.Direct), r.opts.Duration, sreq)
		if err != nil {
			return nil, err
		}
		s := hc
		for _, sh := range shares {
			s.uris = append(s.uris, []byte(e.shareURL(sh)+"/small"))
		}
		return func(d time.Duration) *Phase {
			ph := r.measure(true, func() *Phase { return r.httpPhase(ctx, label, e.EdgeHTTP, s, conns, d) })
			ph.Target = fmt.Sprintf("edge %s, %d share link(s)", e.EdgeHTTP, len(shares))
			return ph
		}, nil
	}
	base, err := phase(res.Scenario+"/no-plugins", client.CreateShareRequest{})
	if err != nil {
		return err
	}
	withPlugins, err := phase(res.Scenario+"/system", req)
	if err != nil {
		return err
	}
	res.Baseline, res.System = interleave(pluginSlices, r.opts.Duration, base, withPlugins)
	res.note("no-plugin and plugin loads measured in %d alternating slices each", pluginSlices)
	res.computeRatios()
	if res.Baseline.Rate > 0 {
		ratio := res.System.Rate / res.Baseline.Rate
		pass := ratio >= target && res.System.Errors == 0
		res.metric("throughput vs the no-plugin run", ratio, "×", fmt.Sprintf("≥ %.2f", target), boolPtr(pass))
		res.Pass = boolPtr(pass)
	}
	return nil
}

// pluginSlices is how many alternating slices the plugin scenarios cut
// their no-plugin and plugin phases into.
const pluginSlices = 4

// getStatus does one GET and returns the status and body.
func getStatus(url string) (int, string, error) {
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(url)
	if err := fasthttp.DoTimeout(req, resp, 10*time.Second); err != nil {
		return 0, "", err
	}
	return resp.StatusCode(), string(resp.Body()), nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// getHeader does one GET and returns a response header.
func getHeader(url, name string) (string, error) {
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(url)
	if err := fasthttp.DoTimeout(req, resp, 10*time.Second); err != nil {
		return "", err
	}
	return string(resp.Header.Peek(name)), nil
}
