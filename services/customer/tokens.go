package customer

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/choreo-dev/choreo/internal/auth"
)

// TokenConfig says how POST /v1/tokens signs access tokens: with HMACSecret (HS256, the secret the API
// verifies with), or with SigningKey (RS256 for an RSA key, ES256 for an EC P-256 key), whose public half
// GET /.well-known/jwks.json publishes for verifiers (AUTH_JWKS_URL). With neither, no tokens are issued.
type TokenConfig struct {
	HMACSecret string
	SigningKey crypto.Signer
	Issuer     string        // the iss claim (default "choreo")
	Audience   string        // the aud claim, when set
	TTL        time.Duration // how long a token is valid (default 1h)
}

// DefaultIssuer is the iss of the tokens when TokenConfig.Issuer is empty.
const DefaultIssuer = "choreo"

// signer issues access tokens.
type signer struct {
	method jwt.SigningMethod
	key    any
	kid    string
	jwk    map[string]string // the public key as a JWK, nil for HS256
	cfg    TokenConfig
}

// newSigner returns the token signer of cfg, or nil when cfg names no key.
func newSigner(cfg TokenConfig) (*signer, error) {
	if cfg.Issuer == "" {
		cfg.Issuer = DefaultIssuer
	}
	if cfg.TTL <= 0 {
		cfg.TTL = time.Hour
	}
	switch {
	case cfg.HMACSecret != "" && cfg.SigningKey != nil:
		return nil, errors.New("tokens: set an HMAC secret or a signing key, not both")
	case cfg.HMACSecret != "":
		if len(cfg.HMACSecret) < auth.MinSecretLength {
			return nil, fmt.Errorf("tokens: the HMAC secret must be at least %d characters", auth.MinSecretLength)
		}
		return &signer{method: jwt.SigningMethodHS256, key: []byte(cfg.HMACSecret), cfg: cfg}, nil
	case cfg.SigningKey != nil:
		return asymmetricSigner(cfg)
	}
	return nil, nil
}

func asymmetricSigner(cfg TokenConfig) (*signer, error) {
	der, err := x509.MarshalPKIXPublicKey(cfg.SigningKey.Public())
	if err != nil {
		return nil, fmt.Errorf("tokens: public key: %w", err)
	}
	sum := sha256.Sum256(der)
	b64 := base64.RawURLEncoding
	s := &signer{key: cfg.SigningKey, kid: b64.EncodeToString(sum[:12]), cfg: cfg}
	switch k := cfg.SigningKey.(type) {
	case *rsa.PrivateKey:
		if k.N.BitLen() < 2048 {
			return nil, fmt.Errorf("tokens: an RSA key of %d bits is too short (2048 at least)", k.N.BitLen())
		}
		s.method = jwt.SigningMethodRS256
		s.jwk = map[string]string{"kty": "RSA", "alg": "RS256", "n": b64.EncodeToString(k.N.Bytes()),
			"e": b64.EncodeToString(big.NewInt(int64(k.E)).Bytes())}
	case *ecdsa.PrivateKey:
		if k.Curve != elliptic.P256() {
			return nil, errors.New("tokens: an EC key must be on P-256 (ES256)")
		}
		pub, err := k.PublicKey.ECDH()
		if err != nil {
			return nil, fmt.Errorf("tokens: EC public key: %w", err)
		}
		point := pub.Bytes() // 0x04 || X || Y, 32 bytes each
		s.method = jwt.SigningMethodES256
		s.jwk = map[string]string{"kty": "EC", "alg": "ES256", "crv": "P-256",
			"x": b64.EncodeToString(point[1:33]), "y": b64.EncodeToString(point[33:])}
	default:
		return nil, fmt.Errorf("tokens: unsupported signing key %T (want RSA or EC P-256)", cfg.SigningKey)
	}
	s.jwk["kid"], s.jwk["use"] = s.kid, "sig"
	return s, nil
}

// claims are those of an access token.
type claims struct {
	jwt.RegisteredClaims
	Roles []string `json:"roles,omitempty"`
}

// sign returns an access token for the customer id with roles.
func (s *signer) sign(subject string, roles []string, now time.Time) (string, error) {
	c := claims{RegisteredClaims: jwt.RegisteredClaims{
		Subject: subject, Issuer: s.cfg.Issuer,
		IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(s.cfg.TTL)),
	}, Roles: roles}
	if s.cfg.Audience != "" {
		c.Audience = jwt.ClaimStrings{s.cfg.Audience}
	}
	t := jwt.NewWithClaims(s.method, c)
	if s.kid != "" {
		t.Header["kid"] = s.kid
	}
	signed, err := t.SignedString(s.key)
	if err != nil {
		return "", fmt.Errorf("sign token for %s: %w", subject, err)
	}
	return signed, nil
}

// jwks is the JWK Set of the verification keys: empty for HS256, whose secret is never published.
func (s *signer) jwks() map[string][]map[string]string {
	set := map[string][]map[string]string{"keys": {}}
	if s != nil && s.jwk != nil {
		set["keys"] = append(set["keys"], s.jwk)
	}
	return set
}

// LoadSigningKey reads a PEM private key for signing tokens: PKCS#8 ("PRIVATE KEY"), PKCS#1 ("RSA PRIVATE
// KEY") or SEC 1 ("EC PRIVATE KEY"), e.g. from `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256`.
func LoadSigningKey(path string) (crypto.Signer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read signing key: %w", err)
	}
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, fmt.Errorf("signing key %s: no PEM block", path)
	}
	var key any
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("signing key %s: PEM block %q is not a private key", path, block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("signing key %s: %w", path, err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("signing key %s: %T cannot sign", path, key)
	}
	if _, err := newSigner(TokenConfig{SigningKey: signer}); err != nil {
		return nil, fmt.Errorf("signing key %s: %w", path, err)
	}
	return signer, nil
}
