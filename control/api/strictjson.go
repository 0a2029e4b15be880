package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
)

// checkKeys holds a request body to what encoding/json leaves loose, before
// it is decoded into v (api-v1.md: "field names are camelCase, exactly as
// written"; "unknown fields → 400"):
//   - encoding/json matches object keys to fields ignoring case, so
//     {"NAME":"x"} would set name; a key must match its field exactly;
//   - a key given twice would silently keep the last value;
//   - a time that is not an RFC 3339 string would be reported without the
//     field it belongs to.
//
// It walks the JSON along v's type (structs, pointers, slices, maps) and
// leaves everything else (syntax, types, unknown keys) to the decoder, which
// reports them. Errors name the field by its path, e.g. plugins[0].pluginId.
func checkKeys(body []byte, v any) *Error {
	t := reflect.TypeOf(v)
	if t == nil {
		return nil
	}
	return walkJSON(json.RawMessage(body), t, "")
}

func walkJSON(raw json.RawMessage, t reflect.Type, path string) *Error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if et, ok := optElem(t); ok {
		// opt[T] decodes itself, but its value is a T like any other.
		return walkJSON(raw, et, path)
	}
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return nil
	}
	switch {
	case t == timeType:
		var s string
		if raw[0] != '"' || json.Unmarshal(raw, &s) != nil {
			return invalidField(path, "must be a time string in RFC 3339, e.g. 2026-03-02T10:00:00Z")
		}
		if _, err := time.Parse(time.RFC3339Nano, s); err != nil {
			return invalidField(path, fmt.Sprintf("must be a time in RFC 3339, e.g. 2026-03-02T10:00:00Z, not %q", s))
		}
		return nil
	case t.Kind() == reflect.Struct:
		if raw[0] != '{' || t.Implements(unmarshalerType) || reflect.PointerTo(t).Implements(unmarshalerType) {
			return nil
		}
		fields := jsonFields(t)
		seen := map[string]bool{}
		dec := json.NewDecoder(bytes.NewReader(raw))
		if _, err := dec.Token(); err != nil { // {
			return nil
		}
		for dec.More() {
			tok, err := dec.Token()
			if err != nil {
				return nil
			}
			key, _ := tok.(string)
			var val json.RawMessage
			if dec.Decode(&val) != nil {
				return nil
			}
			name := join(path, key)
			if seen[key] {
				return invalidField(name, "is given more than once")
			}
			seen[key] = true
			if ft, ok := fields[key]; ok {
				if e := walkJSON(val, ft, name); e != nil {
					return e
				}
				continue
			}
			for exact := range fields {
				if strings.EqualFold(exact, key) {
					return &Error{Status: fasthttp.StatusBadRequest,
						Message: fmt.Sprintf("invalid request: unknown field %q (field names are case-sensitive: %q)", name, join(path, exact)),
						Details: []FieldError{{Field: name, Message: fmt.Sprintf("unknown field; did you mean %q?", exact)}}}
				}
			}
			// Unknown altogether: named with its whole path (the decoder
			// would say "foo" for plugins[0].foo).
			return &Error{Status: fasthttp.StatusBadRequest, Message: fmt.Sprintf("invalid request: unknown field %q", name),
				Details: []FieldError{{Field: name, Message: "unknown field"}}}
		}
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Uint64:
		// 80.0 or 8e1: encoding/json's "must be a number, not number 80.0"
		// says nothing useful.
		if (raw[0] == '-' || raw[0] >= '0' && raw[0] <= '9') && bytes.ContainsAny(raw, ".eE") {
			return invalidField(path, fmt.Sprintf("must be an integer, not %s", raw))
		}
	case t.Kind() == reflect.Slice && t.Elem().Kind() != reflect.Uint8, t.Kind() == reflect.Array:
		if raw[0] != '[' {
			return nil
		}
		var items []json.RawMessage
		if json.Unmarshal(raw, &items) != nil {
			return nil
		}
		for i, it := range items {
			if e := walkJSON(it, t.Elem(), fmt.Sprintf("%s[%d]", path, i)); e != nil {
				return e
			}
		}
	case t.Kind() == reflect.Map && t.Key().Kind() == reflect.String:
		if raw[0] != '{' {
			return nil
		}
		var m map[string]json.RawMessage
		if json.Unmarshal(raw, &m) != nil {
			return nil
		}
		for k, it := range m {
			if e := walkJSON(it, t.Elem(), join(path, k)); e != nil {
				return e
			}
		}
	}
	return nil
}

var unmarshalerType = reflect.TypeOf((*json.Unmarshaler)(nil)).Elem()

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// jsonFields maps a struct's JSON names (as encoding/json sees them,
// embedded structs included) to their types.
var fieldCache sync.Map // reflect.Type → map[string]reflect.Type

func jsonFields(t reflect.Type) map[string]reflect.Type {
	if m, ok := fieldCache.Load(t); ok {
		return m.(map[string]reflect.Type)
	}
	m := map[string]reflect.Type{}
	eachJSONField(t, func(name, _ string, f reflect.StructField) {
		if _, dup := m[name]; !dup {
			m[name] = f.Type
		}
	})
	fieldCache.Store(t, m)
	return m
}

// eachJSONField calls fn for each field of struct t that encoding/json
// reads and writes, with its JSON name and tag options; embedded structs
// without a tag are flattened. The OpenAPI schemas and the strict body
// check both walk fields this way.
func eachJSONField(t reflect.Type, fn func(name, opts string, f reflect.StructField)) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if f.Anonymous && tag == "" {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				eachJSONField(ft, fn)
				continue
			}
		}
		if !f.IsExported() || tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if name == "" {
			name = f.Name
		}
		fn(name, opts, f)
	}
}
