package deploy

// Offline checks of the deployment artifacts against the binary they run: the Dockerfile, the compose
// file and the Kustomize manifests must name real subcommands and settings, agree on ports, and create
// the topics `choreo topics` creates. The checks ask a freshly built choreo (`choreo help -json`,
// `choreo config COMMAND`, `choreo topics -dry-run`), never its source. What only a real engine or
// cluster can show is listed in deploy/README.md ("How this is validated").

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// runtimeEnv are the variables a deployment may set that the Go runtime reads, not choreo's settings.
var runtimeEnv = map[string]bool{
	"GOMEMLIMIT": true, // soft heap limit from the container's memory limit (deploy/README.md)
}

// ---- the binary -----------------------------------------------------------------------------

// catalog is what `choreo help -json` says about the binary's commands and settings.
type catalog struct {
	Commands []command `json:"commands"`
	Settings []setting `json:"settings"`
	Metrics  []metric  `json:"metrics"`
}

// metric is a metric family the binary's /metrics may serve.
type metric struct {
	Name string `json:"name"`
}

// command is a subcommand: whether it serves /healthz until stopped, the settings it refuses to start
// without, and every setting it reads.
type command struct {
	Name     string   `json:"name"`
	Serves   bool     `json:"serves"`
	Metrics  bool     `json:"metrics"` // serves /metrics on HTTP_ADDR
	Needs    []string `json:"needs"`
	Settings []string `json:"settings"`
}

// setting is an environment variable the binary reads.
type setting struct {
	Env     string `json:"env"`
	Flag    string `json:"flag"`
	Default string `json:"default"`
}

// choreo is the binary built from the repository for this test run, and what it says about itself.
type choreo struct {
	root string // the repository
	bin  string
	catalog
}

// built is set once by TestMain: building the binary takes seconds, every test asks it.
var built *choreo

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "choreo-deploy-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	built, err = build(dir)
	code := 1
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
	} else {
		code = m.Run()
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

// build compiles ./cmd/choreo of the repository this module sits in into dir and reads its catalog.
func build(dir string) (*choreo, error) {
	root, err := filepath.Abs("..")
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(root, "cmd", "choreo")); err != nil {
		return nil, fmt.Errorf("the repository is not the parent of the deploy module: %w", err)
	}
	c := &choreo{root: root, bin: filepath.Join(dir, "choreo")}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "go", "build", "-C", root, "-o", c.bin, "./cmd/choreo").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go build ./cmd/choreo: %w\n%s", err, out)
	}
	out, err := c.run(nil, "help", "-json")
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal([]byte(out), &c.catalog); err != nil {
		return nil, fmt.Errorf("choreo help -json: %w", err)
	}
	return c, nil
}

// run runs the binary with args and only the variables of env, and returns its stdout; on a non-zero
// exit the error holds its stderr.
func (c *choreo) run(env map[string]string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.bin, args...)
	cmd.Env = []string{}
	for _, k := range slices.Sorted(maps.Keys(env)) {
		cmd.Env = append(cmd.Env, k+"="+env[k])
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("choreo %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// command is the catalog's entry for name.
func (c *choreo) command(name string) (command, bool) {
	for _, cmd := range c.Commands {
		if cmd.Name == name {
			return cmd, true
		}
	}
	return command{}, false
}

func (c *choreo) commandNames() []string {
	var names []string
	for _, cmd := range c.Commands {
		names = append(names, cmd.Name)
	}
	return names
}

func (c *choreo) settingDefault(env string) string {
	for _, s := range c.Settings {
		if s.Env == env {
			return s.Default
		}
	}
	return ""
}

// reads says whether any of the commands reads the setting env.
func (c *choreo) reads(env string, commands ...string) bool {
	for _, name := range commands {
		if cmd, ok := c.command(name); ok && slices.Contains(cmd.Settings, env) {
			return true
		}
	}
	return false
}

// ---- shared ---------------------------------------------------------------------------------

// checkEnvName says why a deployment should not set name, or nil.
func checkEnvName(name string) error {
	if runtimeEnv[name] || slices.ContainsFunc(built.Settings, func(s setting) bool { return s.Env == name }) {
		return nil
	}
	return fmt.Errorf("%s is not read by choreo (not in 'choreo help -json') nor by the Go runtime", name)
}

// checkProcessEnv has the binary check the environment a container gives the subcommand cmd and returns
// the port HTTP_ADDR listens on. ambient names the variables every process of the deployment receives
// (the image's ENV, a ConfigMap through envFrom): those cmd does not read are no mistake and are not
// passed; a variable set for this process alone must be one cmd reads.
func checkProcessEnv(cmd string, env map[string]string, ambient map[string]bool) (port int, errs []error) {
	c, ok := built.command(cmd)
	if !ok {
		return 0, []error{fmt.Errorf("%q is not a choreo subcommand (want one of %s)", cmd, strings.Join(built.commandNames(), ", "))}
	}
	if !c.Serves {
		errs = append(errs, fmt.Errorf("subcommand %q exits or serves no /healthz; a long-running container needs one that serves", cmd))
	}
	given := map[string]string{}
	for _, name := range slices.Sorted(maps.Keys(env)) {
		if err := checkEnvName(name); err != nil {
			errs = append(errs, err)
			continue
		}
		if runtimeEnv[name] || (ambient[name] && !slices.Contains(c.Settings, name)) {
			continue
		}
		given[name] = env[name]
	}
	out, err := built.run(given, "config", cmd)
	if err != nil {
		return 0, append(errs, fmt.Errorf("the binary rejects this environment: %w", err))
	}
	var effective map[string]string
	if err := json.Unmarshal([]byte(out), &effective); err != nil {
		return 0, append(errs, fmt.Errorf("choreo config %s: %w", cmd, err))
	}
	addr := effective["HTTP_ADDR"]
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, append(errs, fmt.Errorf("HTTP_ADDR %q: %w", addr, err))
	}
	if host != "" && host != "0.0.0.0" && host != "::" {
		errs = append(errs, fmt.Errorf("HTTP_ADDR=%s listens on %s only; probes and peers reach the container on its own address", addr, host))
	}
	port, _ = strconv.Atoi(p)
	return port, errs
}

// topic is one topic as a deployment creates it and `choreo topics -dry-run` prints it.
type topic struct {
	Name              string            `json:"name"`
	Partitions        int               `json:"partitions"`
	ReplicationFactor int               `json:"-"`
	Configs           map[string]string `json:"configs"`
}

// wantTopics is what `choreo topics` creates with the given KAFKA_PARTITIONS text.
func wantTopics(t *testing.T, partitions string) map[string]topic {
	t.Helper()
	out, err := built.run(map[string]string{"KAFKA_PARTITIONS": partitions}, "topics", "-dry-run")
	if err != nil {
		t.Fatal(err)
	}
	var list []topic
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("choreo topics -dry-run: %v\n%s", err, out)
	}
	want := map[string]topic{}
	for _, tp := range list {
		want[tp.Name] = tp
	}
	if len(want) == 0 {
		t.Fatalf("choreo topics -dry-run lists no topics")
	}
	return want
}

