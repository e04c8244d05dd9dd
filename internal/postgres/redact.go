package postgres

import (
	"net/url"
	"regexp"
)

const mask = "xxxxx"

var (
	keywordPassword  = regexp.MustCompile(`(?i)(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)`)
	userInfoPassword = regexp.MustCompile(`:[^:@/]+@`)
)

// Redact returns the connection string with its passwords masked, for logs
// and errors. It handles URLs (user info, password and sslpassword query
// parameters), keyword/value strings ("host=... password=...") and, as
// best it can, URLs too broken to parse.
func Redact(connString string) string {
	u, err := url.Parse(connString)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		masked := keywordPassword.ReplaceAllString(connString, "${1}"+mask)
		return userInfoPassword.ReplaceAllString(masked, ":"+mask+"@")
	}
	if _, has := u.User.Password(); has {
		u.User = url.UserPassword(u.User.Username(), mask)
	}
	q := u.Query()
	for _, key := range []string{"password", "sslpassword"} {
		if q.Has(key) {
			q.Set(key, mask)
			u.RawQuery = q.Encode()
		}
	}
	return u.String()
}
