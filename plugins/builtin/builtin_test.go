package builtin

import (
	"context"
	"encoding/base64"
	"errors"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	jwtlib "github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/privateconnect/pc/plugins"
	"github.com/privateconnect/pc/plugins/internal/wasmbuild"
	sdkplugin "github.com/privateconnect/pc/sdk/plugin"
)

func TestMain(m *testing.M) {
	code := m.Run()
	wasmbuild.Cleanup()
	os.Exit(code)
}

var (
	hostOnce sync.Once
	shared   *plugins.Host
	hostErr  error
)

// host loads every built-in, compiled from source (so the tests never run stale modules),
// into one host shared by the package's tests.
func host(t testing.TB) *plugins.Host {
	t.Helper()
	hostOnce.Do(func() {
		shared, hostErr = plugins.NewHost(context.Background(), plugins.Config{
			CacheDir: wasmbuild.CacheDir(),
			// Generous: tests run under -race on small shared machines.
			DefaultTimeout: 50 * time.Millisecond,
			PoolSize:       2,
		})
		if hostErr != nil {
			return
		}
		// Build every module, compile them into the cache (out of process under -race),
		// then load.
		dirs := append(Names(), "bundle")
		paths := make([]string, len(dirs))
		wasms := make([][]byte, len(dirs))
		errs := make([]error, len(dirs))
		var wg sync.WaitGroup
		sem := make(chan struct{}, 2)
		for i, n := range dirs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				sem <- struct{}{}
				defer func() { <-sem }()
				wasms[i], paths[i], errs[i] = wasmbuild.GoPath(n)
			}()
		}
		wg.Wait()
		if hostErr = errors.Join(errs...); hostErr != nil {
			return
		}
		if hostErr = wasmbuild.Precompile(wasmbuild.CacheDir(), true, paths...); hostErr != nil {
			return
		}
		for i, n := range names {
			// With Options, as the control plane loads them.
			errs[i] = shared.Load(context.Background(), ID(n), wasms[i], Options(n))
		}
		// The bundle as LoadBundle loads it on the edge.
		errs[len(names)] = shared.Load(context.Background(), BundleID, wasms[len(names)], Options(Password))
		hostErr = errors.Join(errs...)
	})
	require.NoError(t, hostErr)
	return shared
}

func hdrs(kv ...string) func(string) (string, bool) {
	return func(name string) (string, bool) {
		for i := 0; i+1 < len(kv); i += 2 {
			if strings.EqualFold(kv[i], name) {
				return kv[i+1], true
			}
		}
		return "", false
	}
}

func header(l [][2]string, name string) string {
	for _, kv := range l {
		if strings.EqualFold(kv[0], name) {
			return kv[1]
		}
	}
	return ""
}

type tcase struct {
	name   string
	plugin string
	config string
	req    plugins.Request
	want   plugins.Action
	status int
	check  func(t *testing.T, d plugins.Decision)
}

func run(t *testing.T, cases []tcase) {
	h := host(t)
	for _, tc := range cases {
		t.Run(tc.plugin+"/"+tc.name, func(t *testing.T) {
			req := tc.req
			if req.ShareID == "" {
				req.ShareID = "shr_" + strings.ReplaceAll(t.Name(), "/", "_")
			}
			chain := []plugins.Attachment{{PluginID: ID(tc.plugin), Config: []byte(tc.config)}}
			// The standalone module, then the same attachment as a step of the bundle (as the
			// edge runs it): the same decision, credited to the same plugin.
			for _, c := range [][]plugins.Attachment{chain, Bundle(chain)} {
				d := h.Evaluate(context.Background(), c, &req)
				require.Equal(t, tc.want, d.Action, "%s: err: %v, status %d, body %q", c[0].PluginID, d.Err, d.Status, d.Body)
				if tc.status != 0 {
					assert.Equal(t, tc.status, d.Status)
				}
				if d.Action != plugins.Allow {
					assert.Equal(t, ID(tc.plugin), d.PluginID, "the decision names the built-in")
				}
				if tc.check != nil {
					tc.check(t, d)
				}
			}
		})
	}
}

