package ingress

import (
	"net/http"

	"github.com/choreo-dev/choreo/internal/auth"
	"github.com/choreo-dev/choreo/internal/ratelimit"
)

// Guard is what the public entry applies before routing, in the ingress and in the all-in-one `choreo
// run` alike: authentication (auth.Policy; the verified principal goes into the request context) and,
// when limiter is not nil, the per-client limit on placing orders, per token subject or, without one,
// per client address.
func Guard(next http.Handler, a *auth.Authenticator, limiter *ratelimit.Limiter) http.Handler {
	if limiter != nil {
		next = limiter.Middleware(next, placesOrder, clientKey)
	}
	return a.Middleware(next)
}

func placesOrder(r *http.Request) bool {
	return r.Method == http.MethodPost && r.URL.Path == "/v1/orders"
}

// clientKey names the caller: its token's subject, else its address (prefixed, so a subject can never
// share an address's bucket).
func clientKey(r *http.Request) string {
	if p, ok := auth.FromContext(r.Context()); ok {
		return "sub:" + p.Subject
	}
	return "addr:" + ratelimit.ClientAddr(r)
}
