package store

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"
)

// Access records are the store's most numerous values (one per request
// through a share), so they are kept in a compact binary form instead of
// JSON: no field names, numbers as varints, and no record or share id,
// which the key already holds (w/<ws>/alog/<share>/<inverted time>-<id>).
// With the UUIDs the control plane uses that is about 90 bytes of value
// instead of 330, and encoding it costs a few hundred nanoseconds less.
// Records written as JSON before (their first byte is '{') still decode.
//
//	u8      accessRecordV1
//	varint  accessed at: Unix seconds
//	uvarint accessed at: nanoseconds
//	string  edge id, IP address, user agent, method, path (uvarint length, bytes)
//	varint  status code
//	u64     latency in milliseconds (IEEE 754 bits, little endian)
//	varint  bytes out
//	u8      decision: 0 allowed, 1 denied, 2 another (a string follows)
//	string  denied by
const accessRecordV1 = 1

// maxAccessField bounds one string of a stored record when decoding (the
// API truncates every field far below it).
const maxAccessField = 1 << 16

func appendAccessRecord(b []byte, r *AccessRecord) []byte {
	b = append(b, accessRecordV1)
	b = binary.AppendVarint(b, r.At.Unix())
	b = binary.AppendUvarint(b, uint64(r.At.Nanosecond()))
	for _, s := range [...]string{r.EdgeID, r.IP, r.UserAgent, r.Method, r.Path} {
		b = appendField(b, s)
	}
	b = binary.AppendVarint(b, int64(r.StatusCode))
	b = binary.LittleEndian.AppendUint64(b, math.Float64bits(r.LatencyMs))
	b = binary.AppendVarint(b, r.BytesOut)
	switch r.Decision {
	case "allowed":
		b = append(b, 0)
	case "denied":
		b = append(b, 1)
	default:
		b = appendField(append(b, 2), r.Decision)
	}
	return appendField(b, r.DeniedBy)
}

func appendField(b []byte, s string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

var errAccessRecord = errors.New("malformed access record")

// decodeAccessRecord decodes the record stored under k.
func decodeAccessRecord(k, v []byte, r *AccessRecord) error {
	if len(v) > 0 && v[0] == '{' {
		*r = AccessRecord{}
		return json.Unmarshal(v, r) // written before the binary form
	}
	if len(v) == 0 || v[0] != accessRecordV1 {
		return fmt.Errorf("%w: unknown encoding", errAccessRecord)
	}
	share, id, ok := accessKeyIDs(k)
	if !ok {
		return fmt.Errorf("%w: key %q is not an access record's", errAccessRecord, k)
	}
	d := fieldReader{b: v[1:]}
	sec, nsec := d.varint(), d.uvarint()
	out := AccessRecord{ID: id, ShareID: share, EdgeID: d.str(), IP: d.str(), UserAgent: d.str(), Method: d.str(), Path: d.str()}
	status := d.varint()
	out.LatencyMs = math.Float64frombits(d.u64())
	out.BytesOut = d.varint()
	switch d.byte() {
	case 0:
		out.Decision = "allowed"
	case 1:
		out.Decision = "denied"
	case 2:
		out.Decision = d.str()
	default:
		d.fail()
	}
	out.DeniedBy = d.str()
	if d.err == nil && len(d.b) > 0 {
		d.fail() // trailing bytes
	}
	if d.err == nil && (nsec >= 1e9 || status < math.MinInt32 || status > math.MaxInt32) {
		d.fail()
	}
	if d.err != nil {
		return d.err
	}
	out.At = time.Unix(sec, int64(nsec)).UTC()
	out.StatusCode = int(status)
	*r = out
	return nil
}

// accessKeyIDs returns the share and record ids of an access record's key.
func accessKeyIDs(k []byte) (share, id string, ok bool) {
	i := bytes.LastIndexByte(k, '/')
	if i < 0 {
		return "", "", false
	}
	_, rid, ok := bytes.Cut(k[i+1:], []byte{'-'})
	j := bytes.LastIndexByte(k[:i], '/')
	if !ok || j < 0 {
		return "", "", false
	}
	return string(k[j+1 : i]), string(rid), true
}

// fieldReader reads the fields of an encoded record; the first error sticks
// and every later read returns a zero value.
type fieldReader struct {
	b   []byte
	err error
}

func (d *fieldReader) fail() {
	if d.err == nil {
		d.err = errAccessRecord
	}
	d.b = nil
}

func (d *fieldReader) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *fieldReader) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *fieldReader) u64() uint64 {
	if len(d.b) < 8 {
		d.fail()
		return 0
	}
	v := binary.LittleEndian.Uint64(d.b)
	d.b = d.b[8:]
	return v
}

func (d *fieldReader) byte() byte {
	if len(d.b) < 1 {
		d.fail()
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *fieldReader) str() string {
	n := d.uvarint()
	if n > maxAccessField || n > uint64(len(d.b)) {
		d.fail()
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}
