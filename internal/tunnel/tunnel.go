// Package tunnel is the wire protocol between an agent and an edge node. This
// doc comment is its specification.
//
// # Transport
//
// The agent dials the edge's tunnel listener over TCP, or TLS in production.
// The handshake below runs on the raw connection; once it succeeds both sides
// run an smux session (protocol version 2) over the same connection. The edge
// is the smux client and the agent the smux server: streams are opened by the
// edge, one per proxied HTTP connection or TCP connection, plus one control
// stream opened first. An agent may also open streams towards the edge
// (kind [KindReach]) to reach another agent's service.
//
// # Handshake (all integers big-endian)
//
//	ServerHello  edge → agent
//	  magic      [4]byte  "PCT1"
//	  version    u8       highest protocol version the edge speaks
//	  nonce      [32]byte fresh random bytes for this connection
//	  edgeIDLen  u8       ≤ 64
//	  edgeID     [edgeIDLen]byte
//
//	ClientHello  agent → edge
//	  magic      [4]byte  "PCT1"
//	  version    u8       the version the agent chose, MinVersion ≤ v ≤ server's
//	  agentID    [16]byte the agent's UUID
//	  proof      version 2: sig [64]byte, Ed25519 signature by the agent key of
//	                        "pc-tunnel-v2" | version | nonce | agentID | edgeID
//	             version 1: mac [32]byte, HMAC-SHA256(SHA-256(token),
//	                        "pc-tunnel" | version | nonce | agentID | edgeID)
//	  softLen    u8       ≤ 64
//	  software   [softLen]byte agent software version, informative
//
//	ServerResult edge → agent
//	  status     u8       ResultOK, ResultBadCredentials, ResultExpired,
//	                      ResultUnsupportedVersion, ResultUnavailable
//	  msgLen     u16      ≤ 1024
//	  msg        [msgLen]byte a human-readable reason
//
// Version 2: the agent key is the Ed25519 key whose seed is
// SHA-256("pc-agent-key/v2" | 0x00 | token) ([AgentSigningKey]). The control
// plane derives its public key when it issues the token and pushes only that
// to the edges: an edge (or a copy of its configuration) holds nothing that
// can open a tunnel as the agent, on it or on any other edge.
//
// Version 1: the HMAC key is SHA-256(agent token), which the edge must hold:
// anyone with an edge's configuration could act as any agent. The control
// plane pushes token hashes only for agents whose record has no public key
// (issued before version 2), so version 1 keeps working for them alone.
//
// In both, the token itself never crosses the wire; because the nonce is
// fresh per connection and bound into the proof together with the edge id, a
// captured ClientHello cannot be replayed. MACs are compared in constant
// time. Each side enforces HandshakeTimeout on the exchange.
//
// # Streams
//
// Every stream opened by the edge starts with a StreamHeader; the agent
// answers with a StreamReply, then the stream carries raw bytes (an HTTP/1.1
// connection to the service, or a TCP connection) in both directions.
// Half-close is expressed by closing the stream.
//
//	StreamHeader
//	  version    u8       StreamVersion (1)
//	  kind       u8       KindControl, KindHTTP, KindTCP, KindReach
//	  serviceID  [16]byte the service UUID (zero for the control stream)
//	  ipLen      u8       ≤ 45
//	  clientIP   [ipLen]byte the visitor's IP in text form (may be empty)
//
//	StreamReply
//	  status     u8       ReplyOK, ReplyUnknownService, ReplyDialFailed,
//	                      ReplyRefused, ReplyOverloaded
//	  msgLen     u16      ≤ 1024
//	  msg        [msgLen]byte
//
// # Control stream
//
// The control stream carries frames of u32 length + JSON ([Control]), at most
// MaxControlFrame bytes each: the edge sends the agent its services and the
// list of edges to hold tunnels to, pings, messages and commands; the agent
// answers pongs and command results.
//
// An edge keeps one session per agent: a newer one replaces the older. Before
// it closes the older session the edge sends it a "replaced" frame with the
// reason. An agent never holds two sessions to one edge (it opens a new one
// only once its old one is gone), so an agent that receives "replaced" on its
// live session is a second process running the same identity: it does not
// reconnect to that edge, which would displace the newer session in turn,
// back and forth for as long as both ran, and it stops once it holds no
// tunnel any more (one edge alone cannot end its tunnels to the others).
// Agents that do not know the frame ignore it (and are closed as before).
//
// # Versions
//
//	1  initial protocol (2026-11).
//	2  the ClientHello proves the agent with an Ed25519 signature; edges hold
//	   agents' public keys only (2026-11).
//
// An edge accepts versions MinVersion through Version, so agents one release
// behind keep working.
package tunnel

