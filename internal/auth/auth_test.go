package auth_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/rs/zerolog"

	"github.com/choreo-dev/choreo/internal/auth"
	"github.com/choreo-dev/choreo/internal/testing/testenv"
)

const secret = "0123456789abcdef0123456789abcdef-test-only"

func newAuth(t *testing.T, cfg auth.Config) *auth.Authenticator {
	t.Helper()
	a, err := auth.New(t.Context(), cfg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	return a
}

// sign signs claims with method and key, setting kid when given.
func sign(t testing.TB, method jwt.SigningMethod, key any, kid string, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, claims)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// valid are the claims of a token that passes every check of an Authenticator with issuer "iss" and
// audience "choreo".
func valid(sub string, extra ...any) jwt.MapClaims {
	c := jwt.MapClaims{"sub": sub, "iss": "iss", "aud": "choreo", "exp": time.Now().Add(time.Hour).Unix(), "iat": time.Now().Unix()}
	for i := 0; i+1 < len(extra); i += 2 {
		c[extra[i].(string)] = extra[i+1]
	}
	return c
}

func TestHMACTokens(t *testing.T) {
	a := newAuth(t, auth.Config{HMACSecret: secret, Issuer: "iss", Audience: "choreo"})
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	hs := func(c jwt.MapClaims) string { return sign(t, jwt.SigningMethodHS256, []byte(secret), "", c) }

	p, err := a.Verify(hs(valid("alice", "roles", []string{"operator", "x"})))
	if err != nil || p.Subject != "alice" || !p.Operator() || !slices.Equal(p.Roles, []string{"operator", "x"}) {
		t.Fatalf("valid token: %+v, %v", p, err)
	}
	if p, err := a.Verify(hs(valid("bob", "roles", "operator"))); err != nil || !p.Operator() {
		t.Fatalf("roles as one string: %+v, %v", p, err)
	}
	if p, err := a.Verify(hs(valid("carol"))); err != nil || p.Operator() || len(p.Roles) != 0 {
		t.Fatalf("no roles: %+v, %v", p, err)
	}
	signed, err := auth.Sign(secret, "dave", []string{"operator"}, time.Minute, "iss", "choreo")
	if err != nil {
		t.Fatal(err)
	}
	if p, err := a.Verify(signed); err != nil || p.Subject != "dave" || !p.Operator() {
		t.Fatalf("auth.Sign's token: %+v, %v", p, err)
	}

	noneToken := sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, "", valid("mallory", "roles", "operator"))
	rejected := map[string]string{
		"expired":       hs(valid("alice", "exp", time.Now().Add(-time.Hour).Unix())),
		"no exp":        hs(jwt.MapClaims{"sub": "alice", "iss": "iss", "aud": "choreo"}),
		"not yet valid": hs(valid("alice", "nbf", time.Now().Add(time.Hour).Unix())),
		"wrong issuer":  hs(valid("alice", "iss", "someone-else")),
		"no issuer":     hs(jwt.MapClaims{"sub": "alice", "aud": "choreo", "exp": time.Now().Add(time.Hour).Unix()}),
		"wrong aud":     hs(valid("alice", "aud", "another-api")),
		"no sub":        hs(jwt.MapClaims{"iss": "iss", "aud": "choreo", "exp": time.Now().Add(time.Hour).Unix()}),
		"wrong secret":  sign(t, jwt.SigningMethodHS256, []byte(secret+"x"), "", valid("alice")),
		"HS384":         sign(t, jwt.SigningMethodHS384, []byte(secret), "", valid("alice")),
		"alg none":      noneToken,
		"RS256":         sign(t, jwt.SigningMethodRS256, rsaKey, "", valid("alice")),
		"garbage":       "not.a.jwt",
		"bad roles":     hs(valid("alice", "roles", 7)),
	}
	for name, tok := range rejected {
		t.Run(name, func(t *testing.T) {
			if p, err := a.Verify(tok); !errors.Is(err, auth.ErrInvalidToken) {
				t.Fatalf("accepted: %+v, %v", p, err)
			}
		})
	}
}

