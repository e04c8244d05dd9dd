package auth_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"testing"

	"github.com/golang-jwt/jwt/v5"
	"github.com/rs/zerolog"

	"github.com/choreo-dev/choreo/internal/auth"
)

// BenchmarkVerify measures what verifying one bearer token adds to a request, per key source.
func BenchmarkVerify(b *testing.B) {
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	j := &jwks{}
	j.serve(rsaJWK("r", &rsaKey.PublicKey), ecJWK("e", &ecKey.PublicKey))
	srvURL := serveJWKS(b, j)
	cases := []struct {
		name  string
		cfg   auth.Config
		token string
	}{
		{"HS256", auth.Config{HMACSecret: secret}, sign(b, jwt.SigningMethodHS256, []byte(secret), "", valid("alice"))},
		{"RS256-2048", auth.Config{JWKSURL: srvURL}, sign(b, jwt.SigningMethodRS256, rsaKey, "r", valid("alice"))},
		{"ES256", auth.Config{JWKSURL: srvURL}, sign(b, jwt.SigningMethodES256, ecKey, "e", valid("alice"))},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			a, err := auth.New(b.Context(), c.cfg, zerolog.Nop())
			if err != nil {
				b.Fatal(err)
			}
			defer a.Close()
			for b.Loop() {
				if _, err := a.Verify(c.token); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
