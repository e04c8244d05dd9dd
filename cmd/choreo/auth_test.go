package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/choreo-dev/choreo/internal/auth"
	"github.com/choreo-dev/choreo/internal/testing/testenv"
)

// TestPublicAPICommandsRefuseToStartOpen: the ingress and the services behind it do not start without a
// key source unless AUTH_DISABLED=true says so explicitly.
func TestPublicAPICommandsRefuseToStartOpen(t *testing.T) {
	infra := map[string]string{"KAFKA_BROKERS": "127.0.0.1:1", "DATABASE_URL": "postgres://x@127.0.0.1:1/x"}
	for _, name := range []string{"ingress", "order", "orderview", "inventory", "customer"} {
		t.Run(name, func(t *testing.T) {
			err := run(t.Context(), []string{name}, env(infra), io.Discard, io.Discard)
			if err == nil || !strings.Contains(err.Error(), "AUTH_DISABLED=true") {
				t.Fatalf("started without auth: %v", err)
			}
		})
	}
	// With AUTH_DISABLED=true the ingress starts and serves.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"ingress"}, env(map[string]string{"AUTH_DISABLED": "true", "HTTP_ADDR": addr}), io.Discard, io.Discard)
	}()
	testenv.Eventually(t, 10*time.Second, "the ingress's /healthz", func() bool {
		select {
		case err := <-done:
			t.Fatalf("ingress with AUTH_DISABLED=true stopped: %v", err)
		default:
		}
		resp, err := http.Get("http://" + addr + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("ingress: %v", err)
	}
}

func TestAuthSettings(t *testing.T) {
	secret := strings.Repeat("s", 40)
	for name, vars := range map[string]map[string]string{
		"two key sources":     {"AUTH_HMAC_SECRET": secret, "AUTH_JWKS_URL": "https://idp.example/jwks"},
		"short secret":        {"AUTH_HMAC_SECRET": "short"},
		"disabled and a key":  {"AUTH_HMAC_SECRET": secret, "AUTH_DISABLED": "true"},
		"disabled not a bool": {"AUTH_DISABLED": "maybe"},
		"bad JWKS URL":        {"AUTH_JWKS_URL": "idp.example/jwks"},
		"negative rate":       {"RATE_LIMIT_PER_CLIENT": "-1"},
		"rate not a number":   {"RATE_LIMIT_PER_CLIENT": "fast"},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := load(t, vars); err == nil {
				t.Fatalf("%v accepted", vars)
			}
		})
	}
	c, err := load(t, map[string]string{"AUTH_HMAC_SECRET": secret, "AUTH_ISSUER": "iss", "RATE_LIMIT_PER_CLIENT": "2.5"})
	if err != nil {
		t.Fatal(err)
	}
	if !c.authConfig().Enforced() || c.authConfig().Issuer != "iss" || c.RateLimit != 2.5 {
		t.Fatalf("settings not applied: %+v", c)
	}
	for k, v := range c.logFields() {
		if strings.Contains(v.(string), secret) {
			t.Fatalf("%s shows the HMAC secret in the start-up log", k)
		}
	}
}

// TestTokenCommand: `choreo token` prints a token that an API with the same settings accepts.
func TestTokenCommand(t *testing.T) {
	vars := map[string]string{"AUTH_HMAC_SECRET": strings.Repeat("k", 32), "AUTH_ISSUER": "choreo-dev", "AUTH_AUDIENCE": "choreo"}
	var out bytes.Buffer
	if err := run(t.Context(), []string{"token", "--sub", "alice", "--role", "operator", "--ttl", "1h"}, env(vars), &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	cfg, err := load(t, vars)
	if err != nil {
		t.Fatal(err)
	}
	a, err := auth.New(t.Context(), cfg.authConfig(), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	p, err := a.Verify(strings.TrimSpace(out.String()))
	if err != nil || p.Subject != "alice" || !p.Operator() {
		t.Fatalf("the printed token: %+v, %v", p, err)
	}
	if err := run(t.Context(), []string{"token", "--sub", "alice"}, env(nil), io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "AUTH_HMAC_SECRET") {
		t.Fatalf("without a secret: %v", err)
	}
	if err := run(t.Context(), []string{"token"}, env(vars), io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "--sub") {
		t.Fatalf("without --sub: %v", err)
	}
}
