package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/privateconnect/pc/internal/cliconf"
	"github.com/privateconnect/pc/internal/config"
	"github.com/privateconnect/pc/internal/devcert"
	"github.com/privateconnect/pc/sdk/agent"
	"github.com/privateconnect/pc/sdk/client"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

const defaultControlURL = "http://127.0.0.1:3001"

// defaultTimeout bounds each call to the control plane (--timeout), the
// agent's calls at its start included: a control plane that accepts
// connections but never answers is reported instead of waited for.
const defaultTimeout = 20 * time.Second

// defaultStatePath is the agent identity state file of --state.
const defaultStatePath = "~/.config/privateconnect/agent.json"

// app holds the global flags and the injectable dependencies of one run.
type app struct {
	stdout, stderr io.Writer
	getenv         func(string) (string, bool)
	now            func() time.Time
	httpClient     *http.Client
	controlCA      string // --control-ca
	// runAgent runs an agent until ctx is done; tests replace it.
	runAgent func(ctx context.Context, cfg agent.Config) error
	// pollInterval paces `shares logs --follow` and `agents command --wait`.
	pollInterval time.Duration
	// minRenewWait is the shortest wait before a running agent's token is
	// rotated (a floor for tokens already within rotateBefore of expiry).
	minRenewWait time.Duration
	// controlRetry paces the calls of a running agent to a control plane
	// that could not be reached (registration, token rotation).
	controlRetry time.Duration

	// Global flags.
	apiKey    string
	control   string
	statePath string
	logFormat string
	logLevel  string
	jsonOut   bool
	timeout   time.Duration // --timeout: bounds each call to the control plane (the agent's too)

	// raw is the data payload of the last API answer, printed by --json.
	raw json.RawMessage
	// lock is held while this process runs an agent (lock.go).
	lock *agentLock
	log  *slog.Logger
}

func newApp(stdout, stderr io.Writer, getenv func(string) (string, bool)) *app {
	return &app{
		stdout:       stdout,
		stderr:       stderr,
		getenv:       getenv,
		now:          time.Now,
		httpClient:   &http.Client{Timeout: defaultTimeout},
		pollInterval: 2 * time.Second,
		minRenewWait: time.Minute,
		controlRetry: 10 * time.Second,
		runAgent: func(ctx context.Context, cfg agent.Config) error {
			ag, err := agent.New(cfg)
			if err != nil {
				return err
			}
			return ag.Run(ctx)
		},
	}
}

// run is the whole program: it returns the exit code.
func run(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), cliconf.StopSignals()...)
	defer stop()
	stopProfile, err := cliconf.StartCPUProfile(args)
	if err != nil {
		fmt.Fprintln(stderr, "error:", err)
		return 1
	}
	defer stopProfile()
	return newApp(stdout, stderr, os.LookupEnv).execute(ctx, args)
}

// exitInterrupted is the exit code of a command ended by Ctrl-C (128+SIGINT,
// as shells report it).
const exitInterrupted = 130

// execute runs the command line args and maps the outcome to an exit code.
// A panic is reported as an error line, never as a stack trace.
func (a *app) execute(ctx context.Context, args []string) (code int) {
	defer func() {
		if v := recover(); v != nil {
			fmt.Fprintf(a.stderr, "error: internal error: %v\n", v)
			code = 1
		}
	}()
	root := a.rootCmd()
	root.SetArgs(args)
	root.SetOut(a.stdout)
	root.SetErr(a.stderr)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return 0
	}
	if ctx.Err() != nil {
		// Ctrl-C (or SIGTERM) ended a call: not an error of its own
		// ("provision agent: Post …: interrupt signal received").
		a.note(slog.LevelWarn, "interrupted", "interrupted", "exitCode", exitInterrupted)
		return exitInterrupted
	}
	return a.printError(cmd, err)
}

