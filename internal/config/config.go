// Package config is the contract between the control plane and the edge nodes:
// the configuration snapshot an edge serves requests from, the versioned
// changes that update it, and the messages of the config stream and of the
// edge reports.
//
// # Config stream
//
// An edge holds one long-lived HTTP request to the control plane:
//
//	GET /v1/edges/config?epoch=<epoch>&version=<n>&instance=<process id>
//	Authorization: Bearer <edge token>
//
// The response is a stream of newline-delimited JSON [Message] values
// (Content-Type: application/x-ndjson). The first message is either a full
// [Snapshot] (type "snapshot") or the changes since the edge's version (type
// "changes"), then every later change is streamed as it commits. A "ping"
// message carrying the current version is sent every few seconds so that both
// sides detect a dead peer. The control plane answers with a full snapshot
// whenever the edge's epoch differs from its own (the control plane was
// restarted) or when it no longer holds every change since the edge's version,
// so a revocation is never lost. When a second process opens a stream with the
// same edge token (another instance), the older process's stream ends with a
// "replaced" message: the older process drains and stops.
//
// Versions are monotonic within an epoch. Each [Change] carries the version it
// produced; an edge applies a batch of changes and swaps in the new state
// atomically.
//
// # Reports
//
// Edges report to the control plane with
//
//	POST /v1/edges/report
//	Authorization: Bearer <edge token>
//
// carrying a [Report] (applied version, agent connection events, access logs,
// counters).
package config

import (
	"crypto/rand"
	"encoding/json"
	"net/url"
	"strings"
	"time"
)

// Message types of the config stream.
const (
	MsgSnapshot = "snapshot"
	MsgChanges  = "changes"
	MsgPing     = "ping"
	// MsgInbox tells the edge that agents it may hold have new commands or
	// messages (Message.Inbox lists their ids); the edge fetches them with
	// GET /v1/edges/agent-inbox (see inbox.go). Edges that do not know the
	// type ignore it.
	MsgInbox = "inbox"
	// MsgReplaced ends the stream of an edge process when another process
	// opened a stream with the same edge token (Message.ReplacedBy says from
	// where): one token is one edge, served by one process. The replaced
	// process drains and stops. Edges say which process they are with the
	// stream's "instance" query parameter; streams without one are never
	// replaced (older edges).
	MsgReplaced = "replaced"
)

// EdgeDeletedHeader marks the 401 the control plane answers to the token of
// a deleted edge ("true"): the edge then stops serving. Any other refusal
// (an unknown token, a proxy's 403) leaves it serving its last
// configuration.
const EdgeDeletedHeader = "X-Pc-Edge-Deleted"

// Change operations.
const (
	OpUpsert = "upsert"
	OpDelete = "delete"
)

// Kinds of configuration objects.
const (
	KindShare    = "share"
	KindService  = "service"
	KindAgent    = "agent"
	KindEdge     = "edge"
	KindPlugin   = "plugin"
	KindSettings = "settings"
)

// MaxMessageBytes bounds one line of the config stream. A snapshot of 100,000
// shares is well below it.
const MaxMessageBytes = 512 << 20

// Message is one line of the config stream.
type Message struct {
	Type string `json:"type"`
	// EdgeID is the id of the edge holding the stream; set on the first
	// message so an edge learns its own identity from its token.
	EdgeID   string    `json:"edgeId,omitempty"`
	Epoch    string    `json:"epoch"`
	Version  int64     `json:"version"`
	Snapshot *Snapshot `json:"snapshot,omitempty"`
	Changes  []Change  `json:"changes,omitempty"`
	// Inbox lists agent ids with pending inbox items (type "inbox").
	Inbox []string `json:"inbox,omitempty"`
	// ReplacedBy is the address the newer process connected from (type
	// "replaced").
	ReplacedBy string `json:"replacedBy,omitempty"`
}

