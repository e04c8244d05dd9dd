package main

import (
	"bytes"
	"encoding/json"
	"io"
	"maps"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/choreo-dev/choreo/cmd/choreo/system"
)

// TestSettingScopesNameCommands: a setting's readBy names real commands (a typo would silently take a
// setting from its command), every setting is read somewhere, and every hosted unit is a service command.
func TestSettingScopesNameCommands(t *testing.T) {
	names := commandNames()
	for _, s := range settings() {
		readers := 0
		for _, c := range commands() {
			if c.reads(s) {
				readers++
			}
		}
		if readers == 0 {
			t.Errorf("%s is read by no command", s.env)
		}
		for _, r := range s.readBy {
			if r != anyService && !slices.Contains(names, r) {
				t.Errorf("%s: readBy names %q, which is no command", s.env, r)
			}
		}
	}
	for _, spec := range system.Specs(system.Config{}) {
		c, ok := lookupCommand(spec.Name)
		if !ok || !c.service || !c.serves || !slices.Equal(c.needs, []string{"KAFKA_BROKERS", "DATABASE_URL"}) {
			t.Errorf("unit %s: command %+v; want a serving service command that needs KAFKA_BROKERS and DATABASE_URL", spec.Name, c)
		}
	}
}

func TestEachCommandReadsItsOwnSettings(t *testing.T) {
	// Every process with Kafka clients connects with the same TLS and SASL.
	kafkaConn := []string{"KAFKA_TLS", "KAFKA_TLS_CA_FILE", "KAFKA_TLS_CERT_FILE", "KAFKA_TLS_KEY_FILE", "KAFKA_SASL_MECHANISM", "KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD"}
	// Every hosted service exports spans when an OTLP endpoint is set.
	tracing := []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_HEADERS"}
	shared := slices.Concat([]string{"KAFKA_BROKERS", "DATABASE_URL", "HTTP_ADDR", "LOG_LEVEL", "LOG_FORMAT", "KAFKA_PARTITIONS", "CONSUMER_APPLY_INTERVAL", "CONSUMER_LINGER"}, kafkaConn, tracing)
	// The processes that serve the public API verify bearer tokens.
	auth := []string{"OPERATOR_TOKEN", "AUTH_HMAC_SECRET", "AUTH_JWKS_URL", "AUTH_ISSUER", "AUTH_AUDIENCE", "AUTH_DISABLED"}
	cases := map[string][]string{
		"order":        slices.Concat(shared, auth, []string{"SAGA_DEADLINE"}),
		"inventory":    slices.Concat(shared, auth),
		"payment":      append(slices.Clone(shared), "PAYMENT_LIMIT_CENTS"),
		"shipping":     append(slices.Clone(shared), "SHIPPING_COUNTRIES"),
		"notification": append(slices.Clone(shared), "SMTP_ADDR", "SMTP_FROM", "SMTP_USERNAME", "SMTP_PASSWORD"),
		"customer":     slices.Concat(shared, auth, []string{"AUTH_SIGNING_KEY_FILE", "AUTH_TOKEN_TTL"}),
		"orderview":    slices.Concat(shared, auth),
		"ingress":      slices.Concat([]string{"KAFKA_BROKERS", "HTTP_ADDR", "LOG_LEVEL", "LOG_FORMAT", "ORDER_URL", "ORDERVIEW_URL", "INVENTORY_URL", "CUSTOMER_URL", "RATE_LIMIT_PER_CLIENT"}, auth, kafkaConn),
		"token":        {"AUTH_HMAC_SECRET", "AUTH_ISSUER", "AUTH_AUDIENCE"},
		"topics":       slices.Concat([]string{"KAFKA_BROKERS", "KAFKA_PARTITIONS"}, kafkaConn),
		"replay":       slices.Concat([]string{"KAFKA_BROKERS", "DATABASE_URL", "LOG_LEVEL", "LOG_FORMAT", "DATA_DIR", "KAFKA_EMBEDDED_ADDR"}, kafkaConn),
		"healthcheck":  {"HTTP_ADDR"},
		"saga":         nil,
	}
	for name, want := range cases {
		c, _ := lookupCommand(name)
		if got := c.settingNames(); !equalSets(got, want) {
			t.Errorf("choreo %s reads %v; want %v", name, got, want)
		}
		// -h lists exactly those, as flags with the plain argument name (no back-quoted usage words).
		var help bytes.Buffer
		if err := run(t.Context(), []string{name, "-h"}, env(nil), io.Discard, &help); err == nil {
			t.Errorf("choreo %s -h: no flag.ErrHelp", name)
		}
		var listed []string
		for _, m := range regexp.MustCompile(`\(env ([A-Z_]+)\)`).FindAllStringSubmatch(help.String(), -1) {
			listed = append(listed, m[1])
		}
		if !equalSets(listed, want) {
			t.Errorf("choreo %s -h lists %v; want %v:\n%s", name, listed, want, help.String())
		}
		for _, line := range strings.Split(help.String(), "\n") {
			if strings.HasPrefix(line, "  -") && len(strings.Fields(line)) > 2 {
				t.Errorf("choreo %s -h: flag line %q has more than a name and an argument", name, line)
			}
		}
	}
	if run(t.Context(), []string{"payment", "-saga-deadline", "1m"}, env(nil), io.Discard, io.Discard) == nil {
		t.Error("choreo payment accepted -saga-deadline, which only order reads")
	}
}

