package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/netip"
	"regexp"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/valyala/fasthttp"
)

// MaxBodyBytes bounds API request bodies (413 above).
const MaxBodyBytes = 1 << 20

// checkBody enforces the content type and size rules of write methods.
func checkBody(ctx *fasthttp.RequestCtx, max int) *Error {
	body := ctx.Request.Body()
	if len(body) > max {
		return newError(fasthttp.StatusRequestEntityTooLarge, "request body is larger than %d bytes", max)
	}
	ct := string(ctx.Request.Header.ContentType())
	if ct == "" && len(body) == 0 {
		return nil
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil || mt != "application/json" { // api-v1.md: any other content type is a 415
		if ct == "" {
			ct = "none"
		}
		return newError(fasthttp.StatusUnsupportedMediaType, "Content-Type must be application/json (got %s)", ct)
	}
	return nil
}

// decodeJSON decodes a body strictly into v: unknown fields, trailing data,
// malformed JSON and wrong types are 400 errors naming the problem. An
// empty body decodes as {}.
func decodeJSON(body []byte, v any) error {
	if len(bytes.TrimSpace(body)) == 0 {
		body = []byte("{}")
	}
	if e := checkKeys(body, v); e != nil {
		return e
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return badRequest("malformed JSON: unexpected data after the top-level value")
	}
	return nil
}

func jsonError(err error) *Error {
	var ae *Error
	if errors.As(err, &ae) {
		return ae
	}
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return badRequest("malformed JSON at byte %d: %s", se.Offset, se.Error())
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return badRequest("malformed JSON: unexpected end of input")
	case errors.As(err, &te):
		field := te.Field
		if field == "" {
			return badRequest("request body must be a JSON %s, not %s", "object", te.Value)
		}
		msg := fmt.Sprintf("must be %s, not %s", jsonTypeName(te.Type.String()), te.Value)
		return &Error{Status: fasthttp.StatusBadRequest, Message: "invalid request: " + field + " " + msg,
			Details: []FieldError{{Field: field, Message: msg}}}
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		name := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return &Error{Status: fasthttp.StatusBadRequest, Message: fmt.Sprintf("invalid request: unknown field %q", name),
			Details: []FieldError{{Field: name, Message: "unknown field"}}}
	default:
		var pe *time.ParseError
		if errors.As(err, &pe) {
			return badRequest("invalid time %q: use RFC 3339, e.g. 2026-03-02T10:00:00Z", pe.Value)
		}
		return badRequest("malformed JSON: %s", strings.TrimPrefix(err.Error(), "json: "))
	}
}

func jsonTypeName(goType string) string {
	switch {
	case goType == "string", goType == "*string", strings.HasSuffix(goType, "Time"):
		return "a string"
	case strings.Contains(goType, "int"), strings.Contains(goType, "float"):
		return "a number"
	case strings.Contains(goType, "bool"):
		return "a boolean"
	case strings.HasPrefix(goType, "[]") || strings.HasPrefix(goType, "*[]"):
		return "an array"
	case strings.Contains(goType, "map"), strings.Contains(goType, "RawMessage"):
		return "an object"
	default:
		return "an object"
	}
}

// validator collects field errors.
type validator struct{ details []FieldError }

func (v *validator) add(field, format string, args ...any) {
	v.details = append(v.details, FieldError{Field: field, Message: fmt.Sprintf(format, args...)})
}

func (v *validator) check(ok bool, field, format string, args ...any) bool {
	if !ok {
		v.add(field, format, args...)
	}
	return ok
}

func (v *validator) strLen(s, field string, min, max int) bool {
	n := utf8.RuneCountInString(s)
	return v.check(n >= min && n <= max, field, "must be %d-%d characters", min, max)
}

// displayName checks a free-text name (of a key, share, agent, edge,
// workspace or capability): min-max characters, not only white space, no
// control characters (a name is printed in lists and terminals, where a
// NUL or an escape sequence does harm and a blank name cannot be told
// apart).
func (v *validator) displayName(s, field string, min, max int) bool {
	if !v.strLen(s, field, min, max) {
		return false
	}
	if strings.IndexFunc(s, unicode.IsControl) >= 0 {
		v.add(field, "must not contain control characters")
		return false
	}
	return v.check(s == "" || strings.TrimSpace(s) != "", field, "must not be only white space")
}

// optDisplayName is displayName for an optional field.
func (v *validator) optDisplayName(s *string, field string, min, max int) {
	if s != nil {
		v.displayName(*s, field, min, max)
	}
}

func (v *validator) optStrLen(s *string, field string, min, max int) {
	if s != nil {
		v.strLen(*s, field, min, max)
	}
}

func (v *validator) oneOf(s, field string, allowed ...string) bool {
	for _, a := range allowed {
		if s == a {
			return true
		}
	}
	v.add(field, "must be one of %s", strings.Join(allowed, ", "))
	return false
}

func (v *validator) intRange(n int, field string, min, max int) bool {
	return v.check(n >= min && n <= max, field, "must be between %d and %d", min, max)
}

func (v *validator) uuid(s, field string) bool {
	_, err := uuid.Parse(s)
	return v.check(err == nil && len(s) == 36, field, "must be a UUID")
}

func (v *validator) re(s string, re *regexp.Regexp, field, msg string) bool {
	return v.check(re.MatchString(s), field, "%s", msg)
}

// cidrs validates and normalizes CIDR (or bare IP) lists.
func (v *validator) cidrs(in []string, field string) []string {
	out := make([]string, 0, len(in))
	for i, s := range in {
		p, err := parseCIDR(s)
		if err != nil {
			v.add(fmt.Sprintf("%s[%d]", field, i), "must be an IPv4 or IPv6 CIDR, e.g. 10.0.0.0/8")
			continue
		}
		out = append(out, p.String())
	}
	return out
}

// parseCIDR parses a CIDR or a bare IP. An IPv4-mapped IPv6 prefix
// (::ffff:a.b.c.d, /96 and longer) is returned as the IPv4 prefix it maps:
// client addresses are compared unmapped (clientAddr), so the mapped form
// would never match; the edge's ip-allow does the same.
func parseCIDR(s string) (netip.Prefix, error) {
	var p netip.Prefix
	if strings.Contains(s, "/") {
		var err error
		if p, err = netip.ParsePrefix(s); err != nil {
			return p, err
		}
	} else {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, err
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	if p.Addr().Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	return p.Masked(), nil
}

func (v *validator) err() error {
	if len(v.details) == 0 {
		return nil
	}
	d := v.details[0]
	msg := "invalid request: " + d.Field + " " + d.Message
	if len(v.details) > 1 {
		msg += fmt.Sprintf(" (and %d more)", len(v.details)-1)
	}
	return &Error{Status: fasthttp.StatusBadRequest, Message: msg, Details: v.details}
}

var (
	reSubdomain = regexp.MustCompile(`^[a-z0-9-]{3,32}$`)
)