// Snapshot is the complete configuration an edge needs to serve requests.
type Snapshot struct {
	Epoch    string    `json:"epoch"`
	Version  int64     `json:"version"`
	Shares   []Share   `json:"shares"`
	Services []Service `json:"services"`
	Agents   []Agent   `json:"agents"`
	Edges    []Edge    `json:"edges"`
	Plugins  []Plugin  `json:"plugins"`
	Settings Settings  `json:"settings"`
}

// Change is one versioned update. Exactly one of the object fields is set for
// an upsert; a delete carries only Kind and ID.
type Change struct {
	Version  int64     `json:"version"`
	Op       string    `json:"op"`
	Kind     string    `json:"kind"`
	ID       string    `json:"id"`
	Share    *Share    `json:"share,omitempty"`
	Service  *Service  `json:"service,omitempty"`
	Agent    *Agent    `json:"agent,omitempty"`
	Edge     *Edge     `json:"edge,omitempty"`
	Plugin   *Plugin   `json:"plugin,omitempty"`
	Settings *Settings `json:"settings,omitempty"`
}

// Share is what the edge knows of a share link. The token itself never leaves
// the control plane: the edge looks shares up by the SHA-256 of the token.
// Uses, sent with MaxUses only, is the share's accessCount as the control
// plane knew it when it sent the share: an edge counts its own uses from
// there, so a restart does not hand out maxUses again, and a share used up
// on other edges arrives used up.
type Share struct {
	ID              string             `json:"id"`
	WorkspaceID     string             `json:"workspaceId"`
	ServiceID       string             `json:"serviceId"`
	Name            string             `json:"name"`
	TokenHash       string             `json:"tokenHash"` // hex SHA-256 of the token
	ExpiresAt       *time.Time         `json:"expiresAt,omitempty"`
	Revoked         bool               `json:"revoked,omitempty"`
	AllowedPaths    []string           `json:"allowedPaths,omitempty"`
	AllowedMethods  []string           `json:"allowedMethods,omitempty"`
	AllowedIPs      []string           `json:"allowedIps,omitempty"`
	PasswordHash    string             `json:"passwordHash,omitempty"`
	RateLimitPerMin int                `json:"rateLimitPerMin,omitempty"`
	MaxUses         int64              `json:"maxUses,omitempty"`
	Uses            int64              `json:"uses,omitempty"` // see the type's comment
	Plugins         []PluginAttachment `json:"plugins,omitempty"`
}

// PluginAttachment is one extra plugin of a share's policy chain.
type PluginAttachment struct {
	PluginID string          `json:"pluginId"`
	Config   json.RawMessage `json:"config,omitempty"`
}

// Service is one exposed target of an agent.
type Service struct {
	ID          string `json:"id"`
	WorkspaceID string `json:"workspaceId"`
	AgentID     string `json:"agentId"`
	Name        string `json:"name"`
	Protocol    string `json:"protocol"` // auto|tcp|http|https
	TargetHost  string `json:"targetHost"`
	TargetPort  int    `json:"targetPort"`
	TunnelPort  int    `json:"tunnelPort,omitempty"`
	Paused      bool   `json:"paused,omitempty"`
	IsPublic    bool   `json:"isPublic,omitempty"`
	Subdomain   string `json:"subdomain,omitempty"`
}

// Agent carries what the edge needs to authenticate an agent's tunnel.
type Agent struct {
	ID          string `json:"id"`
	WorkspaceID string `json:"workspaceId"`
	Name        string `json:"name,omitempty"`
	// PublicKey is the hex Ed25519 public key of the agent's handshake key
	// (protocol version 2): all an edge needs, and nothing that can open a
	// tunnel. TokenHash (hex SHA-256 of the token, the version 1 key) is set
	// only for agents whose token was issued before version 2.
	PublicKey      string    `json:"publicKey,omitempty"`
	TokenHash      string    `json:"tokenHash,omitempty"`
	TokenExpiresAt time.Time `json:"tokenExpiresAt"`
	Revoked        bool      `json:"revoked,omitempty"`
}

