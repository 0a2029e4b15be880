package api

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Bodies are decoded as api-v1.md says: keys exactly as written, once each,
// and times in RFC 3339, each error naming its field.
func TestDecodeIsStrictAboutKeysAndTimes(t *testing.T) {
	type inner struct {
		PluginID string          `json:"pluginId"`
		Config   json.RawMessage `json:"config"`
	}
	type body struct {
		Name      string            `json:"name"`
		ExpiresAt *time.Time        `json:"expiresAt"`
		Plugins   []inner           `json:"plugins"`
		Labels    map[string]string `json:"labels"`
	}
	for _, tc := range []struct {
		name, body, field, msg string
	}{
		{"case", `{"NAME":"x"}`, "NAME", `unknown field "NAME" (field names are case-sensitive: "name")`},
		{"nested case", `{"plugins":[{"pluginID":"p"}]}`, "plugins[0].pluginID", `"plugins[0].pluginId"`},
		{"twice", `{"name":"a","name":"b"}`, "name", "name is given more than once"},
		{"twice, other case", `{"name":"a","Name":"b"}`, "Name", "case-sensitive"},
		{"date only", `{"expiresAt":"2027-01-01"}`, "expiresAt", `not "2027-01-01"`},
		{"words", `{"expiresAt":"tomorrow"}`, "expiresAt", "RFC 3339"},
		{"number", `{"expiresAt":12345}`, "expiresAt", "must be a time string in RFC 3339"},
		{"unknown", `{"nope":1}`, "nope", `unknown field "nope"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b body
			err := decodeJSON([]byte(tc.body), &b)
			require.NotNil(t, err)
			var e *Error
			require.ErrorAs(t, err, &e)
			assert.Equal(t, 400, e.Status)
			assert.Contains(t, e.Message, tc.msg)
			require.Len(t, e.Details, 1, e.Message)
			assert.Equal(t, tc.field, e.Details[0].Field)
		})
	}
	// An optional field (opt[T], which decodes itself) is checked as its T:
	// a share's expiresAt is one.
	var sr shareRequest
	err := decodeJSON([]byte(`{"expiresAt":"2027-01-01"}`), &sr)
	var e *Error
	require.ErrorAs(t, err, &e)
	require.Len(t, e.Details, 1, e.Message)
	assert.Equal(t, "expiresAt", e.Details[0].Field)
	assert.Contains(t, e.Message, `not "2027-01-01"`)
	require.Nil(t, decodeJSON([]byte(`{"expiresAt":null}`), &sr))
	require.Nil(t, decodeJSON([]byte(`{"expiresAt":"2027-01-01T00:00:00Z"}`), &sr))

	// What is right still decodes; config objects and label maps are free-form.
	var b body
	require.Nil(t, decodeJSON([]byte(`{"name":"x","expiresAt":"2027-01-01T00:00:00Z","plugins":[{"pluginId":"p","config":{"ANY":1,"any":2}}],"labels":{"A":"1","a":"2"}}`), &b))
	assert.Equal(t, "x", b.Name)
	assert.Equal(t, 2, len(b.Labels))
}
