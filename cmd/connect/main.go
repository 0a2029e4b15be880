// Command connect is the Private Connect CLI: it runs the agent (expose, up,
// reach), creates share links (link) and administers the platform through the
// control plane's REST API (agents, services, tunnels, shares, keys,
// workspaces, edges, webhooks, plugins, audit).
//
// Every flag can also be set with a PC_<FLAG_NAME> environment variable
// (--api-key is PC_API_KEY, --control is PC_CONTROL_URL). Output is a human
// table by default and the API's raw JSON data with --json. Exit codes: 0 on
// success, 1 for API and user errors, 2 for usage errors.
package main

import (
	"os"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}