// Edge is another edge node, so agents learn every edge to dial.
type Edge struct {
	ID         string `json:"id"`
	Name       string `json:"name"`
	PublicURL  string `json:"publicUrl"`
	TunnelAddr string `json:"tunnelAddr"`
}

// Plugin is an uploaded Wasm module the edge fetches by SHA-256 from
// GET /v1/edges/plugins/<sha256> and caches.
type Plugin struct {
	ID               string `json:"id"`
	Name             string `json:"name"`
	SHA256           string `json:"sha256"`
	FailOpen         bool   `json:"failOpen,omitempty"`
	TimeoutMs        int    `json:"timeoutMs,omitempty"`
	MemoryLimitBytes uint64 `json:"memoryLimitBytes,omitempty"`
}

// Settings are global data-plane settings.
type Settings struct {
	// ShareRateLimitPerMin is the default per-share request limit (0 = none).
	ShareRateLimitPerMin int `json:"shareRateLimitPerMin,omitempty"`
	// ShareDomain is the domain under which <token>.<domain> reaches a share.
	ShareDomain string `json:"shareDomain,omitempty"`
	// PublicDomain is the domain under which <subdomain>.<domain> reaches a
	// public service.
	PublicDomain string `json:"publicDomain,omitempty"`
}

// Report is what an edge posts to the control plane.
type Report struct {
	// ID names what the report counts (events, logs, statistics, uses,
	// command results, plugin failures): an edge sends a report the
	// control plane did not answer again with the same ID, and the control
	// plane applies each part of it once. Edges before it send none, and
	// their reports are applied as often as they come.
	ID          string `json:"reportId,omitempty"`
	EdgeVersion string `json:"edgeVersion,omitempty"` // software version
	// Instance is the edge process that sends the report (the config
	// stream's "instance"; see MsgReplaced).
	Instance      string        `json:"instance,omitempty"`
	ConfigEpoch   string        `json:"configEpoch"`
	ConfigVersion int64         `json:"configVersion"`
	Agents        []string      `json:"agents"` // agents connected now (full list)
	Events        []AgentEvent  `json:"events,omitempty"`
	AccessLogs    []AccessLog   `json:"accessLogs,omitempty"`
	Dropped       int64         `json:"dropped,omitempty"` // access logs dropped since the last report
	CommandResult []CommandDone `json:"commandResults,omitempty"`
	// Connections lists the live tunnel connections at report time (full
	// list; drives GET /v1/tunnels/:id/connections and tunnel counters).
	Connections []Connection `json:"connections,omitempty"`
	// PluginFailures lists share plugins that failed since the last report
	// (webhook plugin.failed); edges aggregate repeated failures in Count.
	PluginFailures []PluginFailure `json:"pluginFailures,omitempty"`
	// Uses counts every share's allowed requests since the last report,
	// whether or not their logs are in AccessLogs (a sample above the
	// edge's access log rate); it drives a share's accessCount and
	// lastAccessedAt. Edges that count uses always send it, [] when there
	// were none; without it (edges before it), the control plane counts the
	// allowed logs.
	Uses []ShareUse `json:"shareUses"`
	// Stats counts every request per share and minute since the last
	// report, logged or not: above the edge's access log rate
	// (--access-log-rate), AccessLogs is a sample and the statistics still
	// count every request. Edges that count send it always, [] when there
	// were none; without it (edges before it), the control plane counts the
	// access logs.
	Stats []ShareStats `json:"shareStats"`
	// Stopping marks an edge's last report, sent as it stops (SIGTERM,
	// after its drain): the control plane takes it offline at once
	// instead of after the offline window that covers a lost stream.
	Stopping bool `json:"stopping,omitempty"`
}

// NewReportID is a fresh Report.ID: 26 random base32 characters.
func NewReportID() string { return rand.Text() }

