package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/privateconnect/pc/sdk/client"
)

var pluginCols = []col[client.Plugin]{
	{"ID", func(x client.Plugin) string { return x.ID }},
	{"NAME", func(x client.Plugin) string { return x.Name }},
	{"VERSION", func(x client.Plugin) string { return orDash(x.Version) }},
	{"BUILTIN", func(x client.Plugin) string { return yesNo(x.Builtin) }},
	{"SIZE", func(x client.Plugin) string {
		if x.SizeBytes == 0 {
			return "-"
		}
		return humanBytes(x.SizeBytes)
	}},
	{"SHA256", func(x client.Plugin) string {
		if len(x.SHA256) > 12 {
			return x.SHA256[:12]
		}
		return orDash(x.SHA256)
	}},
}

func (a *app) pluginsCmd() *cobra.Command {
	var (
		name      string
		up        client.UploadOptions
		timeout   time.Duration
		memoryMiB int
	)
	var push *cobra.Command
	push = getCmd(a, "push FILE.wasm --name NAME", "Upload a Wasm access-control plugin; the server validates it (admin)",
		`  connect plugins push geo.wasm --name geo --version 1.2.0
  connect plugins push banner.wasm --fail-open --timeout 20ms --memory-mib 32   # a non-security plugin`, 1,
		func(ctx context.Context, c *client.Client, args []string) (*client.Plugin, error) {
			n := name
			if n == "" {
				n = strings.TrimSuffix(filepath.Base(args[0]), filepath.Ext(args[0]))
			}
			// Given explicitly, 0 is out of range too (not "the default").
			set := push.Flags().Changed
			if timeout < 0 || timeout%time.Millisecond != 0 || (set("timeout") && timeout == 0) {
				return nil, usageErrorf("--timeout must be whole milliseconds, 1ms-50ms, e.g. 20ms")
			}
			if memoryMiB != 0 || set("memory-mib") {
				if memoryMiB < 1 || memoryMiB > 256 {
					return nil, usageErrorf("--memory-mib must be 1-256")
				}
			}
			o := up
			o.TimeoutMs = int(timeout / time.Millisecond)
			o.MemoryLimitBytes = uint64(memoryMiB) << 20
			f, err := os.Open(args[0])
			if err != nil {
				return nil, err
			}
			defer f.Close()
			return c.UploadPluginWith(ctx, n, f, o)
		})
	push.Flags().StringVar(&name, "name", "", "plugin name (default: the file name without .wasm)")
	push.Flags().StringVar(&up.Version, "version", "", "plugin version")
	push.Flags().StringVar(&up.Description, "description", "", "what the plugin does")
	push.Flags().BoolVar(&up.FailOpen, "fail-open", false, "let requests through when the plugin fails (non-security plugins only; default: fail closed)")
	push.Flags().DurationVar(&timeout, "timeout", 0, "time budget of one call, 1ms-50ms (default 5ms)")
	push.Flags().IntVar(&memoryMiB, "memory-mib", 0, "guest memory limit in MiB, 1-256 (default 16)")

	ls := listCmd(a, "ls", "List plugins, built-ins included (admin)", "  connect plugins ls", 0,
		func(ctx context.Context, c *client.Client, _ []string, lo client.ListOptions) ([]client.Plugin, string, error) {
			return c.ListPlugins(ctx, lo)
		}, pluginCols)
	get := getCmd(a, "get PLUGIN", "Show a plugin: by id, name or name@version (admin)", "  connect plugins get geo\n  connect plugins get geo@1.2.0", 1,
		func(ctx context.Context, c *client.Client, args []string) (*client.Plugin, error) {
			return resolvePlugin(ctx, c, args[0])
		})
	rm := actionCmd(a, "rm PLUGIN", "Delete a plugin (id, name or name@version); refused while a share uses it (admin)", "  connect plugins rm geo@1.1.0", 1,
		func(ctx context.Context, c *client.Client, args []string) (string, error) {
			all, err := findPlugins(ctx, c, args[0])
			if err != nil {
				return "", err
			}
			p := &all[0]
			// A delete names one version: of several, say which.
			var versions []string
			for i := range all {
				if !all[i].Builtin {
					versions = append(versions, pluginLabel(&all[i]))
				}
			}
			if len(versions) > 1 {
				return "", fmt.Errorf("%d plugins are named %s (%s): give name@version or the id", len(versions), p.Name, strings.Join(versions, ", "))
			}
			if err := c.DeletePlugin(ctx, p.ID); err != nil {
				return "", err
			}
			return fmt.Sprintf("Deleted plugin %s (%s).", p.ID, pluginLabel(p)), nil
		})

	var out string
	pull := leaf("pull PLUGIN -o FILE.wasm", "Download a plugin's module (admin)", "  connect plugins pull geo -o geo.wasm", 1, 1,
		func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return usageErrorf("-o FILE is required")
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			p, err := resolvePlugin(a.ctx(cmd), c, args[0])
			if err != nil {
				return err
			}
			b, err := c.DownloadPlugin(a.ctx(cmd), p.ID)
			if err != nil {
				return err
			}
			if err := os.WriteFile(out, b, 0o644); err != nil {
				return err
			}
			fmt.Fprintf(a.stderr, "Wrote %d bytes to %s\n", len(b), out)
			return nil
		})
	pull.Flags().StringVarP(&out, "output", "o", "", "file to write")

	var (
		configFile, method, path, clientIP string
		headers                            []string
	)
	test := getCmd(a, "test PLUGIN", "Dry-run a plugin on a sample request (admin)",
		"  connect plugins test geo --config geo.json --method GET --path / --client-ip 203.0.113.7 --header 'X-Country: FR'", 1,
		func(ctx context.Context, c *client.Client, args []string) (*client.PluginTestResult, error) {
			req := client.PluginTestRequest{Request: client.PluginTestHTTPReq{Method: strings.ToUpper(method), Path: path, ClientIP: clientIP}}
			if configFile != "" {
				b, err := os.ReadFile(configFile)
				if err != nil {
					return nil, err
				}
				if !json.Valid(b) {
					return nil, fmt.Errorf("%s is not valid JSON", configFile)
				}
				req.Config = json.RawMessage(b)
			}
			for _, h := range headers {
				k, v, ok := strings.Cut(h, ":")
				if !ok {
					return nil, usageErrorf("--header %q: want 'Name: value'", h)
				}
				if req.Request.Headers == nil {
					req.Request.Headers = map[string]string{}
				}
				req.Request.Headers[http.CanonicalHeaderKey(strings.TrimSpace(k))] = strings.TrimSpace(v)
			}
			p, err := resolvePlugin(ctx, c, args[0])
			if err != nil {
				return nil, err
			}
			return c.TestPlugin(ctx, p.ID, req)
		})
	test.Flags().StringVar(&configFile, "config", "", "plugin configuration (JSON file)")
	// Not PC_CONFIG: that is pcd's configuration file, often exported on
	// the same machine.
	setEnvName(test.Flags(), "config", "PC_PLUGIN_CONFIG")
	test.Flags().StringVar(&method, "method", "GET", "request method")
	test.Flags().StringVar(&path, "path", "/", "request path")
	test.Flags().StringVar(&clientIP, "client-ip", "", "client IP of the request")
	test.Flags().StringArrayVar(&headers, "header", nil, "request header 'Name: value', repeatable")

	return group("plugins", "Manage Wasm access-control plugins (admin)", push, ls, get, rm, pull, test)
}

// pluginLabel is name@version, or the name of an unversioned plugin.
func pluginLabel(p *client.Plugin) string {
	if p.Version == "" {
		return p.Name
	}
	return p.Name + "@" + p.Version
}
