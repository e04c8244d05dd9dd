package auth

import "context"

// RoleOperator is the role that may read every order, change the catalog and handle dead letters.
const RoleOperator = "operator"

// Principal is who a request acts for: the verified token's subject (the customer) and its roles.
type Principal struct {
	Subject string
	Roles   []string
}

// Has reports whether p holds role.
func (p Principal) Has(role string) bool {
	for _, r := range p.Roles {
		if r == role {
			return true
		}
	}
	return false
}

// Operator reports whether p may act for every customer.
func (p Principal) Operator() bool { return p.Has(RoleOperator) }

type principalKey struct{}

// NewContext returns ctx carrying p.
func NewContext(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// FromContext returns the principal the middleware verified for this request. There is none when
// authentication is not in force (the open mode of `choreo run` or AUTH_DISABLED=true), or on a public route.
func FromContext(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}

// Customer returns the only customer whose orders the request may see, or all=true when it may see every
// customer's: an operator, or no authentication in force.
func Customer(ctx context.Context) (customer string, all bool) {
	p, ok := FromContext(ctx)
	if !ok || p.Operator() {
		return "", true
	}
	return p.Subject, false
}