func TestConfigCommand(t *testing.T) {
	check := func(vars map[string]string, args ...string) (string, error) {
		var out bytes.Buffer
		err := run(t.Context(), append([]string{"config"}, args...), env(vars), &out, io.Discard)
		return out.String(), err
	}
	good := map[string]string{
		"KAFKA_BROKERS": "kafka:9092", "DATABASE_URL": "postgres://choreo:hunter2@db:5432/order", "SAGA_DEADLINE": "2m",
		"AUTH_HMAC_SECRET": "a-secret-of-at-least-32-characters-long",
	}
	open := maps.Clone(good)
	delete(open, "AUTH_HMAC_SECRET")
	if _, err := check(open, "order"); err == nil || !strings.Contains(err.Error(), "AUTH_HMAC_SECRET") {
		t.Errorf("config order without any auth setting: %v; want the refusal the command would give at start", err)
	}
	out, err := check(good, "order", "-http-addr", "0.0.0.0:9000")
	if err != nil {
		t.Fatalf("config order: %v", err)
	}
	var got map[string]string
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("config order printed no JSON object: %v\n%s", err, out)
	}
	c, _ := lookupCommand("order")
	if keys := slices.Collect(maps.Keys(got)); !equalSets(keys, c.settingNames()) {
		t.Errorf("config order prints %v; want the settings order reads %v", keys, c.settingNames())
	}
	if got["SAGA_DEADLINE"] != "2m" || got["HTTP_ADDR"] != "0.0.0.0:9000" || got["LOG_LEVEL"] != "info" {
		t.Errorf("config order: env, flag or default not applied: %v", got)
	}
	if strings.Contains(out, "hunter2") || got["DATABASE_URL"] != "postgres://choreo:xxxxx@db:5432/order" {
		t.Errorf("config order does not mask the password: %s", got["DATABASE_URL"])
	}

	for name, tc := range map[string]struct {
		vars map[string]string
		args []string
		want []string
	}{
		"a setting the command does not read": {
			vars: map[string]string{"SAGA_DEADLINE": "5m", "ORDER_URL": "http://order:8080"}, args: []string{"ingress"},
			want: []string{"SAGA_DEADLINE is set, but 'choreo ingress' does not read it"},
		},
		"another service's setting": {
			vars: with(good, "PAYMENT_LIMIT_CENTS", "100"), args: []string{"order"},
			want: []string{"PAYMENT_LIMIT_CENTS is set, but 'choreo order' does not read it"},
		},
		"needs unset": {
			vars: nil, args: []string{"order"},
			want: []string{"KAFKA_BROKERS is unset", "DATABASE_URL is unset"},
		},
		"bad values, all reported": {
			vars: with(with(good, "SAGA_DEADLINE", "soon"), "HTTP_ADDR", "8080"), args: []string{"order"},
			want: []string{"SAGA_DEADLINE=\"soon\"", "HTTP_ADDR"},
		},
		"a flag of another command": {args: []string{"payment", "-saga-deadline", "1m"}, want: []string{"-saga-deadline"}},
		"no such command":           {args: []string{"frobnicate"}, want: []string{"frobnicate"}},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := check(tc.vars, tc.args...)
			if err == nil {
				t.Fatalf("config %v with %v passed", tc.args, tc.vars)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

func TestHelpJSONAndTopicsDryRun(t *testing.T) {
	var out bytes.Buffer
	if err := run(t.Context(), []string{"help", "-json"}, env(nil), &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	var cat catalog
	if err := json.Unmarshal(out.Bytes(), &cat); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, c := range cat.Commands {
		names = append(names, c.Name)
	}
	if !slices.Equal(names, commandNames()) || len(cat.Settings) != len(settings()) {
		t.Errorf("help -json: commands %v, %d settings; want %v, %d", names, len(cat.Settings), commandNames(), len(settings()))
	}

	out.Reset()
	if err := run(t.Context(), []string{"topics", "-dry-run"}, env(map[string]string{"KAFKA_PARTITIONS": "3"}), &out, io.Discard); err != nil {
		t.Fatalf("topics -dry-run without a broker: %v", err)
	}
	var topics []struct {
		Name       string
		Partitions int
		Configs    map[string]string
	}
	if err := json.Unmarshal(out.Bytes(), &topics); err != nil {
		t.Fatal(err)
	}
	want := system.Topics("", 3)
	if len(topics) != len(want) {
		t.Fatalf("topics -dry-run: %d topics, system.Topics %d", len(topics), len(want))
	}
	for i, w := range want {
		if g := topics[i]; g.Name != w.Name || g.Partitions != w.Partitions || g.Configs["retention.ms"] != w.Configs["retention.ms"] {
			t.Errorf("topic %d: %+v, want %+v", i, g, w)
		}
	}
}

func equalSets(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(slices.Compact(a), slices.Compact(b))
}

// with returns a copy of vars with k set to v.
func with(vars map[string]string, k, v string) map[string]string {
	out := maps.Clone(vars)
	out[k] = v
	return out
}