func TestAllowPaths(t *testing.T) {
	cfg := `{"paths":["/api/**","/docs/*.html"],"methods":["GET","POST"]}`
	run(t, []tcase{
		{name: "allowed", plugin: AllowPaths, config: cfg, req: plugins.Request{Method: "GET", Path: "/api/v1/x"}, want: plugins.Allow},
		{name: "head follows get", plugin: AllowPaths, config: cfg, req: plugins.Request{Method: "HEAD", Path: "/docs/a.html"}, want: plugins.Allow},
		{name: "method", plugin: AllowPaths, config: cfg, req: plugins.Request{Method: "DELETE", Path: "/api/x"}, want: plugins.Respond, status: 403},
		{name: "path", plugin: AllowPaths, config: cfg, req: plugins.Request{Method: "GET", Path: "/admin"}, want: plugins.Respond, status: 403},
		{name: "star stays in segment", plugin: AllowPaths, config: cfg, req: plugins.Request{Method: "GET", Path: "/docs/a/b.html"}, want: plugins.Respond, status: 403},
		{name: "dot dot", plugin: AllowPaths, config: cfg, req: plugins.Request{Method: "GET", Path: "/api/../admin"}, want: plugins.Respond, status: 403},
		{name: "encoded", plugin: AllowPaths, config: cfg, req: plugins.Request{Method: "GET", Path: "/api/%2E%2E/admin"}, want: plugins.Respond, status: 403},
		{name: "methods only", plugin: AllowPaths, config: `{"methods":["GET"]}`, req: plugins.Request{Method: "GET", Path: "/anything"}, want: plugins.Allow},
		{name: "prefix without star", plugin: AllowPaths, config: `{"paths":["/api"]}`, req: plugins.Request{Method: "GET", Path: "/api/x"}, want: plugins.Allow},
		{name: "prefix is whole segments", plugin: AllowPaths, config: `{"paths":["/api"]}`, req: plugins.Request{Method: "GET", Path: "/apiary"}, want: plugins.Respond, status: 403},
		{name: "bad config", plugin: AllowPaths, config: `{"paths":"x"}`, req: plugins.Request{Method: "GET", Path: "/"}, want: plugins.Error, status: 500},
	})
}

func TestIPAllow(t *testing.T) {
	cfg := `{"allow":["10.0.0.0/8","2001:db8::/32"],"deny":["10.9.0.0/16"]}`
	run(t, []tcase{
		{name: "v4", plugin: IPAllow, config: cfg, req: plugins.Request{ClientIP: "10.1.2.3"}, want: plugins.Allow},
		{name: "v6", plugin: IPAllow, config: cfg, req: plugins.Request{ClientIP: "2001:db8::7"}, want: plugins.Allow},
		{name: "mapped", plugin: IPAllow, config: cfg, req: plugins.Request{ClientIP: "::ffff:10.1.2.3"}, want: plugins.Allow},
		{name: "denied", plugin: IPAllow, config: cfg, req: plugins.Request{ClientIP: "10.9.1.1"}, want: plugins.Respond, status: 403},
		{name: "outside", plugin: IPAllow, config: cfg, req: plugins.Request{ClientIP: "192.0.2.1"}, want: plugins.Respond, status: 403},
		{name: "garbage", plugin: IPAllow, config: cfg, req: plugins.Request{ClientIP: "not-an-ip"}, want: plugins.Respond, status: 403},
	})
}

