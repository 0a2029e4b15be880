package api

import (
	"bytes"
	"compress/gzip"
	"io"
	"io/fs"
	"path"
	"strings"
	"sync"

	"github.com/swaggest/swgui/v5/static"
	"github.com/valyala/fasthttp"
)

// GET /docs serves Swagger UI (swagger-ui v5 from github.com/swaggest/swgui,
// embedded in the binary, no CDN) pointed at /openapi.json. Its CSP allows
// the page's own scripts and styles and requests to this origin only.

const docsCSP = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; font-src 'self' data:; frame-ancestors 'none'"

const docsHTML = `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Private Connect API</title>
<link rel="stylesheet" href="/docs/swagger-ui.css">
<link rel="icon" type="image/png" href="/docs/favicon-32x32.png">
</head>
<body>
<div id="swagger-ui"></div>
<script src="/docs/swagger-ui-bundle.js"></script>
<script src="/docs/swagger-ui-standalone-preset.js"></script>
<script src="/docs/init.js"></script>
</body>
</html>
`

const docsInit = `window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  tryItOutEnabled: true,
  persistAuthorization: true,
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
  layout: "StandaloneLayout"
});
`

var docsPlain sync.Map // name → decompressed bytes

func (a *API) serveDocs(ctx *fasthttp.RequestCtx) {
	ctx.Response.Header.Set("Content-Security-Policy", docsCSP)
	ctx.SetContentType("text/html; charset=utf-8")
	ctx.SetBodyString(docsHTML)
}

func (a *API) serveDocsAsset(ctx *fasthttp.RequestCtx) {
	ctx.Response.Header.Set("Content-Security-Policy", docsCSP)
	name, _ := ctx.UserValue("file").(string)
	name = path.Base(name)
	ctype := map[string]string{".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8", ".png": "image/png"}[path.Ext(name)]
	if name == "init.js" {
		ctx.SetContentType(ctype)
		ctx.SetBodyString(docsInit)
		return
	}
	if ctype == "" {
		writeError(ctx, notFound("file"))
		return
	}
	ctx.Response.Header.Set("Cache-Control", "public, max-age=86400")
	if b, err := fs.ReadFile(static.FS, name); err == nil {
		ctx.SetContentType(ctype)
		ctx.SetBody(b)
		return
	}
	gz, err := fs.ReadFile(static.FS, name+".gz")
	if err != nil {
		writeError(ctx, notFound("file"))
		return
	}
	ctx.SetContentType(ctype)
	if strings.Contains(string(ctx.Request.Header.Peek("Accept-Encoding")), "gzip") {
		ctx.Response.Header.Set("Content-Encoding", "gzip")
		ctx.Response.Header.Set("Vary", "Accept-Encoding")
		ctx.SetBody(gz)
		return
	}
	if v, ok := docsPlain.Load(name); ok {
		ctx.SetBody(v.([]byte))
		return
	}
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		writeError(ctx, toError(err, a.log, "/docs"))
		return
	}
	b, err := io.ReadAll(zr)
	if err != nil {
		writeError(ctx, toError(err, a.log, "/docs"))
		return
	}
	docsPlain.Store(name, b)
	ctx.SetBody(b)
}