import (
	"bufio"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/google/uuid"
	"github.com/xtaci/smux"
)

// Protocol constants.
const (
	Magic      = "PCT1"
	Version    = 2
	MinVersion = 1

	NonceSize        = 32
	MACSize          = 32
	SigSize          = ed25519.SignatureSize
	MaxIDLen         = 64
	MaxMessageLen    = 1024
	MaxIPLen         = 45
	StreamVersion    = 1
	MaxControlFrame  = 1 << 20
	HandshakeTimeout = 10 * time.Second
)

// Handshake result codes.
const (
	ResultOK                 byte = 0
	ResultBadCredentials     byte = 1
	ResultExpired            byte = 2
	ResultUnsupportedVersion byte = 3
	ResultUnavailable        byte = 4
)

// Stream kinds.
const (
	KindControl byte = 1
	KindHTTP    byte = 2
	KindTCP     byte = 3
	KindReach   byte = 4
)

// Stream reply codes.
const (
	ReplyOK             byte = 0
	ReplyUnknownService byte = 1
	ReplyDialFailed     byte = 2
	ReplyRefused        byte = 3
	ReplyOverloaded     byte = 4
)

// Errors.
var (
	ErrBadMagic    = errors.New("tunnel: bad magic")
	ErrVersion     = errors.New("tunnel: unsupported protocol version")
	ErrTooLong     = errors.New("tunnel: field too long")
	ErrBadKind     = errors.New("tunnel: unknown stream kind")
	ErrFrameTooBig = errors.New("tunnel: control frame too large")
)

// ServerHello opens the handshake.
type ServerHello struct {
	Version byte
	Nonce   [NonceSize]byte
	EdgeID  string
}

// ClientHello answers the ServerHello.
type ClientHello struct {
	Version  byte
	AgentID  uuid.UUID
	MAC      [MACSize]byte // version 1
	Sig      [SigSize]byte // version 2
	Software string
}

// proofLen is the size of the ClientHello's proof in version v.
func proofLen(v byte) int {
	if v >= 2 {
		return SigSize
	}
	return MACSize
}

// Result ends the handshake (also used as a StreamReply).
type Result struct {
	Status  byte
	Message string
}

// StreamHeader starts every stream.
type StreamHeader struct {
	Kind      byte
	ServiceID uuid.UUID
	ClientIP  string
}

// TokenKey derives the handshake key from an agent token: SHA-256 of the
// token. The control plane stores the same digest (hex) as the token hash.
func TokenKey(token string) [32]byte { return sha256.Sum256([]byte(token)) }

// TokenKeyFromHash decodes a hex token hash into a handshake key.
func TokenKeyFromHash(hexHash string) ([32]byte, error) {
	var k [32]byte
	b, err := hex.DecodeString(hexHash)
	if err != nil || len(b) != 32 {
		return k, errors.New("tunnel: bad token hash")
	}
	copy(k[:], b)
	return k, nil
}

// AgentSigningKey is the agent's version 2 handshake key, derived from its
// token.
func AgentSigningKey(token string) ed25519.PrivateKey {
	seed := sha256.Sum256([]byte("pc-agent-key/v2\x00" + token))
	return ed25519.NewKeyFromSeed(seed[:])
}

// AgentPublicKey is the public half of AgentSigningKey, the only agent
// credential edges receive for version 2.
func AgentPublicKey(token string) [ed25519.PublicKeySize]byte {
	var pub [ed25519.PublicKeySize]byte
	copy(pub[:], AgentSigningKey(token).Public().(ed25519.PublicKey))
	return pub
}

