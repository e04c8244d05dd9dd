// Package auth verifies the bearer tokens of API callers: JWTs signed with a shared HS256 secret or with
// RS256/ES256 keys published at a JWKS endpoint (fetched, cached and refreshed), plus the static operator
// token. Its middleware puts the caller's Principal in the request context, where the services read it to
// scope what a customer sees; Policy says which routes are public, which need a customer and which an
// operator.
package auth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
	"github.com/rs/zerolog"
)

// MinSecretLength is the shortest HS256 secret accepted: 256 bits, the size of the hash (RFC 7518 3.2).
const MinSecretLength = 32

// Config selects how callers are authenticated. With neither HMACSecret nor JWKSURL authentication is not
// in force: every route is open, except that OperatorToken, when set, still guards the operator routes.
type Config struct {
	HMACSecret string // HS256 tokens signed with this secret
	JWKSURL    string // RS256/ES256 tokens signed with a key of this JWK Set
	// VerifyKey, instead: RS256 (an RSA key) or ES256 (an EC P-256 key) tokens signed with this public
	// key's private half; a process that signs its own tokens (the customer service) verifies with it.
	VerifyKey crypto.PublicKey
	// Optional verifies the tokens that are presented but lets requests without one through as if
	// authentication were off: the open dev mode of `choreo run`, whose tokens still say who the caller is.
	Optional      bool
	Issuer        string // when set, the iss claim must equal it
	Audience      string // when set, the aud claim must contain it
	OperatorToken string // a static bearer token that acts as an operator
	// JWKSRefresh is how often the JWK Set is fetched again (default 1h); a token with an unknown key id
	// also triggers a fetch, at most every 5 minutes, so a key rotation is picked up at once.
	JWKSRefresh time.Duration
	// HTTPClient fetches the JWK Set (default: a client with a 10 s timeout).
	HTTPClient *http.Client
}

// Enforced reports whether callers must present a valid token.
func (c Config) Enforced() bool { return c.hasKey() && !c.Optional }

func (c Config) hasKey() bool { return c.HMACSecret != "" || c.JWKSURL != "" || c.VerifyKey != nil }

// Validate checks that at most one key source is set and that it is usable.
func (c Config) Validate() error {
	var errs []error
	if n := btoi(c.HMACSecret != "") + btoi(c.JWKSURL != "") + btoi(c.VerifyKey != nil); n > 1 {
		errs = append(errs, errors.New("set one key source: an HMAC secret, a JWKS URL or a verification key"))
	}
	switch c.VerifyKey.(type) {
	case nil, *rsa.PublicKey, *ecdsa.PublicKey:
	default:
		errs = append(errs, fmt.Errorf("verification key %T: want RSA or ECDSA", c.VerifyKey))
	}
	if c.HMACSecret != "" && len(c.HMACSecret) < MinSecretLength {
		errs = append(errs, fmt.Errorf("the HMAC secret must be at least %d characters (e.g. `openssl rand -hex 32`)", MinSecretLength))
	}
	if c.JWKSURL != "" {
		if u, err := url.Parse(c.JWKSURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			errs = append(errs, fmt.Errorf("JWKS URL %q: want an absolute http(s) URL", c.JWKSURL))
		}
	}
	return errors.Join(errs...)
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// ErrInvalidToken means a bearer token was presented but not accepted.
var ErrInvalidToken = errors.New("invalid token")

// Authenticator verifies tokens. Close it to stop refreshing the JWK Set.
type Authenticator struct {
	cfg     Config
	parser  *jwt.Parser // nil when no JWTs are accepted
	keys    jwt.Keyfunc
	log     zerolog.Logger
	cancel  context.CancelFunc
	enforce bool
}

// New builds an Authenticator. With a JWKS URL it fetches the key set now (a failure is logged and retried,
// so the JWKS endpoint need not be up first) and refreshes it until Close.
func New(ctx context.Context, cfg Config, log zerolog.Logger) (*Authenticator, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	a := &Authenticator{cfg: cfg, log: log, cancel: func() {}, enforce: cfg.Enforced()}
	opts := []jwt.ParserOption{jwt.WithExpirationRequired(), jwt.WithLeeway(30 * time.Second)}
	if cfg.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(cfg.Issuer))
	}
	if cfg.Audience != "" {
		opts = append(opts, jwt.WithAudience(cfg.Audience))
	}
	switch {
	case cfg.HMACSecret != "":
		// Only HS256: a token claiming "none" or an asymmetric algorithm is refused before any key is used.
		a.parser = jwt.NewParser(append(opts, jwt.WithValidMethods([]string{"HS256"}))...)
		secret := []byte(cfg.HMACSecret)
		a.keys = func(*jwt.Token) (any, error) { return secret, nil }
	case cfg.VerifyKey != nil:
		method := "ES256"
		if _, ok := cfg.VerifyKey.(*rsa.PublicKey); ok {
			method = "RS256"
		}
		a.parser = jwt.NewParser(append(opts, jwt.WithValidMethods([]string{method}))...)
		key := cfg.VerifyKey
		a.keys = func(*jwt.Token) (any, error) { return key, nil }
	case cfg.JWKSURL != "":
		// Only asymmetric algorithms: an HS256 token "signed" with a public key is refused (key confusion).
		a.parser = jwt.NewParser(append(opts, jwt.WithValidMethods([]string{"RS256", "ES256"}))...)
		bg, cancel := context.WithCancel(context.WithoutCancel(ctx))
		client := cfg.HTTPClient
		if client == nil {
			client = &http.Client{Timeout: 10 * time.Second}
		}
		kf, err := keyfunc.NewDefaultOverrideCtx(bg, []string{cfg.JWKSURL}, keyfunc.Override{
			Client:          client,
			RefreshInterval: cfg.JWKSRefresh,
			RefreshErrorHandlerFunc: func(u string) func(context.Context, error) {
				return func(_ context.Context, err error) {
					log.Error().Err(err).Str("jwks_url", u).Msg("fetch JWK Set failed; keeping the keys fetched before")
				}
			},
		})
		if err != nil {
			cancel()
			return nil, fmt.Errorf("JWK Set %s: %w", cfg.JWKSURL, err)
		}
		a.keys, a.cancel = kf.Keyfunc, cancel
	}
	return a, nil
}

