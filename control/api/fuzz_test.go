package api

import (
	"errors"
	"testing"
	"time"

	"github.com/privateconnect/pc/control/store"
)

// FuzzRequestBodies feeds arbitrary bytes to the strict decoder and the
// validators of the request types: nothing may panic, and every failure is
// a 400 *Error with a message.
func FuzzRequestBodies(f *testing.F) {
	for _, s := range []string{
		`{}`, `{"name":"x"}`, `{"name":"x","expiresIn":"7d","allowedPaths":["/a/*"],"allowedIps":["10.0.0.0/8"],"rateLimitPerMin":null}`,
		`{"agentId":"7c4e1a3e-2a4d-4f57-9a55-5c2c1c1f0e11","name":"web","targetHost":"h","targetPort":80}`,
		`{"target":"h:1","agentId":"x"}`, `{"target":{"host":"h","port":1}}`, `[`, `{"a":1}`, `null`, `"x"`, `{"name":"x"} 1`,
		`{"capabilities":[{"name":"gpu","metadata":{"a":1}}]}`, `{"expiresAt":"2099-01-01T00:00:00Z"}`, "\x00\xff",
	} {
		f.Add([]byte(s))
	}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	check := func(t *testing.T, err error) {
		if err == nil {
			return
		}
		var e *Error
		if !errors.As(err, &e) || e.Status != 400 || e.Message == "" {
			t.Fatalf("want a 400 *Error, got %T %v", err, err)
		}
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var sr shareRequest
		if err := decodeJSON(body, &sr); err != nil {
			check(t, err)
		} else {
			check(t, sr.apply(&store.Share{}, now, true))
		}
		var rs registerServiceRequest
		check(t, decodeJSON(body, &rs))
		var tr createTunnelRequest
		check(t, decodeJSON(body, &tr))
		var cr capabilitiesRequest
		check(t, decodeJSON(body, &cr))
		var kr createKeyRequest
		check(t, decodeJSON(body, &kr))
		var mr sendMessageRequest
		check(t, decodeJSON(body, &mr))
	})
}
