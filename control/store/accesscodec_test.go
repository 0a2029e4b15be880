package store

import (
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestAccessRecordRoundTrip(t *testing.T) {
	at := time.Date(2026, 11, 27, 14, 3, 5, 123456789, time.UTC)
	for _, tc := range []struct {
		name string
		r    AccessRecord
	}{
		{"allowed", AccessRecord{ID: "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0", ShareID: "5a6b7c8d-9eaf-4b0c-8d1e-2f3a4b5c6d7e",
			EdgeID: "e1", At: at, IP: "203.0.113.9", UserAgent: "curl/8.5.0", Method: "GET", Path: "/api/items?x=1",
			StatusCode: 200, LatencyMs: 1.234, BytesOut: 1024, Decision: "allowed"}},
		{"denied", AccessRecord{ID: "r1", ShareID: "sh", At: at, IP: "::1", Method: "POST", Path: "/", StatusCode: 401,
			Decision: "denied", DeniedBy: "password"}},
		{"another decision, unicode, negatives", AccessRecord{ID: "r2", ShareID: "sh", At: at, UserAgent: "ünïcødé \x00 ✓",
			StatusCode: -1, LatencyMs: -0.5, BytesOut: -7, Decision: "shadowed"}},
		{"zero time and empty fields", AccessRecord{ID: "", ShareID: "sh"}},
		{"far times", AccessRecord{ID: "r3", ShareID: "sh", At: time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC),
			LatencyMs: math.MaxFloat64, BytesOut: math.MaxInt64, StatusCode: math.MaxInt32}},
		{"long path", AccessRecord{ID: "r4", ShareID: "sh", At: at, Path: "/" + strings.Repeat("a", 2047)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := accessKey("ws", &tc.r)
			v := appendAccessRecord(nil, &tc.r)
			var got AccessRecord
			require.NoError(t, decodeAccessRecord(k, v, &got))
			require.Equal(t, tc.r, got)
			require.True(t, got.At.Equal(tc.r.At))
		})
	}
}

// The binary form is what makes access records cheap to keep: it must stay
// well below the JSON it replaced for a record of the control plane's shape.
func TestAccessRecordSize(t *testing.T) {
	r := AccessRecord{ID: "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0", ShareID: "5a6b7c8d-9eaf-4b0c-8d1e-2f3a4b5c6d7e",
		EdgeID: "9f8e7d6c-5b4a-4938-8271-605f4e3d2c1b", At: time.Now().UTC(), IP: "127.0.0.1", UserAgent: "fasthttp",
		Method: "GET", Path: "/small", StatusCode: 200, LatencyMs: 1.2, BytesOut: 1024, Decision: "allowed"}
	js, err := json.Marshal(&r)
	require.NoError(t, err)
	bin := appendAccessRecord(nil, &r)
	t.Logf("JSON %d bytes, binary %d bytes", len(js), len(bin))
	require.Less(t, len(bin), len(js)/3)
}

// Records stored as JSON before the binary form decode as they always did.
func TestAccessRecordJSONStillDecodes(t *testing.T) {
	r := AccessRecord{ID: "r1", ShareID: "sh", EdgeID: "e", At: time.Date(2026, 3, 2, 10, 0, 0, 5, time.UTC), IP: "10.0.0.1",
		Method: "GET", Path: "/p", StatusCode: 200, LatencyMs: 3.5, BytesOut: 9, Decision: "denied", DeniedBy: "ip-allow"}
	js, err := json.Marshal(&r)
	require.NoError(t, err)
	got := AccessRecord{Path: "stale"}
	require.NoError(t, decodeAccessRecord(accessKey("ws", &r), js, &got))
	require.Equal(t, r, got)
}

func TestAccessRecordMalformed(t *testing.T) {
	r := AccessRecord{ID: "r1", ShareID: "sh", EdgeID: "e", At: time.Unix(1, 0).UTC(), Path: "/p", Decision: "allowed"}
	k := accessKey("ws", &r)
	good := appendAccessRecord(nil, &r)
	require.Equal(t, []byte{accessRecordV1, 2, 0}, good[:3], "1 s, 0 ns")
	cases := map[string][]byte{
		"empty":            nil,
		"unknown version":  append([]byte{9}, good[1:]...),
		"trailing byte":    append(append([]byte(nil), good...), 0),
		"bad decision":     func() []byte { b := append([]byte(nil), good...); b[len(b)-2] = 7; return b }(),
		"huge string":      {accessRecordV1, 2, 0, 0xff, 0xff, 0xff, 0xff, 0x0f},
		"nanoseconds ≥ 1s": append([]byte{accessRecordV1, 2, 0x80, 0x94, 0xeb, 0xdc, 0x03}, good[3:]...), // sec 1, nsec 1e9
		"bad json":         []byte(`{"id":`),
	}
	for i := 1; i < len(good); i++ {
		cases[fmt.Sprintf("truncated to %d bytes", i)] = good[:i]
	}
	for name, v := range cases {
		var got AccessRecord
		require.Error(t, decodeAccessRecord(k, v, &got), name)
	}
	var got AccessRecord
	require.Error(t, decodeAccessRecord([]byte("w/ws/alog/sh"), good, &got), "a key without the time-id part")
	require.Error(t, decodeAccessRecord([]byte("no-slash"), good, &got))
}

// FuzzAccessRecordDecode: whatever bytes a store holds under an access
// record's key, decoding never panics, and what decodes encodes back to a
// value that decodes the same.
func FuzzAccessRecordDecode(f *testing.F) {
	r := AccessRecord{ID: "r1", ShareID: "sh", EdgeID: "e", At: time.Date(2026, 3, 2, 10, 0, 0, 5, time.UTC), IP: "10.0.0.1",
		Method: "GET", Path: "/p", StatusCode: 200, LatencyMs: 3.5, BytesOut: 9, Decision: "denied", DeniedBy: "ip-allow"}
	f.Add([]byte("w/ws/alog/sh/7fffffffffffffff-r1"), appendAccessRecord(nil, &r))
	js, _ := json.Marshal(&r)
	f.Add([]byte("w/ws/alog/sh/7fffffffffffffff-r1"), js)
	f.Add([]byte("x"), []byte{accessRecordV1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, k, v []byte) {
		var got AccessRecord
		if decodeAccessRecord(k, v, &got) != nil || len(v) == 0 || v[0] != accessRecordV1 {
			return
		}
		var again AccessRecord
		if err := decodeAccessRecord(k, appendAccessRecord(nil, &got), &again); err != nil {
			t.Fatalf("re-encoded record does not decode: %v", err)
		}
		if !(again.At.Equal(got.At) && again.ID == got.ID && again.ShareID == got.ShareID && again.Path == got.Path &&
			again.Decision == got.Decision && again.StatusCode == got.StatusCode && again.BytesOut == got.BytesOut &&
			math.Float64bits(again.LatencyMs) == math.Float64bits(got.LatencyMs)) {
			t.Fatalf("round trip changed the record: %+v → %+v", got, again)
		}
	})
}
