// Package builtin ships the built-in access-control plugins: their Go sources are the
// sub-directories (each a plugin written with sdk/plugin), and their modules, built by
// `make plugins` into wasm/, are embedded here.
//
// Plugin ids are "builtin:<name>". Chain maps a share's policy fields to the built-in chain in
// a fixed order: ip-allow (cheapest, and refuses unknown networks before anything else),
// rate-limit (before the password check, so guessing is throttled), allow-paths, password.
package builtin

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"runtime"
	"sync"

	"github.com/privateconnect/pc/plugins"
	"github.com/privateconnect/pc/plugins/abi"
)

//go:embed wasm
var modules embed.FS

// Built-in plugin names.
const (
	AllowPaths = "allow-paths"
	IPAllow    = "ip-allow"
	Password   = "password"
	RateLimit  = "rate-limit"
	JWT        = "jwt"
	SignedLink = "signed-link"
	Headers    = "headers"
)

var names = []string{AllowPaths, IPAllow, Password, RateLimit, JWT, SignedLink, Headers}

// IDPrefix prefixes a built-in's name to form its plugin id.
const IDPrefix = "builtin:"

// ID returns the plugin id of a built-in.
func ID(name string) string { return IDPrefix + name }

// Names returns the built-in plugin names.
func Names() []string { return append([]string(nil), names...) }

// ErrNotBuilt is returned by Module when the embedded module is missing.
var ErrNotBuilt = errors.New("not built: run make plugins")

// Module returns a built-in's Wasm module.
func Module(name string) ([]byte, error) {
	known := false
	for _, n := range names {
		known = known || n == name
	}
	if !known {
		return nil, fmt.Errorf("builtin: unknown plugin %q", name)
	}
	b, err := modules.ReadFile("wasm/" + name + ".wasm")
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("built-in plugin %s %w", name, ErrNotBuilt)
	}
	return b, err
}

// SharePolicy is what a share's fields ask of the built-ins.
type SharePolicy struct {
	AllowedPaths    []string
	AllowedMethods  []string
	PasswordHash    string // from plugins.HashSharePassword
	AllowedIPs      []string
	RateLimitPerMin int
}

// Chain returns the built-in attachments for p, in the documented order (ip-allow,
// rate-limit, allow-paths, password); empty when no field is set.
func Chain(p SharePolicy) []plugins.Attachment {
	var chain []plugins.Attachment
	add := func(name string, cfg any) {
		b, err := json.Marshal(cfg)
		if err != nil {
			panic(err) // plain maps and slices of strings always marshal
		}
		chain = append(chain, plugins.Attachment{PluginID: ID(name), Config: b})
	}
	if len(p.AllowedIPs) > 0 {
		add(IPAllow, map[string]any{"allow": p.AllowedIPs})
	}
	if p.RateLimitPerMin > 0 {
		add(RateLimit, map[string]any{"limit": p.RateLimitPerMin, "windowSeconds": 60, "key": "ip"})
	}
	if len(p.AllowedPaths) > 0 || len(p.AllowedMethods) > 0 {
		cfg := map[string]any{}
		if len(p.AllowedPaths) > 0 {
			cfg["paths"] = p.AllowedPaths
		}
		if len(p.AllowedMethods) > 0 {
			cfg["methods"] = p.AllowedMethods
		}
		add(AllowPaths, cfg)
	}
	if p.PasswordHash != "" {
		add(Password, map[string]any{"passwordHash": p.PasswordHash})
	}
	return chain
}

// Options are the module options of a built-in, wherever it is loaded (the
// edge's policy engine, the control plane's dry-run host): trusted, since
// they ship with the binary (plugins.ModuleOptions.Trusted), and the
// password check, which runs PBKDF2 in the guest, gets the ABI's maximum
// time budget instead of the default.
func Options(name string) plugins.ModuleOptions {
	o := plugins.ModuleOptions{Trusted: true}
	if name == Password {
		o.Timeout = abi.MaxTimeout
	}
	return o
}

// LoadAll loads every built-in into h (ids "builtin:<name>") with its
// Options, compiling up to GOMAXPROCS modules at once (a cold start of the
// edge is mostly this). It returns the first error (a missing module says to
// run make plugins) once every load has ended.
func LoadAll(ctx context.Context, h *plugins.Host) error {
	errs := make([]error, len(names))
	sem := make(chan struct{}, runtime.GOMAXPROCS(0))
	var wg sync.WaitGroup
	for i, n := range names {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			wasm, err := Module(n)
			if err == nil {
				if err = h.Load(ctx, ID(n), wasm, Options(n)); err != nil {
					err = fmt.Errorf("load built-in %s: %w", n, err)
				}
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