// compareTopics reports every difference between the topics a deployment creates and want.
func compareTopics(t *testing.T, where string, got, want map[string]topic) {
	t.Helper()
	for _, name := range slices.Sorted(maps.Keys(want)) {
		g, ok := got[name]
		if !ok {
			t.Errorf("%s: topic %s is not created (choreo topics creates it)", where, name)
			continue
		}
		w := want[name]
		if g.Partitions != w.Partitions {
			t.Errorf("%s: topic %s has %d partitions, choreo topics %d", where, name, g.Partitions, w.Partitions)
		}
		if !maps.Equal(g.Configs, w.Configs) {
			t.Errorf("%s: topic %s configs %v, choreo topics %v", where, name, g.Configs, w.Configs)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(got)) {
		if _, ok := want[name]; !ok {
			t.Errorf("%s: creates topic %s, which choreo topics does not know", where, name)
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

// TestBinaryDescribesItself keeps what the checks below learn from the binary honest: `choreo help`
// lists the commands of `choreo help -json`, and `choreo <command> -h` offers exactly the settings the
// catalog says the command reads, each as its flag.
func TestBinaryDescribesItself(t *testing.T) {
	help, err := built.run(nil, "help")
	if err != nil {
		t.Fatal(err)
	}
	if listed := usageCommands(help); !equalSets(listed, built.commandNames()) {
		t.Errorf("`choreo help` lists %v, `choreo help -json` %v", listed, built.commandNames())
	}
	flags := map[string]string{}
	for _, s := range built.Settings {
		flags[s.Env] = s.Flag
	}
	for _, c := range built.Commands {
		if c.Name == "config" {
			continue // takes a command, whose flags it offers
		}
		out, err := exec.Command(built.bin, c.Name, "-h").CombinedOutput()
		if err != nil {
			t.Errorf("choreo %s -h: %v", c.Name, err)
		}
		var listed []string
		for _, m := range regexp.MustCompile(`(?m)^  (-[a-z-]+)(?: \w+)?\n\s+.*\(env ([A-Z_]+)\)$`).FindAllStringSubmatch(string(out), -1) {
			listed = append(listed, m[2])
			if flags[m[2]] != m[1] {
				t.Errorf("choreo %s -h: %s is flag %s; help -json says %s", c.Name, m[2], m[1], flags[m[2]])
			}
		}
		if !equalSets(listed, c.Settings) {
			t.Errorf("choreo %s -h lists %v; help -json says it reads %v:\n%s", c.Name, listed, c.Settings, out)
		}
	}
	if _, err := built.run(map[string]string{"SAGA_DEADLINE": "1m"}, "config", "ingress"); err == nil || !strings.Contains(err.Error(), "SAGA_DEADLINE") {
		t.Errorf("choreo config ingress with the order's SAGA_DEADLINE: %v; want it reported", err)
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
	root := built.root
	var want []string
	for _, c := range built.Commands {
		if c.Serves && c.Name != "run" {
			want = append(want, c.Name)
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
