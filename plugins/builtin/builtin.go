// Package builtin ships the built-in access-control plugins: their policies are the packages
// in internal/ (each written with sdk/plugin), built by `make plugins` into one module each
// (the sub-directories: what the API lists and validates with) and into the bundle (bundle/:
// all of them, what the edge runs, see Bundle); the modules are embedded from wasm/.
//
// Plugin ids are "builtin:<name>". Chain maps a share's policy fields to the built-in chain in
// a fixed order: ip-allow (cheapest, and refuses unknown networks before anything else),
// rate-limit (before the password check, so guessing is throttled), allow-paths, password.
package builtin

import (
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"

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

// BundleID is the plugin id of the bundle: one module holding every built-in policy
// (plugins/builtin/bundle), which the edge loads instead of the seven modules and runs for
// each run of consecutive built-in attachments (Bundle). It is not listed by the API: the
// seven built-ins are, and shares attach those.
const BundleID = IDPrefix + "bundle"

// maxBundleSteps is sdk/plugin.MaxSteps (a test keeps them equal; the host does not link
// the SDK).
const maxBundleSteps = 16

// BundleModule returns the embedded bundle module.
func BundleModule() ([]byte, error) {
	b, err := modules.ReadFile("wasm/bundle.wasm")
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("built-in bundle %w", ErrNotBuilt)
	}
	return b, err
}

// LoadBundle loads the bundle into h as BundleID, trusted, with the ABI's maximum time budget
// (a run may include the password check).
func LoadBundle(ctx context.Context, h *plugins.Host) error {
	wasm, err := BundleModule()
	if err != nil {
		return err
	}
	if err := h.Load(ctx, BundleID, wasm, Options(Password)); err != nil {
		return fmt.Errorf("load the built-in bundle: %w", err)
	}
	return nil
}

// Bundle returns chain with each run of consecutive built-in attachments (at most 16 in a
// row) replaced by one attachment of the bundle that runs them as steps, in order, with their
// configs; StepIDs keeps their ids, so decisions and failures still name the built-in that
// made them. Other attachments stay as they are, and so does a built-in attachment whose config
// is not JSON (its standalone module is not loaded where the bundle is used: it fails closed).
func Bundle(chain []plugins.Attachment) []plugins.Attachment {
	type stepJSON struct {
		Policy string          `json:"policy"`
		Config json.RawMessage `json:"config"`
	}
	out := make([]plugins.Attachment, 0, len(chain))
	var run []plugins.Attachment
	flush := func() {
		if len(run) == 0 {
			return
		}
		steps := make([]stepJSON, len(run))
		ids := make([]string, len(run))
		for i, a := range run {
			cfg := a.Config
			if len(bytes.TrimSpace(cfg)) == 0 {
				cfg = []byte("{}")
			}
			steps[i] = stepJSON{Policy: strings.TrimPrefix(a.PluginID, IDPrefix), Config: cfg}
			ids[i] = a.PluginID
		}
		b, err := json.Marshal(map[string]any{"steps": steps})
		if err != nil {
			panic(err) // every config was checked with json.Valid
		}
		out = append(out, plugins.Attachment{PluginID: BundleID, Config: b, StepIDs: ids})
		run = run[:0]
	}
	for _, a := range chain {
		name, ok := strings.CutPrefix(a.PluginID, IDPrefix)
		if ok && slices.Contains(names, name) && (len(bytes.TrimSpace(a.Config)) == 0 || json.Valid(a.Config)) {
			if len(run) == maxBundleSteps {
				flush()
			}
			run = append(run, a)
			continue
		}
		flush()
		out = append(out, a)
	}
	flush()
	return out
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