// signed is the message a version 2 ClientHello signs.
func signed(version byte, nonce [NonceSize]byte, agentID uuid.UUID, edgeID string) []byte {
	b := make([]byte, 0, 12+1+NonceSize+16+len(edgeID))
	b = append(b, "pc-tunnel-v2"...)
	b = append(b, version)
	b = append(b, nonce[:]...)
	b = append(b, agentID[:]...)
	return append(b, edgeID...)
}

// Sign returns the version 2 handshake signature.
func Sign(key ed25519.PrivateKey, version byte, nonce [NonceSize]byte, agentID uuid.UUID, edgeID string) [SigSize]byte {
	var out [SigSize]byte
	copy(out[:], ed25519.Sign(key, signed(version, nonce, agentID, edgeID)))
	return out
}

// VerifySig checks a version 2 ClientHello signature.
func VerifySig(pub [ed25519.PublicKeySize]byte, sh *ServerHello, ch *ClientHello) bool {
	return ed25519.Verify(pub[:], signed(ch.Version, sh.Nonce, ch.AgentID, sh.EdgeID), ch.Sig[:])
}

// NewClientHello is the agent's answer to sh in protocol version v, proven
// with its token: a signature in version 2, a MAC in version 1.
func NewClientHello(v byte, agentID uuid.UUID, token string, sh *ServerHello, software string) *ClientHello {
	ch := &ClientHello{Version: v, AgentID: agentID, Software: software}
	if v >= 2 {
		ch.Sig = Sign(AgentSigningKey(token), v, sh.Nonce, agentID, sh.EdgeID)
	} else {
		ch.MAC = ComputeMAC(TokenKey(token), v, sh.Nonce, agentID, sh.EdgeID)
	}
	return ch
}

// ComputeMAC returns the version 1 handshake MAC.
func ComputeMAC(key [32]byte, version byte, nonce [NonceSize]byte, agentID uuid.UUID, edgeID string) [MACSize]byte {
	m := hmac.New(sha256.New, key[:])
	m.Write([]byte("pc-tunnel"))
	m.Write([]byte{version})
	m.Write(nonce[:])
	m.Write(agentID[:])
	m.Write([]byte(edgeID))
	var out [MACSize]byte
	copy(out[:], m.Sum(nil))
	return out
}

// VerifyMAC checks a ClientHello MAC in constant time.
func VerifyMAC(key [32]byte, sh *ServerHello, ch *ClientHello) bool {
	want := ComputeMAC(key, ch.Version, sh.Nonce, ch.AgentID, sh.EdgeID)
	return hmac.Equal(want[:], ch.MAC[:])
}

// WriteServerHello encodes h.
func WriteServerHello(w io.Writer, h *ServerHello) error {
	if len(h.EdgeID) > MaxIDLen {
		return ErrTooLong
	}
	b := make([]byte, 0, 4+1+NonceSize+1+len(h.EdgeID))
	b = append(b, Magic...)
	b = append(b, h.Version)
	b = append(b, h.Nonce[:]...)
	b = append(b, byte(len(h.EdgeID)))
	b = append(b, h.EdgeID...)
	_, err := w.Write(b)
	return err
}

// ReadServerHello decodes a ServerHello.
func ReadServerHello(r io.Reader) (*ServerHello, error) {
	var fixed [4 + 1 + NonceSize + 1]byte
	if _, err := io.ReadFull(r, fixed[:]); err != nil {
		return nil, fmt.Errorf("tunnel: read server hello: %w", err)
	}
	if string(fixed[:4]) != Magic {
		return nil, ErrBadMagic
	}
	h := &ServerHello{Version: fixed[4]}
	if h.Version < MinVersion {
		return nil, ErrVersion
	}
	copy(h.Nonce[:], fixed[5:5+NonceSize])
	n := int(fixed[5+NonceSize])
	if n > MaxIDLen {
		return nil, ErrTooLong
	}
	id := make([]byte, n)
	if _, err := io.ReadFull(r, id); err != nil {
		return nil, fmt.Errorf("tunnel: read server hello: %w", err)
	}
	h.EdgeID = string(id)
	return h, nil
}

