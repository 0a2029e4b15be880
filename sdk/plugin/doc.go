// Package plugin is the Go SDK for Private Connect access-control plugins: WebAssembly
// modules that decide, for each request arriving at a share link, whether it goes through
// (possibly with edited headers) or gets an answer from the edge. It implements ABI v1 (see
// github.com/privateconnect/pc/plugins/abi for the normative contract) and depends on the
// standard library only.
//
// # Writing a plugin
//
// A plugin is a main package that registers its handler in init (the Wasm reactor runs
// package initialisers but never main):
//
//	package main
//
//	import "github.com/privateconnect/pc/sdk/plugin"
//
//	type config struct {
//		Header string `json:"header"`
//	}
//
//	func init() {
//		plugin.Handle(handle)
//		plugin.ValidateConfig(func(b []byte) error { _, err := parse(b); return err })
//	}
//
//	func parse(b []byte) (*config, error) { return plugin.DecodeJSON[*config](b) }
//
//	func handle(r *plugin.Request) plugin.Result {
//		cfg, err := plugin.ParseConfig(r, parse) // parsed once per distinct config
//		if err != nil {
//			return plugin.Error(err)
//		}
//		if _, ok := r.Header(cfg.Header); !ok {
//			return plugin.Deny(403, "forbidden\n")
//		}
//		return plugin.Allow()
//	}
//
//	func main() {}
//
// # Building
//
// A plugin is a module of its own that requires this one. The module is not published on a
// Go module proxy: point the requirement at a clone of the repository,
//
//	go mod init example.com/myplugin
//	go mod edit -require=github.com/privateconnect/pc@v0.0.0 -replace=github.com/privateconnect/pc=/path/to/pc
//
// then build a WASI reactor (without -buildmode=c-shared the module is a command, which the
// control plane refuses at upload):
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -trimpath -ldflags=-s -o myplugin.wasm .
//
// The standard Go toolchain is enough (no TinyGo); a module is about 3 MB. The host calls
// _initialize once per instance, then handle_request per request.
//
// # Using it
//
//	connect plugins push myplugin.wasm --name myplugin --version 1   # validated at upload
//	connect plugins test myplugin --config cfg.json --header 'X-Api-Key: k'   # dry-run
//	connect link web --plugin myplugin:cfg.json                      # a share running it
//	connect shares update SHARE_ID --plugin myplugin@2:cfg.json      # move a share to version 2
//
// A plugin is named by its id, its name (the version uploaded last) or name@version; each
// upload is a new plugin with its own id, and shares keep the one they name until they are
// updated. `--fail-open` (for non-security plugins), `--timeout` and `--memory-mib` on push
// set its failure mode and limits.
// Edges load a plugin when a share attaches it, not at upload: a share's first requests wait
// for that load (about a second the first time an edge compiles the module, tens of
// milliseconds from its compilation cache after).
//
// # Testing without Wasm
//
// The same handler runs in plain `go test` through package plugintest, which emulates the
// host (header edits, rate limits, HMAC and signature verification, logs):
//
//	res := plugintest.Run(handle, `{"header":"X-Api-Key"}`, plugintest.Request{Path: "/"})
//	if res.Status != 403 { t.Fatal(res) }
//
// # Rules of the road
//
//   - A Request is only valid during the handler call; don't keep it.
//   - Instances are pooled and shared by every share using the plugin, each with its own
//     config: keep per-config state only in what ParseConfig caches (keyed by the host's
//     config id), never in globals keyed by nothing.
//   - Each call has a time budget (5 ms by default) and the instance a memory cap (16 MiB by
//     default); allocate little per request. A panic, a trap or an overrun ends the call with
//     ERROR and the visitor gets 500 (plugins fail closed).
//   - Header edits and responses are validated by the host: HTTP token names, no CR/LF in
//     values, no connection-level headers (Content-Length, Host, ...).
package plugin
