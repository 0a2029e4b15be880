package bench

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha1" //nolint:gosec // RFC 6455 mandates SHA-1 for the accept key
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// A minimal RFC 6455 implementation, enough for an echo benchmark: single
// unfragmented binary frames, masking from the client, close and ping. Both
// ends are pcbench's own, so the overhead is identical for the direct and
// the tunnelled run and measures only the path in between.

const wsGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

const (
	wsOpBinary = 0x2
	wsOpClose  = 0x8
	wsOpPing   = 0x9
	wsOpPong   = 0xA
)

func wsAccept(key string) string {
	h := sha1.Sum([]byte(key + wsGUID)) //nolint:gosec
	return base64.StdEncoding.EncodeToString(h[:])
}

// wsWriteFrame writes one final frame; mask is applied when non-nil.
func wsWriteFrame(w *bufio.Writer, op byte, payload []byte, mask []byte) error {
	var hdr [14]byte
	hdr[0] = 0x80 | op
	n := 2
	l := len(payload)
	var mbit byte
	if mask != nil {
		mbit = 0x80
	}
	switch {
	case l < 126:
		hdr[1] = mbit | byte(l)
	case l <= 0xFFFF:
		hdr[1] = mbit | 126
		binary.BigEndian.PutUint16(hdr[2:], uint16(l))
		n = 4
	default:
		hdr[1] = mbit | 127
		binary.BigEndian.PutUint64(hdr[2:], uint64(l))
		n = 10
	}
	if mask != nil {
		copy(hdr[n:], mask[:4])
		n += 4
	}
	if _, err := w.Write(hdr[:n]); err != nil {
		return err
	}
	if mask == nil {
		_, err := w.Write(payload)
		if err != nil {
			return err
		}
		return w.Flush()
	}
	for i, b := range payload {
		if err := w.WriteByte(b ^ mask[i&3]); err != nil {
			return err
		}
	}
	return w.Flush()
}

// wsReadFrame reads one frame into buf (grown as needed) and unmasks it.
func wsReadFrame(r *bufio.Reader, buf []byte) (op byte, payload []byte, err error) {
	var h [2]byte
	if _, err = io.ReadFull(r, h[:]); err != nil {
		return 0, nil, err
	}
	if h[0]&0x80 == 0 {
		return 0, nil, errors.New("ws: fragmented frames are not supported")
	}
	op = h[0] & 0x0F
	masked := h[1]&0x80 != 0
	l := uint64(h[1] & 0x7F)
	switch l {
	case 126:
		var e [2]byte
		if _, err = io.ReadFull(r, e[:]); err != nil {
			return 0, nil, err
		}
		l = uint64(binary.BigEndian.Uint16(e[:]))
	case 127:
		var e [8]byte
		if _, err = io.ReadFull(r, e[:]); err != nil {
			return 0, nil, err
		}
		l = binary.BigEndian.Uint64(e[:])
	}
	if l > 16<<20 {
		return 0, nil, errors.New("ws: frame too large")
	}
	var mask [4]byte
	if masked {
		if _, err = io.ReadFull(r, mask[:]); err != nil {
			return 0, nil, err
		}
	}
	if uint64(cap(buf)) < l {
		buf = make([]byte, l)
	}
	payload = buf[:l]
	if _, err = io.ReadFull(r, payload); err != nil {
		return 0, nil, err
	}
	if masked {
		for i := range payload {
			payload[i] ^= mask[i&3]
		}
	}
	return op, payload, nil
}

// wsServeEcho echoes frames on an upgraded connection until close.
func wsServeEcho(c net.Conn) {
	defer c.Close()
	r := bufio.NewReaderSize(c, 32<<10)
	w := bufio.NewWriterSize(c, 32<<10)
	buf := make([]byte, 4096)
	for {
		op, p, err := wsReadFrame(r, buf)
		if err != nil {
			return
		}
		if cap(p) > cap(buf) {
			buf = p
		}
		switch op {
		case wsOpClose:
			_ = wsWriteFrame(w, wsOpClose, p, nil)
			return
		case wsOpPing:
			err = wsWriteFrame(w, wsOpPong, p, nil)
		case wsOpPong:
		default:
			err = wsWriteFrame(w, op, p, nil)
		}
		if err != nil {
			return
		}
	}
}

// wsConn is the client side of an upgraded connection.
type wsConn struct {
	c    net.Conn
	r    *bufio.Reader
	w    *bufio.Writer
	mask [4]byte
	buf  []byte
}

// wsDial opens a WebSocket to http://addr/path (path with the query).
func wsDial(addr, path string, timeout time.Duration) (*wsConn, error) {
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return nil, err
	}
	var k [16]byte
	_, _ = rand.Read(k[:])
	key := base64.StdEncoding.EncodeToString(k[:])
	_ = c.SetDeadline(time.Now().Add(timeout))
	req := fmt.Sprintf("GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n", path, addr, key)
	if _, err := io.WriteString(c, req); err != nil {
		c.Close()
		return nil, err
	}
	r := bufio.NewReaderSize(c, 32<<10)
	status, err := r.ReadString('\n')
	if err != nil {
		c.Close()
		return nil, err
	}
	if !bytes.Contains([]byte(status), []byte(" 101 ")) {
		c.Close()
		return nil, fmt.Errorf("ws: upgrade refused: %q", bytes.TrimSpace([]byte(status)))
	}
	accept := ""
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			c.Close()
			return nil, err
		}
		line = string(bytes.TrimSpace([]byte(line)))
		if line == "" {
			break
		}
		if k, v, ok := cutHeader(line); ok && equalFold(k, "Sec-WebSocket-Accept") {
			accept = v
		}
	}
	if accept != wsAccept(key) {
		c.Close()
		return nil, errors.New("ws: bad Sec-WebSocket-Accept")
	}
	_ = c.SetDeadline(time.Time{})
	ws := &wsConn{c: c, r: r, w: bufio.NewWriterSize(c, 32<<10), buf: make([]byte, 4096)}
	_, _ = rand.Read(ws.mask[:])
	return ws, nil
}

// roundTrip sends msg and waits for its echo.
func (ws *wsConn) roundTrip(msg []byte) error {
	if err := wsWriteFrame(ws.w, wsOpBinary, msg, ws.mask[:]); err != nil {
		return err
	}
	for {
		op, p, err := wsReadFrame(ws.r, ws.buf)
		if err != nil {
			return err
		}
		if op == wsOpPing || op == wsOpPong {
			continue
		}
		if op == wsOpClose {
			return io.EOF
		}
		if len(p) != len(msg) {
			return fmt.Errorf("ws: echo of %d bytes, sent %d", len(p), len(msg))
		}
		return nil
	}
}

func (ws *wsConn) close() {
	_ = ws.c.SetDeadline(time.Now().Add(time.Second))
	_ = wsWriteFrame(ws.w, wsOpClose, []byte{0x03, 0xE8}, ws.mask[:])
	ws.c.Close()
}

func cutHeader(line string) (string, string, bool) {
	i := bytes.IndexByte([]byte(line), ':')
	if i < 0 {
		return "", "", false
	}
	return line[:i], string(bytes.TrimSpace([]byte(line[i+1:]))), true
}

func equalFold(a, b string) bool { return bytes.EqualFold([]byte(a), []byte(b)) }