func TestRateLimit(t *testing.T) {
	h := host(t)
	chain := []plugins.Attachment{{PluginID: ID(RateLimit), Config: []byte(`{"limit":3,"windowSeconds":60}`)}}
	req := &plugins.Request{ShareID: "shr_rl", ClientIP: "192.0.2.9"}
	for i := range 3 {
		d := h.Evaluate(context.Background(), chain, req)
		require.Equal(t, plugins.Allow, d.Action, "call %d: %v", i, d.Err)
	}
	d := h.Evaluate(context.Background(), chain, req)
	require.Equal(t, plugins.Respond, d.Action, "%v", d.Err)
	assert.Equal(t, 429, d.Status)
	retry, err := strconv.Atoi(header(d.SetResponseHeaders, "Retry-After"))
	require.NoError(t, err)
	assert.True(t, retry >= 1 && retry <= 60)
	assert.Equal(t, "3", header(d.SetResponseHeaders, "X-RateLimit-Limit"))
	assert.Contains(t, string(d.Body), `"statusCode":429`)
	// Another client has its own counter.
	req2 := *req
	req2.ClientIP = "192.0.2.10"
	assert.Equal(t, plugins.Allow, h.Evaluate(context.Background(), chain, &req2).Action)
}

func TestPassword(t *testing.T) {
	hash := plugins.HashSharePassword("s3cret-pass")
	cfg := `{"passwordHash":"` + hash + `"}`
	basic := func(pw string) string { return "Basic " + base64.StdEncoding.EncodeToString([]byte("any:"+pw)) }
	var cookie string
	run(t, []tcase{
		{name: "challenge", plugin: Password, config: cfg, want: plugins.Respond, status: 401, check: func(t *testing.T, d plugins.Decision) {
			assert.Contains(t, header(d.SetResponseHeaders, "WWW-Authenticate"), "Basic realm=")
		}},
		{name: "browser form", plugin: Password, config: cfg, req: plugins.Request{Header: hdrs("Accept", "text/html,*/*")}, want: plugins.Respond, status: 401,
			check: func(t *testing.T, d plugins.Decision) {
				assert.Contains(t, string(d.Body), "<form")
				assert.Equal(t, "", header(d.SetResponseHeaders, "WWW-Authenticate"))
			}},
		{name: "basic", plugin: Password, config: cfg, req: plugins.Request{Header: hdrs("Authorization", basic("s3cret-pass"))}, want: plugins.Allow,
			check: func(t *testing.T, d plugins.Decision) {
				assert.Equal(t, []string{"Authorization"}, d.RemoveRequestHeaders)
			}},
		{name: "wrong", plugin: Password, config: cfg, req: plugins.Request{Header: hdrs("Authorization", basic("nope"))}, want: plugins.Respond, status: 401},
		{name: "login", plugin: Password, config: cfg, req: plugins.Request{ShareID: "shr_pw", Header: hdrs("X-Share-Password", base64.StdEncoding.EncodeToString([]byte("s3cret-pass")))},
			want: plugins.Respond, status: 204, check: func(t *testing.T, d plugins.Decision) {
				sc := header(d.SetResponseHeaders, "Set-Cookie")
				assert.Contains(t, sc, "HttpOnly")
				cookie = strings.SplitN(sc, ";", 2)[0]
			}},
	})
	run(t, []tcase{
		{name: "cookie", plugin: Password, config: cfg, req: plugins.Request{ShareID: "shr_pw", Header: hdrs("Cookie", cookie+"; theme=dark")}, want: plugins.Allow,
			check: func(t *testing.T, d plugins.Decision) {
				assert.Equal(t, "theme=dark", header(d.SetRequestHeaders, "Cookie"))
			}},
		{name: "cookie of another share", plugin: Password, config: cfg, req: plugins.Request{ShareID: "shr_other", Header: hdrs("Cookie", cookie)}, want: plugins.Respond, status: 401},
	})
}

