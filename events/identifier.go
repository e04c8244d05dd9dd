package events

import "regexp"

var identifier = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$`)

// IdentifierRule says in words what IsIdentifier accepts, for error messages.
const IdentifierRule = "1-128 letters, digits or . _ : -, starting with a letter or digit"

// IsIdentifier reports whether s may name a customer or a product (sku): 1-128 letters, digits or . _ : -,
// starting with a letter or digit. Such names travel in events and in URLs without escaping.
func IsIdentifier(s string) bool { return identifier.MatchString(s) }
