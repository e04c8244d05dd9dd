package main

// Offline checks of the deployment artifacts against the code they run: the Dockerfile, the
// compose file and the Kustomize manifests must name real subcommands and settings, agree on
// ports, and create the topics cmd/choreo/system.Topics creates. What only a real engine or cluster
// can show is listed in deploy/README.md ("How this is validated").

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/choreo-dev/choreo/cmd/choreo/system"
	"github.com/choreo-dev/choreo/internal/kafkaadmin"
)

// runtimeEnv are the variables a deployment may set that the Go runtime reads, not settings().
var runtimeEnv = map[string]bool{
	"GOMEMLIMIT": true, // soft heap limit from the container's memory limit (deploy/README.md)
}

// ---- shared ---------------------------------------------------------------------------------

// repoRoot is the directory of go.mod above the test's working directory.
func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test's directory")
		}
		dir = parent
	}
}

// checkEnvName says why a deployment should not set name, or nil.
func checkEnvName(name string) error {
	if runtimeEnv[name] {
		return nil
	}
	for _, s := range settings() {
		if s.env == name {
			return nil
		}
	}
	return fmt.Errorf("%s is not read by choreo (not in settings() of cmd/choreo/config.go) nor by the Go runtime", name)
}

// loadEnv reads the settings as the binary would from env.
func loadEnv(env map[string]string) (Config, error) {
	fs := flag.NewFlagSet("deploy", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return loadConfig(fs, nil, func(k string) string { return env[k] })
}

// checkProcessEnv validates the environment a container gives the subcommand cmd and returns
// the port HTTP_ADDR listens on.
func checkProcessEnv(cmd string, env map[string]string) (port int, errs []error) {
	c, ok := lookupCommand(cmd)
	if !ok {
		return 0, []error{fmt.Errorf("%q is not a choreo subcommand (want one of %s)", cmd, strings.Join(commandNames(), ", "))}
	}
	if !c.serves {
		errs = append(errs, fmt.Errorf("subcommand %q exits or serves no /healthz; a long-running container needs one that serves", cmd))
	}
	for _, name := range slices.Sorted(maps.Keys(env)) {
		if err := checkEnvName(name); err != nil {
			errs = append(errs, err)
		}
	}
	for _, need := range c.needs {
		if env[need] == "" {
			errs = append(errs, fmt.Errorf("%s is unset, and `choreo %s` refuses to start without it", need, cmd))
		}
	}
	cfg, err := loadEnv(env)
	if err != nil {
		return 0, append(errs, fmt.Errorf("the binary rejects this environment: %w", err))
	}
	if servesPublicAPI(cmd) {
		if err := cfg.requireAuth(cmd); err != nil {
			errs = append(errs, err)
		}
	}
	host, p, _ := net.SplitHostPort(cfg.HTTPAddr) // validated
	if host != "" && host != "0.0.0.0" && host != "::" {
		errs = append(errs, fmt.Errorf("HTTP_ADDR=%s listens on %s only; probes and peers reach the container on its own address", cfg.HTTPAddr, host))
	}
	port, _ = strconv.Atoi(p)
	return port, errs
}

// wantTopics is what cmd/choreo/system.Topics creates with the given KAFKA_PARTITIONS text.
func wantTopics(t *testing.T, partitions string) map[string]kafkaadmin.Topic {
	t.Helper()
	n, err := strconv.Atoi(partitions)
	if err != nil {
		t.Fatalf("KAFKA_PARTITIONS %q: %v", partitions, err)
	}
	want := map[string]kafkaadmin.Topic{}
	for _, tp := range system.Topics("", n) {
		want[tp.Name] = tp
	}
	return want
}

// compareTopics reports every difference between the topics a deployment creates and want.
func compareTopics(t *testing.T, where string, got, want map[string]kafkaadmin.Topic) {
	t.Helper()
	for _, name := range slices.Sorted(maps.Keys(want)) {
		g, ok := got[name]
		if !ok {
			t.Errorf("%s: topic %s is not created (cmd/choreo/system.Topics has it)", where, name)
			continue
		}
		w := want[name]
		if g.Partitions != w.Partitions {
			t.Errorf("%s: topic %s has %d partitions, cmd/choreo/system.Topics %d", where, name, g.Partitions, w.Partitions)
		}
		if !maps.Equal(g.Configs, w.Configs) {
			t.Errorf("%s: topic %s configs %v, cmd/choreo/system.Topics %v", where, name, g.Configs, w.Configs)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(got)) {
		if _, ok := want[name]; !ok {
			t.Errorf("%s: creates topic %s, which cmd/choreo/system.Topics does not know", where, name)
		}
	}
}

// checkPinned says why an image reference would not pull the same image twice, or nil.
func checkPinned(ref string) error {
	if name, digest, ok := strings.Cut(ref, "@"); ok {
		if !strings.HasPrefix(digest, "sha256:") || len(digest) != len("sha256:")+64 {
			return fmt.Errorf("image %s: malformed digest", ref)
		}
		ref = name
	}
	tag := ""
	if i := strings.LastIndex(ref, ":"); i > strings.LastIndex(ref, "/") {
		tag = ref[i+1:]
	}
	switch {
	case tag == "" && !strings.Contains(ref, "@"):
		return fmt.Errorf("image %s has neither tag nor digest (means latest)", ref)
	case tag == "latest":
		return fmt.Errorf("image %s is not pinned: tag latest", ref)
	}
	return nil
}

// ---- subcommands ----------------------------------------------------------------------------

// TestUsageListsEveryCommand keeps the usage text and the hosted units equal to commands(), so the
// deployment checks below judge against the real subcommands.
func TestUsageListsEveryCommand(t *testing.T) {
	var out bytes.Buffer
	if err := run(t.Context(), []string{"help"}, func(string) string { return "" }, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	if listed := usageCommands(out.String()); !equalSets(listed, commandNames()) {
		t.Errorf("`choreo help` lists %v, commands() %v", listed, commandNames())
	}

	var specs, withDB []string
	for _, s := range system.Specs(system.Config{}) {
		specs = append(specs, s.Name)
	}
	for _, c := range commands() {
		if slices.Contains(c.needs, "DATABASE_URL") {
			withDB = append(withDB, c.name)
		}
	}
	if !equalSets(specs, withDB) {
		t.Errorf("system.Specs hosts %v, but the subcommands that need a database are %v", specs, withDB)
	}
}

// usageCommands picks the command names out of the usage's two-column "Commands:" table: a
// lowercase word that opens a line or a column, maybe followed by upper-case placeholders for its
// arguments ("dlq SERVICE"), then a column gap.
func usageCommands(usage string) []string {
	_, table, _ := strings.Cut(usage, "Commands:\n")
	table, _, _ = strings.Cut(table, "\n\n")
	var names []string
	for _, m := range regexp.MustCompile(`(?m)(?:^  |\s{2})([a-z]+)(?: [A-Z]+)*\s{2,}`).FindAllStringSubmatch(table, -1) {
		names = append(names, m[1])
	}
	return names
}

func equalSets(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(slices.Compact(a), slices.Compact(b))
}

// TestDeploymentsRunEveryProcess: compose and each kustomization run every long-running
// subcommand but the all-in-one `run`, once, so a new service is deployed everywhere or nowhere.
func TestDeploymentsRunEveryProcess(t *testing.T) {
	root := repoRoot(t)
	var want []string
	for _, c := range commands() {
		if c.serves && c.name != "run" {
			want = append(want, c.name)
		}
	}
	var compose []string
	for _, s := range choreoServices(t, loadCompose(t, root)) {
		compose = append(compose, s.Command[0])
	}
	if slices.Sort(compose); !slices.Equal(compose, slices.Sorted(slices.Values(want))) {
		t.Errorf("docker-compose.yml runs %v; want each of %v once", compose, want)
	}
	for _, dir := range kustomizations {
		var got []string
		for _, d := range renderManifests(t, root, dir).deployments {
			for _, c := range d.Spec.Template.Spec.Containers {
				got = append(got, strings.Join(c.Args, " "))
			}
		}
		if slices.Sort(got); !slices.Equal(got, slices.Sorted(slices.Values(want))) {
			t.Errorf("%s runs %v; want each of %v once", dir, got, want)
		}
	}
}