// ValidReportID reports whether id may name a report: 1 to 64 letters,
// digits, '-' or '_' (it is part of a store key).
func ValidReportID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// ShareUse is one share's allowed requests on an edge between two reports.
type ShareUse struct {
	ShareID string    `json:"shareId"`
	Allowed int64     `json:"allowed"`
	Last    time.Time `json:"lastAccessAt"` // the latest of them
}

// PluginFailure is a share's Wasm plugin failing on an edge (error, trap,
// timeout), aggregated per plugin and share between two reports.
type PluginFailure struct {
	PluginID string    `json:"pluginId"`
	ShareID  string    `json:"shareId"`
	Error    string    `json:"error"` // the last error
	Count    int64     `json:"count"` // failures since the last report (≥ 1)
	At       time.Time `json:"at"`    // the last failure
}

// Agent connection event types.
const (
	EventConnected    = "CONNECTED"
	EventDisconnected = "DISCONNECTED"
	EventRejected     = "REJECTED"
)

// AgentEvent is an agent connection event seen by an edge.
type AgentEvent struct {
	AgentID string    `json:"agentId"`
	Event   string    `json:"event"`
	IP      string    `json:"ip"`
	Details string    `json:"details,omitempty"`
	At      time.Time `json:"at"`
}

// AccessLog is one request through a share.
type AccessLog struct {
	ShareID    string    `json:"shareId"`
	At         time.Time `json:"at"`
	IP         string    `json:"ip"`
	UserAgent  string    `json:"userAgent,omitempty"`
	Method     string    `json:"method"`
	Path       string    `json:"path"`
	StatusCode int       `json:"statusCode"`
	LatencyMs  float64   `json:"latencyMs"`
	BytesOut   int64     `json:"bytesOut"`
	Decision   string    `json:"decision"` // allowed|denied
	DeniedBy   string    `json:"deniedBy,omitempty"`
}

// CommandDone is the result of an agent command, relayed by the edge.
type CommandDone struct {
	CommandID string          `json:"commandId"`
	AgentID   string          `json:"agentId"`
	OK        bool            `json:"ok"`
	Result    json.RawMessage `json:"result,omitempty"`
	Error     string          `json:"error,omitempty"`
}

// ControlURL parses the address of a control plane's API: http:// or
// https://, a host, and nothing a client would misread (user info, a
// query, a fragment, an empty port). Edges and connect check it alike.
func ControlURL(s string) (*url.URL, bool) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" || strings.HasSuffix(u.Host, ":") ||
		u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return nil, false
	}
	return u, true
}

// Longest path and user agent an access log keeps (edges cut them so, and
// the control plane again): they bound a log's size, and so a report's.
const (
	MaxLogPath      = 2048
	MaxLogUserAgent = 512
)

// Cut returns s cut to at most n bytes.
func Cut(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// LogPath is the path an access log records: a link path /shared/<token>/rest
// becomes /rest, the path the service sees, so that share tokens (secrets,
// stored only hashed) never reach the logs. The edge records it so, and the
// control plane applies it again to what edges report.
func LogPath(p string) string {
	rest, ok := strings.CutPrefix(p, "/shared/")
	if !ok {
		return p
	}
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		return rest[i:]
	}
	return "/"
}

// PolicyErrorMessage is the message of the error envelope a visitor gets when
// a share's policy chain fails (a plugin trapped, ran out of time or memory,
// or could not be had): the edge answers 500 or 503 with it, and the control
// plane's plugin dry-run shows the same body. The cause is logged, never
// shown to visitors.
const PolicyErrorMessage = "The request could not be authorized"

// PolicyNeedsEnvelope reports whether the edge answers a policy's verdict
// with its own error envelope (PolicyErrorMessage) rather than the
// verdict's body: a 5xx without one (a plugin's error, a crash, a timeout).
// The control plane's dry-run shows what the edge would send by the same rule.
func PolicyNeedsEnvelope(status int, body []byte) bool { return status >= 500 && len(body) == 0 }