func TestJWT(t *testing.T) {
	secret := "0123456789abcdef0123"
	tok, err := jwtlib.NewWithClaims(jwtlib.SigningMethodHS256, jwtlib.MapClaims{
		"sub": "u", "iss": "me", "exp": time.Now().Add(time.Hour).Unix(), "groups": []string{"a", "ops"},
	}).SignedString([]byte(secret))
	require.NoError(t, err)
	cfg := `{"alg":"HS256","key":"` + secret + `","issuer":"me","claims":{"groups":"ops"}}`
	run(t, []tcase{
		{name: "valid", plugin: JWT, config: cfg, req: plugins.Request{Header: hdrs("Authorization", "Bearer "+tok)}, want: plugins.Allow},
		{name: "valid again (cached)", plugin: JWT, config: cfg, req: plugins.Request{Header: hdrs("Authorization", "Bearer "+tok)}, want: plugins.Allow},
		{name: "missing", plugin: JWT, config: cfg, want: plugins.Respond, status: 401},
		{name: "tampered", plugin: JWT, config: cfg, req: plugins.Request{Header: hdrs("Authorization", "Bearer "+tok[:len(tok)-2]+"xx")}, want: plugins.Respond, status: 401},
		{name: "claim", plugin: JWT, config: `{"alg":"HS256","key":"` + secret + `","claims":{"groups":"admin"}}`,
			req: plugins.Request{Header: hdrs("Authorization", "Bearer "+tok)}, want: plugins.Respond, status: 401},
	})
}

func TestSignedLink(t *testing.T) {
	secret := "signed-link-secret-123"
	link, err := plugins.SignLink(secret, "/f/report.pdf", time.Now().Add(time.Hour))
	require.NoError(t, err)
	path, query, _ := strings.Cut(link, "?")
	expired, _ := plugins.SignLink(secret, "/f/report.pdf", time.Now().Add(-time.Hour))
	_, expiredQuery, _ := strings.Cut(expired, "?")
	cfg := `{"secret":"` + secret + `"}`
	run(t, []tcase{
		{name: "valid", plugin: SignedLink, config: cfg, req: plugins.Request{Path: path, Query: query}, want: plugins.Allow},
		{name: "other path", plugin: SignedLink, config: cfg, req: plugins.Request{Path: "/f/other.pdf", Query: query}, want: plugins.Respond, status: 403},
		{name: "expired", plugin: SignedLink, config: cfg, req: plugins.Request{Path: path, Query: expiredQuery}, want: plugins.Respond, status: 403},
		{name: "unsigned", plugin: SignedLink, config: cfg, req: plugins.Request{Path: path}, want: plugins.Respond, status: 403},
	})
}

func TestHeaders(t *testing.T) {
	run(t, []tcase{
		{name: "edits", plugin: Headers, config: `{"setRequest":{"X-Via":"share"},"removeRequest":["Cookie"],"setResponse":{"X-Frame-Options":"DENY"}}`,
			want: plugins.Allow, check: func(t *testing.T, d plugins.Decision) {
				assert.Equal(t, [][2]string{{"X-Via", "share"}}, d.SetRequestHeaders)
				assert.Equal(t, []string{"Cookie"}, d.RemoveRequestHeaders)
				assert.Equal(t, [][2]string{{"X-Frame-Options", "DENY"}}, d.SetResponseHeaders)
			}},
	})
}

func TestValidateConfigs(t *testing.T) {
	h := host(t)
	ctx := context.Background()
	for name, cfgs := range map[string][2]string{
		AllowPaths: {`{"paths":["/a/**"]}`, `{"paths":["a"]}`},
		IPAllow:    {`{"allow":["10.0.0.0/8"]}`, `{"allow":["10.0.0.0/99"]}`},
		Password:   {`{"passwordHash":"` + plugins.HashSharePassword("x") + `"}`, `{"passwordHash":"x"}`},
		RateLimit:  {`{"limit":5}`, `{"limit":-1}`},
		JWT:        {`{"alg":"HS256","key":"0123456789abcdef"}`, `{"alg":"none"}`},
		SignedLink: {`{"secret":"0123456789abcdef"}`, `{"secret":"x"}`},
		Headers:    {`{"setRequest":{"X":"1"}}`, `{"setRequest":{"Host":"x"}}`},
	} {
		assert.NoError(t, h.ValidateConfig(ctx, ID(name), []byte(cfgs[0])), name)
		err := h.ValidateConfig(ctx, ID(name), []byte(cfgs[1]))
		assert.ErrorIs(t, err, plugins.ErrInvalidConfig, name)
	}
}