func (a *app) rootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "connect",
		Short: "Expose private services and share them through Private Connect",
		Long: `connect runs the Private Connect agent next to your private services and
administers the platform through the control plane's REST API.

Every flag can also be set in the environment as PC_<FLAG_NAME>
(for example PC_API_KEY, PC_CONTROL_URL, PC_JSON=true).`,
		Example: `  export PC_API_KEY=pc_…
  connect expose localhost:3000 --name web
  connect link web --expires 1h
  connect services ls`,
		Version:           version,
		SilenceErrors:     true,
		SilenceUsage:      true,
		CompletionOptions: cobra.CompletionOptions{DisableDefaultCmd: true},
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			if err := a.bindEnv(cmd); err != nil {
				return err
			}
			switch a.logFormat {
			case "text", "json":
			default:
				return usageErrorf("--log-format must be text or json, not %q", a.logFormat)
			}
			level, err := parseLevel(a.logLevel, a.logFormat)
			if err != nil {
				return err
			}
			a.log = newLogger(a.stderr, a.logFormat, level)
			if strings.TrimSpace(a.statePath) == "" {
				// Not the current directory: an agent provisioned there
				// would be lost to the next run.
				return usageErrorf("--state must not be empty (leave the flag out for %s)", defaultStatePath)
			}
			if err := a.checkControlAndKey(); err != nil {
				return err
			}
			if a.timeout <= 0 {
				return usageErrorf("--timeout must be more than 0, not %s", a.timeout)
			}
			hc := *a.httpClient
			hc.Timeout = a.timeout
			a.httpClient = &hc
			return a.trustControlCA()
		},
	}
	pf := root.PersistentFlags()
	pf.StringVar(&a.apiKey, "api-key", "", "API key (x-api-key)")
	pf.StringVar(&a.control, "control", defaultControlURL, "control plane URL")
	setEnvName(pf, "control", "PC_CONTROL_URL")
	pf.StringVar(&a.controlCA, "control-ca", "", "PEM file of the CA that signed an https control plane's certificate (default: the system's roots)")
	pf.BoolVar(&a.jsonOut, "json", false, "print the API's JSON data instead of tables")
	pf.StringVar(&a.statePath, "state", defaultStatePath, "agent identity state file")
	pf.DurationVar(&a.timeout, "timeout", defaultTimeout, "how long to wait for each answer of the control plane")
	pf.StringVar(&a.logFormat, "log-format", "text", "log format: text or json")
	pf.StringVar(&a.logLevel, "log-level", "", "debug, info, warn or error (default: warn for text, whose events are printed anyway; info for json)")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })

	root.AddCommand(
		a.exposeCmd(), a.upCmd(), a.linkCmd(), a.reachCmd(), a.statusCmd(),
		a.agentsCmd(), a.servicesCmd(), a.tunnelsCmd(), a.sharesCmd(), a.keysCmd(),
		a.workspacesCmd(), a.workspaceCmd(), a.edgesCmd(), a.webhooksCmd(), a.pluginsCmd(),
		a.auditCmd(),
	)
	documentEnv(root)
	return root
}

// group returns a command that only holds subcommands.
func group(use, short string, subs ...*cobra.Command) *cobra.Command {
	g := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageErrorf("unknown command %q for %q", args[0], cmd.CommandPath())
			}
			return cmd.Help()
		},
	}
	g.AddCommand(subs...)
	return g
}

// leaf returns a runnable command taking between minArgs and maxArgs
// positional arguments (maxArgs < 0: no upper bound).
func leaf(use, short, example string, minArgs, maxArgs int, run func(cmd *cobra.Command, args []string) error) *cobra.Command {
	return &cobra.Command{
		Use:     use,
		Short:   short,
		Example: example,
		Args: func(cmd *cobra.Command, args []string) error {
			switch {
			case len(args) < minArgs, maxArgs >= 0 && len(args) > maxArgs:
				if maxArgs < 0 {
					return usageErrorf("%q takes at least %d argument(s), got %d", cmd.CommandPath(), minArgs, len(args))
				}
				if minArgs == maxArgs {
					return usageErrorf("%q takes %d argument(s), got %d", cmd.CommandPath(), minArgs, len(args))
				}
				return usageErrorf("%q takes %d to %d argument(s), got %d", cmd.CommandPath(), minArgs, maxArgs, len(args))
			}
			return nil
		},
		RunE: run,
	}
}

// checkControlAndKey refuses a --control that is not an http(s) URL with a
// host (as pcd edge does) and an API key with control characters, and
// trims the whitespace around the key (a key read from a file ends with a
// newline): otherwise Go's URL or header errors would say it, confusingly.
func (a *app) checkControlAndKey() error {
	if _, ok := config.ControlURL(a.control); !ok {
		return usageErrorf("--control %q: want the control plane's http:// or https:// address, e.g. %s (also PC_CONTROL_URL)", a.control, defaultControlURL)
	}
	a.apiKey = strings.TrimSpace(a.apiKey)
	if strings.IndexFunc(a.apiKey, func(r rune) bool { return r < 0x20 || r == 0x7f }) >= 0 {
		return usageErrorf("the API key (--api-key / PC_API_KEY) contains a control character (a line break, tab...): give the key alone")
	}
	return nil
}

