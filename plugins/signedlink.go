package plugins

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// SignLinkSignature is the signed-link built-in's signature of path with an expiry:
// base64url(HMAC-SHA256(secret, path + "\n" + exp)), no padding.
func SignLinkSignature(secret, path string, exp int64) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(path + "\n" + strconv.FormatInt(exp, 10)))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// SignLink adds "exp" and "sig" query parameters (the signed-link built-in's defaults) to
// link, a path with an optional query ("/files/report.pdf?v=2"), valid until expires. The
// signature covers the path only, so it stays valid for the same path whatever the other
// parameters.
func SignLink(secret, link string, expires time.Time) (string, error) {
	path, rawQuery, _ := strings.Cut(link, "?")
	if !strings.HasPrefix(path, "/") {
		return "", fmt.Errorf("plugins: sign link: %q is not a path", link)
	}
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		return "", fmt.Errorf("plugins: sign link: %w", err)
	}
	exp := expires.Unix()
	q.Set("exp", strconv.FormatInt(exp, 10))
	q.Set("sig", SignLinkSignature(secret, path, exp))
	return path + "?" + q.Encode(), nil
}