// Close stops refreshing the JWK Set.
func (a *Authenticator) Close() { a.cancel() }

// Enforced reports whether callers must present a valid token.
func (a *Authenticator) Enforced() bool { return a.enforce }

// operator is the principal of the static operator token.
var operator = Principal{Subject: RoleOperator, Roles: []string{RoleOperator}}

// Verify checks token and returns its principal; every failure wraps ErrInvalidToken.
func (a *Authenticator) Verify(token string) (Principal, error) {
	if a.cfg.OperatorToken != "" && subtle.ConstantTimeCompare([]byte(token), []byte(a.cfg.OperatorToken)) == 1 {
		return operator, nil
	}
	if a.parser == nil {
		return Principal{}, fmt.Errorf("%w: not the operator token", ErrInvalidToken)
	}
	var c claims
	if _, err := a.parser.ParseWithClaims(token, &c, a.keys); err != nil {
		return Principal{}, fmt.Errorf("%w: %w", ErrInvalidToken, err)
	}
	if c.Subject == "" {
		return Principal{}, fmt.Errorf("%w: no sub claim", ErrInvalidToken)
	}
	return Principal{Subject: c.Subject, Roles: c.Roles}, nil
}

// claims are the token's claims choreo reads.
type claims struct {
	jwt.RegisteredClaims
	Roles roles `json:"roles,omitempty"`
}

// roles is the roles claim: a list of names, or one name as a string.
type roles []string

func (r *roles) UnmarshalJSON(b []byte) error {
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		*r = roles{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return fmt.Errorf("roles claim: want a string or a list of strings: %w", err)
	}
	*r = many
	return nil
}

// Sign returns an HS256 token for subject with roles, valid for ttl, with iss and aud when set: the dev
// tokens of `choreo token` and of tests.
func Sign(secret, subject string, roleNames []string, ttl time.Duration, issuer, audience string) (string, error) {
	if len(secret) < MinSecretLength {
		return "", fmt.Errorf("sign token: the secret must be at least %d characters", MinSecretLength)
	}
	now := time.Now()
	c := claims{RegisteredClaims: jwt.RegisteredClaims{
		Subject: subject, Issuer: issuer,
		IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
	}, Roles: roleNames}
	if audience != "" {
		c.Audience = jwt.ClaimStrings{audience}
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString([]byte(secret))
	if err != nil {
		return "", fmt.Errorf("sign token: %w", err)
	}
	return s, nil
}