// WriteClientHello encodes h.
func WriteClientHello(w io.Writer, h *ClientHello) error {
	if len(h.Software) > MaxIDLen {
		return ErrTooLong
	}
	b := make([]byte, 0, 4+1+16+SigSize+1+len(h.Software))
	b = append(b, Magic...)
	b = append(b, h.Version)
	b = append(b, h.AgentID[:]...)
	if h.Version >= 2 {
		b = append(b, h.Sig[:]...)
	} else {
		b = append(b, h.MAC[:]...)
	}
	b = append(b, byte(len(h.Software)))
	b = append(b, h.Software...)
	_, err := w.Write(b)
	return err
}

// ReadClientHello decodes a ClientHello and checks its version against the
// range this side accepts (the layout after the agent id depends on it: an
// unknown version is reported before reading further).
func ReadClientHello(r io.Reader) (*ClientHello, error) {
	var fixed [4 + 1 + 16]byte
	if _, err := io.ReadFull(r, fixed[:]); err != nil {
		return nil, fmt.Errorf("tunnel: read client hello: %w", err)
	}
	if string(fixed[:4]) != Magic {
		return nil, ErrBadMagic
	}
	h := &ClientHello{Version: fixed[4]}
	copy(h.AgentID[:], fixed[5:21])
	if h.Version < MinVersion || h.Version > Version {
		return h, ErrVersion
	}
	var rest [SigSize + 1]byte
	pl := proofLen(h.Version)
	if _, err := io.ReadFull(r, rest[:pl+1]); err != nil {
		return nil, fmt.Errorf("tunnel: read client hello: %w", err)
	}
	if h.Version >= 2 {
		copy(h.Sig[:], rest[:pl])
	} else {
		copy(h.MAC[:], rest[:pl])
	}
	n := int(rest[pl])
	if n > MaxIDLen {
		return nil, ErrTooLong
	}
	soft := make([]byte, n)
	if _, err := io.ReadFull(r, soft); err != nil {
		return nil, fmt.Errorf("tunnel: read client hello: %w", err)
	}
	h.Software = string(soft)
	return h, nil
}

// WriteResult encodes a handshake result or stream reply.
func WriteResult(w io.Writer, r Result) error {
	msg := r.Message
	if len(msg) > MaxMessageLen {
		msg = msg[:MaxMessageLen]
	}
	b := make([]byte, 3, 3+len(msg))
	b[0] = r.Status
	binary.BigEndian.PutUint16(b[1:3], uint16(len(msg)))
	b = append(b, msg...)
	_, err := w.Write(b)
	return err
}

// ReadResult decodes a handshake result or stream reply.
func ReadResult(r io.Reader) (Result, error) {
	var fixed [3]byte
	if _, err := io.ReadFull(r, fixed[:]); err != nil {
		return Result{}, fmt.Errorf("tunnel: read result: %w", err)
	}
	n := int(binary.BigEndian.Uint16(fixed[1:3]))
	if n > MaxMessageLen {
		return Result{}, ErrTooLong
	}
	msg := make([]byte, n)
	if _, err := io.ReadFull(r, msg); err != nil {
		return Result{}, fmt.Errorf("tunnel: read result: %w", err)
	}
	return Result{Status: fixed[0], Message: string(msg)}, nil
}

// AppendStreamHeader appends the encoding of h to b.
func AppendStreamHeader(b []byte, h *StreamHeader) ([]byte, error) {
	if len(h.ClientIP) > MaxIPLen {
		return b, ErrTooLong
	}
	b = append(b, StreamVersion, h.Kind)
	b = append(b, h.ServiceID[:]...)
	b = append(b, byte(len(h.ClientIP)))
	b = append(b, h.ClientIP...)
	return b, nil
}