// trustControlCA makes the API client verify an https control plane with
// --control-ca instead of the system's roots (pcd edge --control-ca).
func (a *app) trustControlCA() error {
	if a.controlCA == "" {
		return nil
	}
	path, err := expandHome(a.controlCA)
	if err != nil {
		return err
	}
	tc, err := devcert.ClientTLS(path)
	if err != nil {
		return usageErrorf("--control-ca: %v", err)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tc
	hc := *a.httpClient
	hc.Transport = tr
	a.httpClient = &hc
	return nil
}

// client returns an API client for the authenticated routes.
func (a *app) client() (*client.Client, error) {
	if a.apiKey == "" {
		return nil, errors.New("no API key: set --api-key or PC_API_KEY")
	}
	return a.newClient(a.apiKey), nil
}

// publicClient returns an API client that sends no key.
func (a *app) publicClient() *client.Client { return a.newClient("") }

func (a *app) newClient(key string) *client.Client {
	return client.New(a.control, key, client.WithHTTPClient(a.httpClient), client.WithUserAgent("connect/"+version))
}

// ctx returns the command's context set up to capture the raw API data.
func (a *app) ctx(cmd *cobra.Command) context.Context {
	return client.WithRawData(cmd.Context(), &a.raw)
}

// expandHome resolves a leading "~/" in a path.
func expandHome(path string) (string, error) {
	if path != "~" && !strings.HasPrefix(path, "~/") {
		return path, nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("state file: %w", err)
	}
	return filepath.Join(home, strings.TrimPrefix(path, "~")), nil
}

// parseLevel returns the log level of --log-level, defaulting by format.
func parseLevel(s, format string) (slog.Level, error) {
	if s == "" {
		if format == "json" {
			return slog.LevelInfo, nil
		}
		return slog.LevelWarn, nil
	}
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, usageErrorf("--log-level must be debug, info, warn or error, not %q", s)
	}
	return l, nil
}

func newLogger(w io.Writer, format string, level slog.Level) *slog.Logger {
	return slog.New(cliconf.LogHandler(w, format == "json", level))
}

// cmdContext is the command's context (Ctrl-C ends it), or Background for
// an error met before a command ran.
func cmdContext(cmd *cobra.Command) context.Context {
	if cmd != nil && cmd.Context() != nil {
		return cmd.Context()
	}
	return context.Background()
}