func TestChain(t *testing.T) {
	assert.Empty(t, Chain(SharePolicy{}))
	hash := plugins.HashSharePassword("pw-pw-pw-pw")
	chain := Chain(SharePolicy{AllowedPaths: []string{"/api/**"}, AllowedMethods: []string{"GET"}, PasswordHash: hash,
		AllowedIPs: []string{"10.0.0.0/8"}, RateLimitPerMin: 100})
	var ids []string
	for _, a := range chain {
		ids = append(ids, a.PluginID)
	}
	assert.Equal(t, []string{"builtin:ip-allow", "builtin:rate-limit", "builtin:allow-paths", "builtin:password"}, ids)
	h := host(t)
	for _, a := range chain {
		require.NoError(t, h.ValidateConfig(context.Background(), a.PluginID, a.Config), a.PluginID)
	}
	d := h.Evaluate(context.Background(), chain, &plugins.Request{Method: "GET", Path: "/api/x", ClientIP: "10.0.0.1", ShareID: "shr_chain",
		Header: hdrs("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte("u:pw-pw-pw-pw")))})
	assert.Equal(t, plugins.Allow, d.Action, "%v", d.Err)
	d = h.Evaluate(context.Background(), chain, &plugins.Request{Method: "GET", Path: "/api/x", ClientIP: "11.0.0.1", ShareID: "shr_chain"})
	assert.Equal(t, 403, d.Status)
	assert.Equal(t, "builtin:ip-allow", d.PluginID)
}

func TestModule(t *testing.T) {
	_, err := Module("nope")
	assert.Error(t, err)
	assert.Len(t, Names(), 7)
	if _, err := Module(AllowPaths); err != nil {
		assert.ErrorIs(t, err, ErrNotBuilt)
		assert.Contains(t, err.Error(), "built-in plugin allow-paths not built: run make plugins")
	}
}

// Benchmarks: one call of each built-in on a pooled instance (target ≤ 3 µs), and the default
// chain (allow-paths + ip-allow + rate-limit).

func bench(b *testing.B, chain []plugins.Attachment, req *plugins.Request) {
	h := host(b)
	ctx := context.Background()
	var d plugins.Decision
	h.EvaluateInto(ctx, chain, req, &d)
	if d.Action == plugins.Error {
		b.Fatal(d.Err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	n := 0
	for b.Loop() {
		h.EvaluateInto(ctx, chain, req, &d)
		if n++; n%64 == 0 {
			runtime.Gosched() // see plugins' benchmarks: let wazero's per-call goroutines finish
		}
	}
	b.StopTimer()
	if d.Action == plugins.Error {
		b.Fatal(d.Err)
	}
}

func one(name, cfg string) []plugins.Attachment {
	return []plugins.Attachment{{PluginID: ID(name), Config: []byte(cfg)}}
}

var benchReq = &plugins.Request{Method: "GET", Path: "/api/v1/items/42", Query: "a=1", Host: "s.example.com",
	ClientIP: "10.1.2.3", ShareID: "shr_bench", Header: hdrs("Accept", "application/json")}

func BenchmarkAllowPaths(b *testing.B) {
	bench(b, one(AllowPaths, `{"paths":["/public/**","/api/**"],"methods":["GET","POST"]}`), benchReq)
}

func BenchmarkIPAllow(b *testing.B) {
	bench(b, one(IPAllow, `{"allow":["192.168.0.0/16","10.0.0.0/8"]}`), benchReq)
}

func BenchmarkRateLimit(b *testing.B) {
	bench(b, one(RateLimit, `{"limit":1000000000,"windowSeconds":60}`), benchReq)
}

func BenchmarkHeaders(b *testing.B) {
	bench(b, one(Headers, `{"setRequest":{"X-Via":"share"}}`), benchReq)
}

func BenchmarkPasswordBasic(b *testing.B) {
	req := *benchReq
	req.Header = hdrs("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte("u:bench-password")))
	bench(b, one(Password, `{"passwordHash":"`+plugins.HashSharePassword("bench-password")+`"}`), &req)
}

func BenchmarkJWT(b *testing.B) {
	secret := "0123456789abcdef0123"
	tok, _ := jwtlib.NewWithClaims(jwtlib.SigningMethodHS256, jwtlib.MapClaims{"exp": time.Now().Add(time.Hour).Unix()}).SignedString([]byte(secret))
	req := *benchReq
	req.Header = hdrs("Authorization", "Bearer "+tok)
	bench(b, one(JWT, `{"alg":"HS256","key":"`+secret+`"}`), &req)
}

func BenchmarkSignedLink(b *testing.B) {
	secret := "signed-link-secret-123"
	link, _ := plugins.SignLink(secret, benchReq.Path, time.Now().Add(time.Hour))
	_, q, _ := strings.Cut(link, "?")
	req := *benchReq
	req.Query = q
	bench(b, one(SignedLink, `{"secret":"`+secret+`"}`), &req)
}

func BenchmarkDefaultChain(b *testing.B) {
	chain := Chain(SharePolicy{AllowedPaths: []string{"/public/**", "/api/**"}, AllowedMethods: []string{"GET"},
		AllowedIPs: []string{"10.0.0.0/8"}, RateLimitPerMin: 100000})
	for i := range chain {
		if chain[i].PluginID == ID(RateLimit) { // never trip during the run
			chain[i].Config = []byte(`{"limit":1000000000,"windowSeconds":60,"key":"ip"}`)
		}
	}
	bench(b, chain, benchReq)
}

func BenchmarkDefaultChainBundle(b *testing.B) {
	chain := Chain(SharePolicy{AllowedPaths: []string{"/public/**", "/api/**"}, AllowedMethods: []string{"GET"},
		AllowedIPs: []string{"10.0.0.0/8"}, RateLimitPerMin: 100000})
	for i := range chain {
		if chain[i].PluginID == ID(RateLimit) {
			chain[i].Config = []byte(`{"limit":1000000000,"windowSeconds":60,"key":"ip"}`)
		}
	}
	bench(b, Bundle(chain), benchReq)
}

// TestDefaultChainAllocs pins the host's side of the default chain (allow-paths with
// methods, ip-allow, rate-limit, one bundle call) at no allocation: get_header looks a name
// up without copying it out of the guest (the method overrides allow-paths reads cost three
// allocations a request when it did), and trusted modules spawn no wazero goroutine.
func TestDefaultChainAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts differ under -race")
	}
	h := host(t)
	ctx := context.Background()
	chain := Bundle(Chain(SharePolicy{AllowedPaths: []string{"/public/**", "/api/**"}, AllowedMethods: []string{"GET", "POST"},
		AllowedIPs: []string{"10.0.0.0/8"}, RateLimitPerMin: 1_000_000_000}))
	req := *benchReq
	req.Method = "POST" // a method that frameworks override: the override headers are read
	var d plugins.Decision
	h.EvaluateInto(ctx, chain, &req, &d)
	require.Equal(t, plugins.Allow, d.Action, "%v", d.Err)
	allocs := testing.AllocsPerRun(200, func() { h.EvaluateInto(ctx, chain, &req, &d) })
	assert.Zero(t, allocs)
}

func TestBundleFusesRunsOfBuiltins(t *testing.T) {
	require.Equal(t, sdkplugin.MaxSteps, maxBundleSteps)
	custom := plugins.Attachment{PluginID: "plg_custom", Config: []byte(`{}`)}
	chain := []plugins.Attachment{
		{PluginID: ID(IPAllow), Config: []byte(`{"allow":["10.0.0.0/8"]}`)},
		{PluginID: ID(RateLimit)}, // no config: {}
		custom,
		{PluginID: ID(Headers), Config: []byte(`{"setResponse":{"X-A":"1"}}`)},
		{PluginID: ID(AllowPaths), Config: []byte(`not json`)}, // left alone: fails closed
		{PluginID: "builtin:unknown", Config: []byte(`{}`)},
	}
	got := Bundle(chain)
	require.Len(t, got, 5)
	assert.Equal(t, BundleID, got[0].PluginID)
	assert.Equal(t, []string{ID(IPAllow), ID(RateLimit)}, got[0].StepIDs)
	assert.JSONEq(t, `{"steps":[{"policy":"ip-allow","config":{"allow":["10.0.0.0/8"]}},{"policy":"rate-limit","config":{}}]}`, string(got[0].Config))
	assert.Equal(t, custom, got[1])
	assert.Equal(t, []string{ID(Headers)}, got[2].StepIDs)
	assert.Equal(t, chain[4], got[3])
	assert.Equal(t, chain[5], got[4])

	long := make([]plugins.Attachment, 20)
	for i := range long {
		long[i] = plugins.Attachment{PluginID: ID(Headers), Config: []byte(`{}`)}
	}
	got = Bundle(long)
	require.Len(t, got, 2)
	assert.Len(t, got[0].StepIDs, 16)
	assert.Len(t, got[1].StepIDs, 4)
	assert.NotNil(t, Bundle(nil))
	assert.Empty(t, Bundle(nil))
}

// Through the bundle, a chain decides as its built-ins one by one would: edits of earlier
// steps accumulate, the step that answers is named, and a step whose config fails is named
// in the error without tripping the bundle's breaker for every other share.
func TestBundleChain(t *testing.T) {
	h := host(t)
	ctx := context.Background()
	req := plugins.Request{Method: "GET", Path: "/private/x", ClientIP: "10.1.2.3", ShareID: "shr_bundle"}
	chain := Bundle([]plugins.Attachment{
		{PluginID: ID(IPAllow), Config: []byte(`{"allow":["10.0.0.0/8"]}`)},
		{PluginID: ID(Headers), Config: []byte(`{"setRequest":{"X-In":"1"},"setResponse":{"X-Out":"2"}}`)},
		{PluginID: ID(AllowPaths), Config: []byte(`{"paths":["/public/**"]}`)},
	})
	require.Len(t, chain, 1)
	d := h.Evaluate(ctx, chain, &req)
	require.Equal(t, plugins.Respond, d.Action, "%v", d.Err)
	assert.Equal(t, 403, d.Status)
	assert.Equal(t, ID(AllowPaths), d.PluginID)
	assert.Equal(t, "2", header(d.SetResponseHeaders, "X-Out"), "the headers step ran before the refusal")

	req.Path = "/public/x"
	d = h.Evaluate(ctx, chain, &req)
	require.Equal(t, plugins.Allow, d.Action, "%v", d.Err)
	assert.Equal(t, "1", header(d.SetRequestHeaders, "X-In"))

	req.ClientIP = "192.0.2.1"
	d = h.Evaluate(ctx, chain, &req)
	require.Equal(t, plugins.Respond, d.Action)
	assert.Equal(t, ID(IPAllow), d.PluginID)
	assert.Empty(t, header(d.SetResponseHeaders, "X-Out"), "the chain stopped at the first step")

	// A config that is JSON but not a valid ip-allow config: ERROR, named after ip-allow.
	bad := Bundle([]plugins.Attachment{{PluginID: ID(IPAllow), Config: []byte(`{"allow":["300.0.0.0/8"]}`)}})
	guestErrors := 0
	for range 30 { // past the breaker's threshold
		d = h.Evaluate(ctx, bad, &req)
		require.Equal(t, plugins.Error, d.Action)
		var perr *plugins.PluginError
		require.ErrorAs(t, d.Err, &perr)
		if perr.Kind == plugins.ErrNoInstance {
			// Each failure discards its instance; the pool refills in the background.
			assert.Equal(t, BundleID, perr.PluginID)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		guestErrors++
		assert.Equal(t, plugins.ErrGuestError, perr.Kind)
		assert.Equal(t, ID(IPAllow), perr.PluginID)
		assert.NotContains(t, perr.Detail, "step ", "the step tag is the host's, not the log's")
	}
	assert.Positive(t, guestErrors)
	req.ClientIP = "10.1.2.3"
	require.Eventually(t, func() bool {
		d = h.Evaluate(ctx, chain, &req)
		return d.Action == plugins.Allow
	}, 10*time.Second, 20*time.Millisecond, "other shares' built-ins still run (the breaker stayed closed)")
}