// ReadStreamHeader decodes a StreamHeader.
func ReadStreamHeader(r io.Reader) (StreamHeader, error) {
	var fixed [1 + 1 + 16 + 1]byte
	var h StreamHeader
	if _, err := io.ReadFull(r, fixed[:]); err != nil {
		return h, fmt.Errorf("tunnel: read stream header: %w", err)
	}
	if fixed[0] != StreamVersion {
		return h, ErrVersion
	}
	h.Kind = fixed[1]
	if h.Kind < KindControl || h.Kind > KindReach {
		return h, ErrBadKind
	}
	copy(h.ServiceID[:], fixed[2:18])
	n := int(fixed[18])
	if n > MaxIPLen {
		return h, ErrTooLong
	}
	if n > 0 {
		ip := make([]byte, n)
		if _, err := io.ReadFull(r, ip); err != nil {
			return h, fmt.Errorf("tunnel: read stream header: %w", err)
		}
		h.ClientIP = string(ip)
	}
	return h, nil
}

// Control message types.
const (
	CtlServices      = "services"
	CtlEdges         = "edges"
	CtlPing          = "ping"
	CtlPong          = "pong"
	CtlMessage       = "message"
	CtlCommand       = "command"
	CtlCommandResult = "command_result"
	CtlReplaced      = "replaced" // edge → agent: a newer session of the agent took over (Reason)
	CtlAbort         = "abort"    // either side: the connection of stream Stream was torn down, not ended (abort.go)
)

// Control is one frame of the control stream.
type Control struct {
	Type     string          `json:"type"`
	Services []Service       `json:"services,omitempty"`
	Edges    []string        `json:"edges,omitempty"`
	Seq      int64           `json:"seq,omitempty"`
	ID       string          `json:"id,omitempty"`     // message or command id
	Action   string          `json:"action,omitempty"` // command action
	Timeout  int             `json:"timeoutSeconds,omitempty"`
	Payload  json.RawMessage `json:"payload,omitempty"`
	OK       bool            `json:"ok,omitempty"`
	Error    string          `json:"error,omitempty"`
	Reason   string          `json:"reason,omitempty"` // why the session ends (replaced)
	Stream   uint32          `json:"stream,omitempty"` // the stream an abort is about
}

// Service is a target the agent may dial, as told by the edge.
type Service struct {
	ID         string `json:"id"`
	Name       string `json:"name"`
	Protocol   string `json:"protocol"`
	TargetHost string `json:"targetHost"`
	TargetPort int    `json:"targetPort"`
}

// WriteControl writes one control frame.
func WriteControl(w io.Writer, c *Control) error {
	body, err := json.Marshal(c)
	if err != nil {
		return err
	}
	if len(body) > MaxControlFrame {
		return ErrFrameTooBig
	}
	b := make([]byte, 4, 4+len(body))
	binary.BigEndian.PutUint32(b, uint32(len(body)))
	b = append(b, body...)
	_, err = w.Write(b)
	return err
}

// ReadControl reads one control frame.
func ReadControl(r *bufio.Reader) (*Control, error) {
	var lb [4]byte
	if _, err := io.ReadFull(r, lb[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(lb[:])
	if n > MaxControlFrame {
		return nil, ErrFrameTooBig
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return nil, err
	}
	c := new(Control)
	if err := json.Unmarshal(body, c); err != nil {
		return nil, fmt.Errorf("tunnel: decode control frame: %w", err)
	}
	return c, nil
}

// SmuxConfig returns the smux configuration both sides use: protocol v2,
// keep-alives that detect a dead peer within 30 s (dataplane.md), and
// bounded buffers. smux checks once per KeepAliveTimeout whether anything
// arrived since the last check, so a peer that dies just after a check is
// found up to two timeouts later: 15 s finds it in 15-30 s (30 s took up
// to 60). A keep-alive every 7 s leaves 8 s of slack for a late one.
// Buffers are limits, not allocations: an idle session holds little memory.
func SmuxConfig() *smux.Config {
	c := smux.DefaultConfig()
	c.Version = 2
	c.KeepAliveInterval = 7 * time.Second
	c.KeepAliveTimeout = 15 * time.Second
	c.MaxFrameSize = 64<<10 - 1 // the most smux takes; a bulk copy's read (bulkCopy) is one frame
	c.MaxReceiveBuffer = 8 << 20
	c.MaxStreamBuffer = 2 << 20
	return c
}
