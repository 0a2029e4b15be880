package jwt

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"testing"
	"time"

	jwtlib "github.com/golang-jwt/jwt/v5"

	"github.com/privateconnect/pc/sdk/plugin/plugintest"
)

func pemOf(t *testing.T, pub any) string {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

func TestHandle(t *testing.T) {
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	edPub, edKey, _ := ed25519.GenerateKey(rand.Reader)
	secret := "a-long-enough-hmac-secret"
	now := time.Now()
	good := jwtlib.MapClaims{"sub": "u1", "iss": "issuer", "aud": []string{"x", "share"}, "role": "admin",
		"exp": now.Add(time.Hour).Unix()}
	for _, k := range []struct {
		alg    string
		method jwtlib.SigningMethod
		sign   any
		key    string
	}{
		{"HS256", jwtlib.SigningMethodHS256, []byte(secret), secret},
		{"RS256", jwtlib.SigningMethodRS256, rsaKey, pemOf(t, &rsaKey.PublicKey)},
		{"ES256", jwtlib.SigningMethodES256, ecKey, pemOf(t, &ecKey.PublicKey)},
		{"EdDSA", jwtlib.SigningMethodEdDSA, edKey, pemOf(t, edPub)},
	} {
		cfg := map[string]any{"alg": k.alg, "key": k.key, "issuer": "issuer", "audience": "share", "claims": map[string]any{"role": "admin"}}
		sign := func(c jwtlib.MapClaims) string {
			s, err := jwtlib.NewWithClaims(k.method, c).SignedString(k.sign)
			if err != nil {
				t.Fatal(err)
			}
			return s
		}
		with := func(mod func(jwtlib.MapClaims)) string {
			c := jwtlib.MapClaims{}
			for kk, v := range good {
				c[kk] = v
			}
			mod(c)
			return sign(c)
		}
		run := func(auth string) plugintest.Result {
			return plugintest.Run(Handle, cfg, plugintest.Request{Headers: map[string]string{"Authorization": auth}})
		}
		if res := run("Bearer " + sign(good)); res.Action != plugintest.Allow {
			t.Fatalf("%s valid: %+v", k.alg, res)
		}
		for name, tok := range map[string]string{
			"expired":     with(func(c jwtlib.MapClaims) { c["exp"] = now.Add(-time.Hour).Unix() }),
			"no exp":      with(func(c jwtlib.MapClaims) { delete(c, "exp") }),
			"future nbf":  with(func(c jwtlib.MapClaims) { c["nbf"] = now.Add(time.Hour).Unix() }),
			"wrong iss":   with(func(c jwtlib.MapClaims) { c["iss"] = "other" }),
			"wrong aud":   with(func(c jwtlib.MapClaims) { c["aud"] = "other" }),
			"wrong claim": with(func(c jwtlib.MapClaims) { c["role"] = "user" }),
			"tampered":    sign(good) + "x",
		} {
			if res := run("Bearer " + tok); res.Status != 401 {
				t.Errorf("%s %s: %+v", k.alg, name, res)
			}
		}
		if res := run(sign(good)); res.Status != 401 {
			t.Errorf("%s without Bearer: %+v", k.alg, res)
		}
	}
	// alg "none" and algorithm confusion are refused.
	none, _ := jwtlib.NewWithClaims(jwtlib.SigningMethodNone, good).SignedString(jwtlib.UnsafeAllowNoneSignatureType)
	res := plugintest.Run(Handle, map[string]any{"alg": "HS256", "key": secret}, plugintest.Request{Headers: map[string]string{"Authorization": "Bearer " + none}})
	if res.Status != 401 {
		t.Fatalf("none: %+v", res)
	}
	if plugintest.Validate(Validate, `{"alg":"none","key":"x"}`) == nil || plugintest.Validate(Validate, `{"alg":"RS256","key":"secret"}`) == nil {
		t.Fatal("bad config accepted")
	}
}
