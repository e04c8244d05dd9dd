package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/choreo-dev/choreo/internal/auth"
)

// tokenCommand is `choreo token --sub alice [--role operator] [--ttl 24h]`: a dev token signed with
// AUTH_HMAC_SECRET, with AUTH_ISSUER and AUTH_AUDIENCE when set, so it passes the checks of a process
// with the same settings.
func tokenCommand() command {
	var sub string
	var roles []string
	ttl := 24 * time.Hour
	return command{
		name: "token", needs: []string{"AUTH_HMAC_SECRET"},
		doc: "print an HS256 bearer token signed with AUTH_HMAC_SECRET: --sub CUSTOMER [--role operator] [--ttl 24h]",
		flags: func(fs *flag.FlagSet, _ func(string) string) {
			fs.StringVar(&sub, "sub", "", "the token's subject: the customer it acts for")
			fs.Func("role", "a role of the token (repeatable; operator reads every order and changes the catalog)", func(v string) error {
				roles = append(roles, v)
				return nil
			})
			fs.DurationVar(&ttl, "ttl", ttl, "how long the token is valid")
		},
		run: func(_ context.Context, cfg Config, _ []string, stdout io.Writer) error {
			if cfg.AuthHMACSecret == "" {
				return errors.New("set AUTH_HMAC_SECRET (the secret the API verifies tokens with)")
			}
			if strings.TrimSpace(sub) == "" {
				return errors.New("usage: choreo token --sub CUSTOMER [--role operator] [--ttl 24h]")
			}
			token, err := auth.Sign(cfg.AuthHMACSecret, sub, roles, ttl, cfg.AuthIssuer, cfg.AuthAudience)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintln(stdout, token)
			return err
		},
	}
}
