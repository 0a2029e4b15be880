package api_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestDocsInBrowser loads /docs in headless Chromium (driven through
// ChromeDriver's W3C WebDriver API), opens GET /health, presses "Try it out"
// and "Execute", and reads the status Swagger UI shows. It is skipped when
// chromium or chromedriver is not installed (Debian: chromium,
// chromium-driver) or with -short.
func TestDocsInBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	driver, err1 := exec.LookPath("chromedriver")
	browser, err2 := exec.LookPath("chromium")
	if err1 != nil || err2 != nil {
		t.Skip("chromium and chromedriver are not installed")
	}
	h := newHarness(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	cmd := exec.Command(driver, fmt.Sprintf("--port=%d", port))
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	wd := fmt.Sprintf("http://127.0.0.1:%d", port)
	hc := &http.Client{Timeout: 60 * time.Second}
	call := func(method, path string, body any) map[string]any {
		t.Helper()
		var rd *bytes.Reader
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
		req, _ := http.NewRequest(method, wd+path, rd)
		req.Header.Set("Content-Type", "application/json")
		res, err := hc.Do(req)
		require.NoError(t, err)
		defer res.Body.Close()
		var out map[string]any
		require.NoError(t, json.NewDecoder(res.Body).Decode(&out))
		require.Equal(t, 200, res.StatusCode, "%s %s: %v", method, path, out)
		return out
	}
	require.Eventually(t, func() bool {
		res, err := http.Get(wd + "/status")
		if err == nil {
			res.Body.Close()
		}
		return err == nil && res.StatusCode == 200
	}, 10*time.Second, 50*time.Millisecond)

	sess := call("POST", "/session", map[string]any{"capabilities": map[string]any{"alwaysMatch": map[string]any{
		"browserName": "chrome",
		"goog:chromeOptions": map[string]any{"binary": browser,
			"args": []string{"--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,2000"}},
	}}})
	id := sess["value"].(map[string]any)["sessionId"].(string)
	defer call("DELETE", "/session/"+id, map[string]any{})
	call("POST", "/session/"+id+"/timeouts", map[string]any{"script": 30000})
	call("POST", "/session/"+id+"/url", map[string]any{"url": h.base + "/docs"})
	const script = `
const done = arguments[arguments.length - 1];
const until = (f, ms) => new Promise((ok, fail) => {
  const t0 = Date.now();
  (function poll() {
    const v = f();
    if (v) return ok(v);
    if (Date.now() - t0 > ms) return fail(new Error("timeout"));
    setTimeout(poll, 50);
  })();
});
(async () => {
  window.__step = "op";
  const op = await until(() => document.querySelector('#operations-meta-health'), 15000);
  (op.querySelector('.opblock-summary-control') || op.querySelector('.opblock-summary')).click();
  window.__step = "tryout";
  // tryItOutEnabled opens operations in try-out mode; press the button if shown.
  const btn = await until(() => op.querySelector('.execute') || op.querySelector('.try-out__btn'), 5000);
  if (btn.classList.contains('try-out__btn')) btn.click();
  window.__step = "execute";
  (await until(() => op.querySelector('.execute'), 5000)).click();
  const cell = await until(() => op.querySelector('.live-responses-table tbody .response-col_status'), 10000);
  const body = op.querySelector('.live-responses-table .microlight, .live-responses-table pre');
  done({status: cell.textContent.trim(), body: body ? body.textContent : ""});
})().catch(e => done({error: String(e), step: window.__step, ids: Array.from(document.querySelectorAll('[id^=operations-]')).slice(0, 8).map(x => x.id).join(" ")}));
`
	out := call("POST", "/session/"+id+"/execute/async", map[string]any{"script": script, "args": []any{}})
	v := out["value"].(map[string]any)
	require.Nil(t, v["error"], "%v", v)
	require.Equal(t, "200", v["status"], "%v", v)
	require.Contains(t, v["body"], `"status"`)
}