func TestOperatorToken(t *testing.T) {
	for name, cfg := range map[string]auth.Config{
		"open":     {OperatorToken: "op-s3cret"},
		"enforced": {OperatorToken: "op-s3cret", HMACSecret: secret},
	} {
		t.Run(name, func(t *testing.T) {
			a := newAuth(t, cfg)
			if p, err := a.Verify("op-s3cret"); err != nil || !p.Operator() {
				t.Fatalf("operator token: %+v, %v", p, err)
			}
			if _, err := a.Verify("op-s3creT"); !errors.Is(err, auth.ErrInvalidToken) {
				t.Fatalf("near miss accepted: %v", err)
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	bad := map[string]auth.Config{
		"both sources": {HMACSecret: secret, JWKSURL: "https://idp.example/jwks"},
		"short secret": {HMACSecret: "short"},
		"relative url": {JWKSURL: "/jwks.json"},
		"other scheme": {JWKSURL: "ftp://idp.example/jwks"},
	}
	for name, cfg := range bad {
		if err := cfg.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
		if _, err := auth.New(t.Context(), cfg, zerolog.Nop()); err == nil {
			t.Errorf("%s: New accepted it", name)
		}
	}
	if _, err := auth.Sign("short", "alice", nil, time.Minute, "", ""); err == nil {
		t.Error("Sign accepted a short secret")
	}
}

// jwks is a JWKS endpoint serving whatever keys it currently has, counting its fetches.
type jwks struct {
	mu      sync.Mutex
	keys    []map[string]string
	fetches atomic.Int32
	url     string
}

func newJWKS(t *testing.T) *jwks {
	t.Helper()
	j := &jwks{}
	j.url = serveJWKS(t, j)
	return j
}

// serveJWKS serves j's keys until the test ends and returns the set's URL.
func serveJWKS(t testing.TB, j *jwks) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		j.fetches.Add(1)
		j.mu.Lock()
		defer j.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"keys": j.keys})
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/.well-known/jwks.json"
}

func (j *jwks) serve(keys ...map[string]string) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.keys = keys
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func rsaJWK(kid string, k *rsa.PublicKey) map[string]string {
	return map[string]string{"kty": "RSA", "kid": kid, "alg": "RS256", "use": "sig", "n": b64(k.N.Bytes()), "e": b64(big.NewInt(int64(k.E)).Bytes())}
}

func ecJWK(kid string, k *ecdsa.PublicKey) map[string]string {
	raw, err := k.Bytes() // uncompressed point: 0x04 || X || Y
	if err != nil {
		panic(err)
	}
	n := (len(raw) - 1) / 2
	return map[string]string{"kty": "EC", "kid": kid, "alg": "ES256", "use": "sig", "crv": "P-256", "x": b64(raw[1 : 1+n]), "y": b64(raw[1+n:])}
}

func TestJWKSTokens(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	otherRSA, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	j := newJWKS(t)
	j.serve(rsaJWK("r1", &rsaKey.PublicKey), ecJWK("e1", &ecKey.PublicKey))
	a := newAuth(t, auth.Config{JWKSURL: j.url, Issuer: "iss", Audience: "choreo"})

	if p, err := a.Verify(sign(t, jwt.SigningMethodRS256, rsaKey, "r1", valid("alice"))); err != nil || p.Subject != "alice" {
		t.Fatalf("RS256: %+v, %v", p, err)
	}
	if p, err := a.Verify(sign(t, jwt.SigningMethodES256, ecKey, "e1", valid("bob", "roles", []string{"operator"}))); err != nil || !p.Operator() {
		t.Fatalf("ES256: %+v, %v", p, err)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(&rsaKey.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	rejected := map[string]string{
		// Key confusion: HS256 "signed" with the RSA public key, which any client can fetch.
		"HS256 with the public key": sign(t, jwt.SigningMethodHS256, pubDER, "r1", valid("mallory", "roles", "operator")),
		"HS256 with the modulus":    sign(t, jwt.SigningMethodHS256, rsaKey.PublicKey.N.Bytes(), "r1", valid("mallory")),
		"alg none":                  sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, "r1", valid("mallory")),
		"signed by another key":     sign(t, jwt.SigningMethodRS256, otherRSA, "r1", valid("mallory")),
		"RSA key named as EC key":   sign(t, jwt.SigningMethodRS256, rsaKey, "e1", valid("mallory")),
		"expired":                   sign(t, jwt.SigningMethodRS256, rsaKey, "r1", valid("alice", "exp", time.Now().Add(-time.Hour).Unix())),
		"wrong audience":            sign(t, jwt.SigningMethodRS256, rsaKey, "r1", valid("alice", "aud", "other")),
		"wrong issuer":              sign(t, jwt.SigningMethodES256, ecKey, "e1", valid("alice", "iss", "other")),
	}
	for name, tok := range rejected {
		t.Run(name, func(t *testing.T) {
			if p, err := a.Verify(tok); !errors.Is(err, auth.ErrInvalidToken) {
				t.Fatalf("accepted: %+v, %v", p, err)
			}
		})
	}
}

// TestJWKSKeyRotation: the identity provider replaces its key; the first token signed with the new key
// makes the Authenticator fetch the set again, and the retired key stops working.
func TestJWKSKeyRotation(t *testing.T) {
	oldKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	newKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	j := newJWKS(t)
	j.serve(rsaJWK("2024", &oldKey.PublicKey))
	a := newAuth(t, auth.Config{JWKSURL: j.url})
	if _, err := a.Verify(sign(t, jwt.SigningMethodRS256, oldKey, "2024", valid("alice"))); err != nil {
		t.Fatalf("before rotation: %v", err)
	}
	before := j.fetches.Load()

	j.serve(ecJWK("2025", &newKey.PublicKey))
	if p, err := a.Verify(sign(t, jwt.SigningMethodES256, newKey, "2025", valid("alice"))); err != nil || p.Subject != "alice" {
		t.Fatalf("token of the new key: %+v, %v", p, err)
	}
	if after := j.fetches.Load(); after <= before {
		t.Fatalf("JWKS fetched %d times before and %d after the unknown key id; want a refresh", before, after)
	}
	if _, err := a.Verify(sign(t, jwt.SigningMethodRS256, oldKey, "2024", valid("alice"))); !errors.Is(err, auth.ErrInvalidToken) {
		t.Fatalf("retired key still accepted: %v", err)
	}
}

// TestJWKSRefreshesOnSchedule: without any unknown key id, the set is fetched again every JWKSRefresh.
func TestJWKSRefreshesOnSchedule(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	j := newJWKS(t)
	j.serve(rsaJWK("k", &key.PublicKey))
	newAuth(t, auth.Config{JWKSURL: j.url, JWKSRefresh: 20 * time.Millisecond})
	testenv.Eventually(t, 10*time.Second, "three fetches of the JWK Set", func() bool { return j.fetches.Load() >= 3 })
}
