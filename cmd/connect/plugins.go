package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"

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
	var name, version string
	push := getCmd(a, "push FILE.wasm --name NAME", "Upload a Wasm access-control plugin; the server validates it (admin)",
		"  connect plugins push geo.wasm --name geo --version 1.2.0", 1,
		func(ctx context.Context, c *client.Client, args []string) (*client.Plugin, error) {
			n := name
			if n == "" {
				n = strings.TrimSuffix(filepath.Base(args[0]), filepath.Ext(args[0]))
			}
			f, err := os.Open(args[0])
			if err != nil {
				return nil, err
			}
			defer f.Close()
			return c.UploadPlugin(ctx, n, version, f)
		})
	push.Flags().StringVar(&name, "name", "", "plugin name (default: the file name without .wasm)")
	push.Flags().StringVar(&version, "version", "", "plugin version")

	ls := listCmd(a, "ls", "List plugins, built-ins included (admin)", "  connect plugins ls", 0,
		func(ctx context.Context, c *client.Client, _ []string, lo client.ListOptions) ([]client.Plugin, string, error) {
			return c.ListPlugins(ctx, lo)
		}, pluginCols)
	get := getCmd(a, "get PLUGIN_ID", "Show a plugin (admin)", "  connect plugins get 6f1c…", 1,
		func(ctx context.Context, c *client.Client, args []string) (*client.Plugin, error) {
			return c.GetPlugin(ctx, args[0])
		})
	rm := actionCmd(a, "rm PLUGIN_ID", "Delete a plugin; refused while a share uses it (admin)", "  connect plugins rm 6f1c…", 1,
		func(ctx context.Context, c *client.Client, args []string) (string, error) {
			if err := c.DeletePlugin(ctx, args[0]); err != nil {
				return "", err
			}
			return fmt.Sprintf("Deleted plugin %s.", args[0]), nil
		})

	var out string
	pull := leaf("pull PLUGIN_ID -o FILE.wasm", "Download a plugin's module (admin)", "  connect plugins pull 6f1c… -o geo.wasm", 1, 1,
		func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return usageErrorf("-o FILE is required")
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			b, err := c.DownloadPlugin(a.ctx(cmd), args[0])
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
	test := getCmd(a, "test PLUGIN_ID", "Dry-run a plugin on a sample request (admin)",
		"  connect plugins test 6f1c… --config geo.json --method GET --path / --client-ip 203.0.113.7 --header 'X-Country: FR'", 1,
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
			return c.TestPlugin(ctx, args[0], req)
		})
	test.Flags().StringVar(&configFile, "config", "", "plugin configuration (JSON file)")
	test.Flags().StringVar(&method, "method", "GET", "request method")
	test.Flags().StringVar(&path, "path", "/", "request path")
	test.Flags().StringVar(&clientIP, "client-ip", "", "client IP of the request")
	test.Flags().StringArrayVar(&headers, "header", nil, "request header 'Name: value', repeatable")

	return group("plugins", "Manage Wasm access-control plugins (admin)", push, ls, get, rm, pull, test)
}
