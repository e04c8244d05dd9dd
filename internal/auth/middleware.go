package auth

import (
	"errors"
	"net/http"
	"strings"

	"github.com/choreo-dev/choreo/internal/httpapi"
)

// Access is what a route asks of its caller.
type Access int

const (
	AccessPublic   Access = iota // anyone: the catalog, health and metrics
	AccessCustomer               // a verified caller; the service scopes what it shows to the caller's customer
	AccessOperator               // a caller with the operator role
)

// Policy says what r's route asks of its caller. Anything not named here needs an operator, so a new
// route (dead-letter handling, say) is closed until it is listed.
func Policy(r *http.Request) Access {
	p := r.URL.Path
	switch {
	case p == "/healthz" || p == "/readyz" || p == "/metrics":
		return AccessPublic
	case p == "/v1/products" && (r.Method == http.MethodGet || r.Method == http.MethodHead):
		return AccessPublic
	case (p == "/v1/customers" || p == "/v1/tokens") && r.Method == http.MethodPost: // register, sign in
		return AccessPublic
	case p == "/.well-known/jwks.json" && (r.Method == http.MethodGet || r.Method == http.MethodHead):
		return AccessPublic
	case p == "/v1/customers/me" && (r.Method == http.MethodGet || r.Method == http.MethodHead || r.Method == http.MethodPatch):
		return AccessCustomer
	case p == "/v1/orders" && r.Method == http.MethodPost:
		return AccessCustomer
	case r.Method != http.MethodGet && r.Method != http.MethodHead:
		return AccessOperator
	case p == "/v1/orders" || p == "/orders" || oneSegmentUnder(p, "/v1/orders/") || oneSegmentUnder(p, "/orders/"):
		return AccessCustomer
	default:
		return AccessOperator
	}
}

func oneSegmentUnder(path, prefix string) bool {
	rest, ok := strings.CutPrefix(path, prefix)
	return ok && rest != "" && !strings.Contains(rest, "/")
}

// Middleware enforces Policy and puts the caller's Principal in the request context. When authentication
// is not in force every route is open, but the operator routes still need the operator token if one is set;
// in Config.Optional mode a token that is presented is still verified, and counts.
// A missing token answers 401, a rejected one 401 with error="invalid_token", a caller without the
// operator role on an operator route 403; all as problem+json with a WWW-Authenticate challenge.
func (a *Authenticator) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		need := Policy(r)
		_, presented := r.Header["Authorization"]
		optional := a.cfg.Optional && a.parser != nil && presented
		if need == AccessPublic || (!a.enforce && !optional && (need != AccessOperator || a.cfg.OperatorToken == "")) {
			next.ServeHTTP(w, r)
			return
		}
		token, err := bearer(r)
		if err != nil {
			challenge(w, r, http.StatusUnauthorized, err)
			return
		}
		p, err := a.Verify(token)
		if err != nil {
			a.log.Debug().Err(err).Str("path", r.URL.Path).Msg("token rejected")
			challenge(w, r, http.StatusUnauthorized, err)
			return
		}
		if need == AccessOperator && !p.Operator() && (a.enforce || a.cfg.OperatorToken != "") {
			challenge(w, r, http.StatusForbidden, errNotOperator)
			return
		}
		next.ServeHTTP(w, r.WithContext(NewContext(r.Context(), p)))
	})
}

var (
	errNoToken     = errors.New("this route needs an Authorization: Bearer token")
	errMalformed   = errors.New("the Authorization header is not 'Bearer <token>'")
	errNotOperator = errors.New("this route needs the operator role")
)

// bearer returns the token of r's Authorization header (RFC 6750 2.1).
func bearer(r *http.Request) (string, error) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return "", errNoToken
	}
	scheme, token, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(token) == "" {
		return "", errMalformed
	}
	return strings.TrimSpace(token), nil
}

// challenge answers with status, a Bearer challenge (RFC 6750 3) and a problem saying why. The reason a
// token was rejected stays in the debug log: it helps forgers more than callers.
func challenge(w http.ResponseWriter, r *http.Request, status int, err error) {
	value, detail := `Bearer realm="choreo"`, err.Error()
	switch {
	case errors.Is(err, ErrInvalidToken):
		value += `, error="invalid_token"`
		detail = "the bearer token is invalid or expired"
	case errors.Is(err, errMalformed):
		value += `, error="invalid_request"`
	case errors.Is(err, errNotOperator):
		value += `, error="insufficient_scope"`
	}
	w.Header().Set("WWW-Authenticate", value)
	httpapi.WriteProblem(w, r, httpapi.NewProblem(status, detail))
}