// notControl reports whether err, a 404 or 405 or an answer that is not
// JSON, came from a server that is not a control plane (an edge's share
// listener, an unrelated web server): the control plane serves its API
// description at /openapi.json; anything else does not.
func (a *app) notControl(ctx context.Context, err error) bool {
	var ae *client.APIError
	switch {
	case errors.As(err, &ae):
		if ae.StatusCode != http.StatusNotFound && ae.StatusCode != http.StatusMethodNotAllowed || controlNotFound(ae.Message) {
			return false
		}
	case errors.Is(err, client.ErrDecode):
	default:
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, rerr := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(a.control, "/")+"/openapi.json", nil)
	if rerr != nil {
		return false
	}
	resp, rerr := a.httpClient.Do(req)
	if rerr != nil {
		return false // unreachable now: say nothing about what it is
	}
	defer resp.Body.Close()
	var doc struct {
		OpenAPI string `json:"openapi"`
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(&doc) != nil || doc.OpenAPI == "" {
		return true
	}
	return false
}

// controlNotFound reports whether a 404's message is one the control plane
// writes ("service not found", "no route for GET /v1/x"): then no probe is
// needed, and a proxy in front that hides /openapi.json cannot make an
// ordinary 404 read as "not a control plane". Edges write capitalized
// sentences ("Share link not found").
func controlNotFound(msg string) bool {
	if msg == "" || msg[0] < 'a' || msg[0] > 'z' {
		return false
	}
	return strings.HasSuffix(msg, " not found") || strings.HasPrefix(msg, "no route for ")
}

// note tells the user something on stderr: the text line, or with
// --log-format json a log record (msg and args) instead, so that stderr
// holds only JSON records there.
func (a *app) note(level slog.Level, text, msg string, args ...any) {
	if a.logFormat == "json" && a.log != nil {
		a.log.Log(context.Background(), level, msg, args...)
		return
	}
	fmt.Fprintln(a.stderr, text)
}

// usageError marks an error as a misuse of the command line (exit code 2).
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usageErrorf(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

// isUsage reports whether err is a command-line error, including the ones
// cobra produces itself.
func isUsage(err error) bool {
	var ue usageError
	if errors.As(err, &ue) {
		return true
	}
	var ae *client.APIError
	if errors.As(err, &ae) {
		return false
	}
	msg := err.Error()
	for _, prefix := range []string{"unknown command", "unknown flag", "unknown shorthand flag", "required flag", "invalid argument", "flag needs an argument", "if any flags in the group"} {
		if strings.HasPrefix(msg, prefix) {
			return true
		}
	}
	return false
}

// printError writes err to stderr as "error: <message>" (with the API's field
// details) and returns the exit code: 2 for usage errors, 1 otherwise.
func (a *app) printError(cmd *cobra.Command, err error) int {
	var ue *url.Error
	switch {
	case errors.As(err, &ue) && !errors.Is(err, context.Canceled):
		switch {
		case ue.Timeout() || errors.Is(err, context.DeadlineExceeded):
			// Not Go's "context deadline exceeded (Client.Timeout exceeded
			// while awaiting headers)".
			err = fmt.Errorf("the control plane at %s did not answer within %s (set --timeout or PC_TIMEOUT to wait longer)", a.control, a.timeout)
		case notHTTP(ue.Err):
			// Something that does not speak HTTP (an edge's tunnel listener
			// greets with its own protocol): Go's error quotes its bytes.
			err = fmt.Errorf("%s does not look like a control plane's API (it answered with something that is not HTTP): %s", a.control, checkControl)
		default:
			err = fmt.Errorf("cannot reach the control plane at %s: %w", a.control, ue.Err)
		}
	case a.notControl(cmdContext(cmd), err):
		err = fmt.Errorf("%s does not look like a control plane's API (it answered: %w; it serves no /openapi.json): %s", a.control, err, checkControl)
	}
	code := 1
	if isUsage(err) {
		code = 2
	}
	var ae *client.APIError
	if a.logFormat == "json" && a.log != nil {
		// stderr holds only JSON records in this mode.
		args := []any{"error", err.Error()}
		if errors.As(err, &ae) {
			args = append(args, "status", ae.StatusCode)
			for _, d := range ae.Details {
				args = append(args, slog.String("field."+d.Field, d.Message))
			}
			if ae.RetryAfter > 0 {
				args = append(args, "retryAfter", ae.RetryAfter)
			}
		}
		a.log.Error("command failed", append(args, "exitCode", code)...)
		return code
	}
	fmt.Fprintf(a.stderr, "error: %s\n", err)
	if errors.As(err, &ae) {
		for _, d := range ae.Details {
			if !strings.Contains(ae.Message, d.Field+" "+d.Message) { // not already said
				fmt.Fprintf(a.stderr, "  %s: %s\n", d.Field, d.Message)
			}
		}
		if ae.RetryAfter > 0 {
			fmt.Fprintf(a.stderr, "  retry after %d s\n", ae.RetryAfter)
		}
	}
	if code == 2 {
		path := "connect"
		if cmd != nil {
			path = cmd.CommandPath()
		}
		fmt.Fprintf(a.stderr, "Run '%s --help' for usage.\n", path)
	}
	return code
}

// checkControl ends the message of a --control that is not a control plane.
const checkControl = "check --control / PC_CONTROL_URL (default " + defaultControlURL + "; an edge's share or tunnel address is not it)"

// notHTTP reports whether the transport error err says the server answered
// with something that is not HTTP (Go quotes its bytes).
func notHTTP(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "malformed HTTP") || strings.Contains(msg, "readLoopPeekFailLocked")
}

// envAnnotation names the environment variable of a flag when it is not
// PC_<FLAG_NAME>.
const envAnnotation = "pc-env"

func setEnvName(fs *pflag.FlagSet, flag, env string) {
	_ = fs.SetAnnotation(flag, envAnnotation, []string{env})
}

// envName is the environment variable that sets f: PC_<UPPER_SNAKE> unless annotated.
func envName(f *pflag.Flag) string {
	if v := f.Annotations[envAnnotation]; len(v) == 1 {
		return v[0]
	}
	return "PC_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
}

// bindEnv sets every flag of cmd that is not on the command line from its
// environment variable.
func (a *app) bindEnv(cmd *cobra.Command) error {
	var err error
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if err != nil || f.Changed || f.Name == "help" || f.Name == "version" {
			return
		}
		name := envName(f)
		v, ok := a.getenv(name)
		if !ok || v == "" {
			return
		}
		if e := cmd.Flags().Set(f.Name, v); e != nil {
			err = usageErrorf("invalid value %q for $%s: %v", v, name, e)
		}
	})
	return err
}

// documentEnv appends each flag's environment variable to its help text.
func documentEnv(c *cobra.Command) {
	doc := func(f *pflag.Flag) {
		if f.Name == "help" || strings.Contains(f.Usage, "[$") {
			return
		}
		f.Usage += " [$" + envName(f) + "]"
	}
	c.LocalFlags().VisitAll(doc)
	c.PersistentFlags().VisitAll(doc)
	for _, sub := range c.Commands() {
		documentEnv(sub)
	}
}
