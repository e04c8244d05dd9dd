package main

import (
	"bytes"
	"context"
	"flag"
	"io"
	"os"
	"strings"
	"testing"
	"time"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

// load reads the settings as `choreo run` does, which reads all but the ingress's.
func load(t *testing.T, vars map[string]string, args ...string) (Config, error) {
	t.Helper()
	return loadAs(t, "run", vars, args...)
}

func loadAs(t *testing.T, cmdName string, vars map[string]string, args ...string) (Config, error) {
	t.Helper()
	cmd, ok := lookupCommand(cmdName)
	if !ok {
		t.Fatalf("no command %s", cmdName)
	}
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return loadConfig(fs, cmd, args, env(vars))
}

func TestConfigDefaultsEnvAndFlags(t *testing.T) {
	c, err := load(t, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.HTTPAddr != "127.0.0.1:8080" || c.SagaDeadline != 5*time.Minute || c.PaymentLimitCents != 1_000_000 ||
		c.KafkaPartitions != 6 || !c.SeedCatalog || len(c.KafkaBrokers) != 0 || strings.Join(c.ShippingCountries, ",") != "US,CA,GB,DE,FR,NL,SE,JP,AU" {
		t.Fatalf("defaults: %+v", c)
	}
	c, err = load(t, map[string]string{"KAFKA_BROKERS": "a:9092, b:9092", "SAGA_DEADLINE": "90s", "HTTP_ADDR": "0.0.0.0:9000"}, "-http-addr", "127.0.0.1:7000")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(c.KafkaBrokers, ",") != "a:9092,b:9092" || c.SagaDeadline != 90*time.Second {
		t.Fatalf("env not applied: %+v", c)
	}
	if c.HTTPAddr != "127.0.0.1:7000" {
		t.Fatalf("flag did not override env: %s", c.HTTPAddr)
	}
}

func TestConfigRejectsBadValues(t *testing.T) {
	cases := map[string]map[string]string{
		"unparsable deadline": {"SAGA_DEADLINE": "soon"},
		"negative deadline":   {"SAGA_DEADLINE": "-1m"},
		"zero partitions":     {"KAFKA_PARTITIONS": "0"},
		"bad address":         {"HTTP_ADDR": "8080"},
		"bad log level":       {"LOG_LEVEL": "loud"},
		"bad log format":      {"LOG_FORMAT": "xml"},
		"not postgres":        {"DATABASE_URL": "mysql://x"},
		"negative limit":      {"PAYMENT_LIMIT_CENTS": "-5"},
		"no countries":        {"SHIPPING_COUNTRIES": " , "},
	}
	for name, vars := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := load(t, vars); err == nil {
				t.Fatalf("%v accepted", vars)
			}
		})
	}
}

func TestConfigLogMasksSecrets(t *testing.T) {
	c, err := load(t, map[string]string{
		"DATABASE_URL":   "postgres://choreo:hunter2@db:5432/order?sslmode=require&sslpassword=keypass",
		"SMTP_PASSWORD":  "mailpass",
		"OPERATOR_TOKEN": "op-token",
	})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	for k, v := range c.logFields() {
		buf.WriteString(k + "=" + v.(string) + "\n")
	}
	out := buf.String()
	for _, secret := range []string{"hunter2", "keypass", "mailpass", "op-token"} {
		if strings.Contains(out, secret) {
			t.Fatalf("secret %q in the start-up log:\n%s", secret, out)
		}
	}
	if !strings.Contains(out, "DATABASE_URL=postgres://choreo:xxxxx@db:5432/order?") {
		t.Fatalf("masked URL should keep all but the password:\n%s", out)
	}
}

func TestRunUsageAndUnknownCommand(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"help"}, env(nil), &out, io.Discard); err != nil || !strings.Contains(out.String(), "orderview") {
		t.Fatalf("help: %v\n%s", err, out.String())
	}
	if err := run(context.Background(), []string{"frobnicate"}, env(nil), io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "unknown command") {
		t.Fatalf("unknown command: %v", err)
	}
	if err := run(context.Background(), []string{"order"}, env(nil), io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "KAFKA_BROKERS and DATABASE_URL are required") {
		t.Fatalf("service without infrastructure: %v", err)
	}
	out.Reset()
	if err := run(context.Background(), []string{"saga"}, env(nil), &out, io.Discard); err != nil || !strings.Contains(out.String(), "# The order saga") {
		t.Fatalf("saga: %v", err)
	}
}

func TestArchitectureDocListsEverySetting(t *testing.T) {
	doc, err := os.ReadFile("../../docs/architecture.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range settings() {
		if !strings.Contains(string(doc), "`"+s.env+"`") {
			t.Errorf("docs/architecture.md does not document %s", s.env)
		}
	}
}

func TestArchitectureDocListsEveryCommand(t *testing.T) {
	doc, err := os.ReadFile("../../docs/architecture.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range commandNames() {
		if !strings.Contains(string(doc), "`choreo "+name) {
			t.Errorf("docs/architecture.md does not document `choreo %s` (the command table)", name)
		}
	}
}
