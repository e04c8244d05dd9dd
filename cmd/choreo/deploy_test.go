package main

// Offline checks of the deployment artifacts against the code they run: the Dockerfile, the
// compose file and the Kustomize manifests must name real subcommands and settings, agree on
// ports, and create the topics internal/system.Topics creates. What only a real engine or cluster
// can show is listed in deploy/README.md ("How this is validated").

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	goversion "go/version"
	"io"
	"maps"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	composeloader "github.com/compose-spec/compose-go/v2/loader"
	composetypes "github.com/compose-spec/compose-go/v2/types"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/linter"
	dfparser "github.com/moby/buildkit/frontend/dockerfile/parser"
	dfshell "github.com/moby/buildkit/frontend/dockerfile/shell"
	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	"mvdan.cc/sh/v3/expand"
	"mvdan.cc/sh/v3/interp"
	"mvdan.cc/sh/v3/syntax"
	"sigs.k8s.io/kustomize/api/krusty"
	kusttypes "sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	"github.com/choreo-dev/choreo/internal/kafkaadmin"
	"github.com/choreo-dev/choreo/internal/system"
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
	host, p, _ := net.SplitHostPort(cfg.HTTPAddr) // validated
	if host != "" && host != "0.0.0.0" && host != "::" {
		errs = append(errs, fmt.Errorf("HTTP_ADDR=%s listens on %s only; probes and peers reach the container on its own address", cfg.HTTPAddr, host))
	}
	port, _ = strconv.Atoi(p)
	return port, errs
}

// wantTopics is what internal/system.Topics creates with the given KAFKA_PARTITIONS text.
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
			t.Errorf("%s: topic %s is not created (internal/system.Topics has it)", where, name)
			continue
		}
		w := want[name]
		if g.Partitions != w.Partitions {
			t.Errorf("%s: topic %s has %d partitions, internal/system.Topics %d", where, name, g.Partitions, w.Partitions)
		}
		if !maps.Equal(g.Configs, w.Configs) {
			t.Errorf("%s: topic %s configs %v, internal/system.Topics %v", where, name, g.Configs, w.Configs)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(got)) {
		if _, ok := want[name]; !ok {
			t.Errorf("%s: creates topic %s, which internal/system.Topics does not know", where, name)
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

// TestCommandsMatchMain keeps commands() equal to the cases of run's switch in main.go and to the
// usage text, so the deployment checks below judge against the real subcommands.
func TestCommandsMatchMain(t *testing.T) {
	file, err := parser.ParseFile(token.NewFileSet(), "main.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var cases []string
	ast.Inspect(file, func(n ast.Node) bool {
		sw, ok := n.(*ast.SwitchStmt)
		if !ok {
			return true
		}
		if id, isIdent := sw.Tag.(*ast.Ident); !isIdent || id.Name != "cmd" {
			return true
		}
		for _, stmt := range sw.Body.List {
			for _, e := range stmt.(*ast.CaseClause).List {
				if lit, ok := e.(*ast.BasicLit); ok && lit.Kind == token.STRING {
					s, _ := strconv.Unquote(lit.Value)
					cases = append(cases, s)
				}
			}
		}
		return false
	})
	if want := commandNames(); !equalSets(cases, want) {
		t.Errorf("main.go's switch dispatches %v, commands_list.go lists %v: update commands()", cases, want)
	}

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

// ---- Dockerfile -----------------------------------------------------------------------------

// image is what the Dockerfile builds, as far as the deployments depend on it.
type image struct {
	entrypoint  []string          // exec form
	env         map[string]string // ENV of the final stage
	exposed     []string          // EXPOSE ports
	user        string
	healthcheck []string
	// the builder's go build: its environment assignments and arguments, build args expanded
	buildEnv  []string
	buildArgs []string
	errs      []string
}

// loadDockerfile parses the Dockerfile with BuildKit's own parser and linter and checks how its
// stages fit together.
func loadDockerfile(t *testing.T, root string) image {
	t.Helper()
	src, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	res, err := dfparser.Parse(bytes.NewReader(src))
	if err != nil {
		t.Fatalf("Dockerfile: %v", err)
	}
	var img image
	fail := func(format string, args ...any) { img.errs = append(img.errs, fmt.Sprintf(format, args...)) }
	for _, w := range res.Warnings {
		fail("parser warning: %s", w.Short)
	}
	lint := linter.New(&linter.Config{Warn: func(rule, _, _, msg string, loc []dfparser.Range) {
		line := 0
		if len(loc) > 0 {
			line = loc[0].Start.Line
		}
		fail("lint %s at line %d: %s", rule, line, msg)
	}})
	stages, metaArgs, err := instructions.Parse(res.AST, lint)
	if err != nil {
		t.Fatalf("Dockerfile: %v", err)
	}
	if len(stages) < 2 {
		t.Fatalf("Dockerfile: %d stage(s); want a builder and a runtime stage", len(stages))
	}
	globals := map[string]string{"BUILDPLATFORM": runtime.GOOS + "/" + runtime.GOARCH}
	for _, a := range metaArgs {
		for _, kv := range a.Args {
			globals[kv.Key] = kv.ValueString()
		}
	}
	lex := dfshell.NewLex(res.EscapeToken)
	base := func(s instructions.Stage) string {
		var env []string
		for k, v := range globals {
			env = append(env, k+"="+v)
		}
		name, _, err := lex.ProcessWord(s.BaseName, dfshell.EnvsFromSlice(env))
		if err != nil {
			fail("FROM %s: %v", s.BaseName, err)
		}
		return name
	}

	// The builder: the stage whose RUN holds `go build`.
	builderIdx, outPath := -1, ""
	for i, s := range stages {
		declared := map[string]bool{}
		for k := range globals {
			declared[k] = true
		}
		for _, c := range s.Commands {
			switch c := c.(type) {
			case *instructions.ArgCommand:
				for _, kv := range c.Args {
					declared[kv.Key] = true
				}
			case *instructions.RunCommand:
				env, args, refs, found, err := goBuildOf(c)
				if err != nil {
					fail("RUN %q: %v", strings.Join(c.CmdLine, " "), err)
				}
				if !found {
					continue
				}
				if builderIdx >= 0 {
					fail("more than one RUN with go build")
				}
				builderIdx, img.buildEnv, img.buildArgs = i, env, args
				for _, v := range refs {
					if !declared[v] {
						fail("go build uses ${%s}, which no ARG of the stage declares: BuildKit expands it empty", v)
					}
				}
			}
		}
	}
	if builderIdx < 0 {
		t.Fatalf("Dockerfile: no RUN with go build")
	}
	builder, final := stages[builderIdx], stages[len(stages)-1]
	if builderIdx == len(stages)-1 {
		fail("the final stage builds: the runtime image carries the toolchain")
	}
	if !slices.ContainsFunc(builder.Commands, func(c instructions.Command) bool {
		cp, ok := c.(*instructions.CopyCommand)
		return ok && cp.From == "" && slices.Equal(cp.SourcePaths, []string{"."})
	}) {
		fail("the builder stage does not COPY . (the build context) where go build runs")
	}

	// The go build line itself.
	if !slices.Contains(img.buildEnv, "CGO_ENABLED=0") {
		fail("go build runs without CGO_ENABLED=0 (env %v): the binary would need the libc the runtime image lacks", img.buildEnv)
	}
	var pkgs []string
	for i := 0; i < len(img.buildArgs); i++ {
		a := img.buildArgs[i]
		switch {
		case a == "-o" && i+1 < len(img.buildArgs):
			outPath = img.buildArgs[i+1]
			i++
		case strings.HasPrefix(a, "-o="):
			outPath = strings.TrimPrefix(a, "-o=")
		case strings.HasPrefix(a, "-"):
			if !strings.Contains(a, "=") && goBuildValueFlags[a] {
				i++
			}
		default:
			pkgs = append(pkgs, a)
		}
	}
	if !slices.Equal(pkgs, []string{"./cmd/choreo"}) {
		fail("go build builds %v, want ./cmd/choreo", pkgs)
	}
	if outPath == "" {
		fail("go build has no -o: the output path is implicit")
	}

	// Builder image vs go.mod.
	builderImage := base(builder)
	if err := checkPinned(builderImage); err != nil {
		fail("builder: %v", err)
	}
	modFile, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^go (\S+)$`).FindSubmatch(modFile)
	tag := builderImage[strings.LastIndex(builderImage, ":")+1:]
	goVer, _, _ := strings.Cut(tag, "-")
	switch {
	case m == nil:
		fail("go.mod has no go line")
	case !strings.HasPrefix(builderImage, "golang:") && !strings.Contains(builderImage, "/golang:"):
		fail("builder image %s is not golang:<version>", builderImage)
	case goversion.Lang("go"+goVer) != goversion.Lang("go"+string(m[1])):
		fail("builder image %s is Go %s, go.mod says go %s", builderImage, goVer, m[1])
	case goversion.Compare("go"+goVer, "go"+string(m[1])) < 0:
		fail("builder image %s is older than go.mod's go %s: the build would need another toolchain", builderImage, m[1])
	}

	// The final stage: what it copies, runs and as whom.
	if err := checkPinned(base(final)); err != nil {
		fail("runtime: %v", err)
	}
	img.env = map[string]string{}
	copied := ""
	for _, c := range final.Commands {
		switch c := c.(type) {
		case *instructions.CopyCommand:
			if c.From == builder.Name || c.From == strconv.Itoa(builderIdx) {
				if slices.Contains(c.SourcePaths, outPath) {
					copied = c.DestPath
					if strings.HasSuffix(copied, "/") {
						copied += path.Base(outPath)
					}
				} else {
					fail("COPY --from=%s copies %v, not the go build output %s", c.From, c.SourcePaths, outPath)
				}
			}
		case *instructions.EntrypointCommand:
			if c.PrependShell {
				fail("ENTRYPOINT is in shell form: the runtime image has no shell; use the exec form")
			}
			img.entrypoint = c.CmdLine
		case *instructions.UserCommand:
			img.user = c.User
		case *instructions.EnvCommand:
			for _, kv := range c.Env {
				img.env[kv.Key] = kv.Value
			}
		case *instructions.ExposeCommand:
			img.exposed = append(img.exposed, c.Ports...)
		case *instructions.HealthCheckCommand:
			img.healthcheck = c.Health.Test
		}
	}
	switch {
	case copied == "":
		fail("the final stage does not COPY --from=%s the binary %s", builder.Name, outPath)
	case len(img.entrypoint) == 0 || img.entrypoint[0] != copied:
		fail("ENTRYPOINT %v does not run the copied binary %s", img.entrypoint, copied)
	}
	if u, _, _ := strings.Cut(img.user, ":"); u == "" || u == "root" || u == "0" {
		fail("the final stage runs as %q; want a non-root USER", img.user)
	}
	if len(img.healthcheck) > 0 && !slices.Equal(img.healthcheck, append([]string{"CMD"}, append(slices.Clone(img.entrypoint), "healthcheck")...)) {
		fail("HEALTHCHECK %v; want [CMD %s healthcheck]", img.healthcheck, strings.Join(img.entrypoint, " "))
	}
	for _, name := range slices.Sorted(maps.Keys(img.env)) {
		if err := checkEnvName(name); err != nil {
			fail("ENV: %v", err)
		}
	}
	if addr, ok := img.env["HTTP_ADDR"]; ok {
		_, p, err := net.SplitHostPort(addr)
		if err != nil || !slices.ContainsFunc(img.exposed, func(e string) bool { return strings.TrimSuffix(e, "/tcp") == p }) {
			fail("ENV HTTP_ADDR=%s listens on a port EXPOSE %v does not name", addr, img.exposed)
		}
	}
	return img
}

// goBuildValueFlags are the go build flags that take the next argument as their value.
var goBuildValueFlags = map[string]bool{
	"-o": true, "-p": true, "-C": true, "-asmflags": true, "-buildmode": true, "-compiler": true,
	"-gccgoflags": true, "-gcflags": true, "-installsuffix": true, "-ldflags": true, "-mod": true,
	"-modfile": true, "-overlay": true, "-pgo": true, "-pkgdir": true, "-tags": true, "-toolexec": true,
}

// goBuildOf finds `go build` in a RUN and expands its assignments and arguments as the shell
// would, with TARGETOS/TARGETARCH of this machine; refs are the variables the call uses.
func goBuildOf(run *instructions.RunCommand) (env, args, refs []string, found bool, err error) {
	script := strings.Join(run.CmdLine, " ")
	if !run.PrependShell { // exec form: argv, quoted back into one command line
		var quoted []string
		for _, a := range run.CmdLine {
			q, err := syntax.Quote(a, syntax.LangBash)
			if err != nil {
				return nil, nil, nil, false, err
			}
			quoted = append(quoted, q)
		}
		script = strings.Join(quoted, " ")
	}
	file, err := syntax.NewParser().Parse(strings.NewReader(script), "RUN")
	if err != nil {
		return nil, nil, nil, false, err
	}
	cfg := &expand.Config{Env: expand.ListEnviron(
		"TARGETOS="+runtime.GOOS, "TARGETARCH="+runtime.GOARCH, "TARGETPLATFORM="+runtime.GOOS+"/"+runtime.GOARCH)}
	syntax.Walk(file, func(n syntax.Node) bool {
		call, ok := n.(*syntax.CallExpr)
		if !ok || found || len(call.Args) < 2 {
			return true
		}
		if a, b := call.Args[0].Lit(), call.Args[1].Lit(); a != "go" || b != "build" {
			return true
		}
		found = true
		syntax.Walk(call, func(n syntax.Node) bool {
			if pe, ok := n.(*syntax.ParamExp); ok {
				refs = append(refs, pe.Param.Value)
			}
			return true
		})
		for _, as := range call.Assigns {
			v, e := expand.Literal(cfg, as.Value)
			if e != nil {
				err = e
			}
			env = append(env, as.Name.Value+"="+v)
		}
		fields, e := expand.Fields(cfg, call.Args[2:]...)
		if e != nil {
			err = e
		}
		args = fields
		return false
	})
	return env, args, refs, found, err
}

func TestDockerfile(t *testing.T) {
	root := repoRoot(t)
	img := loadDockerfile(t, root)
	for _, e := range img.errs {
		t.Errorf("Dockerfile: %s", e)
	}
	if t.Failed() {
		return
	}
	if testing.Short() {
		t.Skip("-short: not building the image's binary")
	}

	// Build exactly as the builder stage does, in the build context Docker would send (the
	// repository less .dockerignore), into a temp dir instead of the image's path.
	bin := filepath.Join(t.TempDir(), "choreo")
	args := slices.Clone(img.buildArgs)
	for i, a := range args {
		switch {
		case a == "-o":
			args[i+1] = bin
		case strings.HasPrefix(a, "-o="):
			args[i] = "-o=" + bin
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 8*time.Minute)
	defer cancel()
	build := exec.CommandContext(ctx, "go", append([]string{"build"}, args...)...)
	build.Dir = buildContext(t, root)
	build.Env = append(os.Environ(), img.buildEnv...)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v\n%s", strings.Join(img.buildEnv, " "), build.Args, err, out)
	}

	help, err := exec.CommandContext(ctx, bin, "help").Output()
	if err != nil {
		t.Fatalf("%s help: %v", bin, err)
	}
	used := map[string]string{"healthcheck": "the Dockerfile's HEALTHCHECK"}
	for _, svc := range choreoServices(t, loadCompose(t, root)) {
		used[svc.Command[0]] = "docker-compose.yml service " + svc.Name
	}
	for _, dir := range kustomizations {
		for _, d := range renderManifests(t, root, dir).deployments {
			for _, c := range d.Spec.Template.Spec.Containers {
				if len(c.Args) > 0 {
					used[c.Args[0]] = dir + " Deployment " + d.Name
				}
			}
		}
	}
	listed := usageCommands(string(help))
	for _, cmd := range slices.Sorted(maps.Keys(used)) {
		if !slices.Contains(listed, cmd) {
			t.Errorf("the image's binary does not list %q (used by %s) in `choreo help`:\n%s", cmd, used[cmd], help)
		}
	}
	if len(used) < 3 {
		t.Errorf("found only %v in compose and the manifests; the loaders are broken", used)
	}
}

// buildContext copies root less what .dockerignore excludes into a temp dir: what COPY . . sees.
func buildContext(t *testing.T, root string) string {
	t.Helper()
	f, err := os.Open(filepath.Join(root, ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	patterns, err := ignorefile.ReadAll(f)
	f.Close()
	if err != nil {
		t.Fatalf(".dockerignore: %v", err)
	}
	pm, err := patternmatcher.New(patterns)
	if err != nil {
		t.Fatalf(".dockerignore: %v", err)
	}
	dst := filepath.Join(t.TempDir(), "context")
	err = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "." {
			return os.MkdirAll(dst, 0o755)
		}
		excluded, err := pm.MatchesOrParentMatches(filepath.ToSlash(rel))
		switch {
		case err != nil:
			return err
		case excluded && d.IsDir() && !pm.Exclusions():
			return filepath.SkipDir
		case excluded || (!d.IsDir() && !d.Type().IsRegular()):
			return nil
		case d.IsDir():
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
	if err != nil {
		t.Fatalf("copy the build context: %v", err)
	}
	return dst
}

// ---- docker-compose.yml -----------------------------------------------------------------------

// loadCompose loads docker-compose.yml as docker compose would, with an empty environment so
// every ${VAR:-default} takes its default.
func loadCompose(t *testing.T, root string) *composetypes.Project {
	t.Helper()
	p, err := composeloader.LoadWithContext(t.Context(), composetypes.ConfigDetails{
		WorkingDir:  root,
		ConfigFiles: []composetypes.ConfigFile{{Filename: filepath.Join(root, "docker-compose.yml")}},
		Environment: composetypes.Mapping{},
	}, func(o *composeloader.Options) { o.SetProjectName("choreo", true) })
	if err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	return p
}

// choreoServices are the services that run the repository's image.
func choreoServices(t *testing.T, p *composetypes.Project) []composetypes.ServiceConfig {
	t.Helper()
	var out []composetypes.ServiceConfig
	for _, name := range slices.Sorted(maps.Keys(p.Services)) {
		s := p.Services[name]
		if s.Build == nil && s.Image != composeImage {
			continue
		}
		if len(s.Command) == 0 {
			t.Fatalf("docker-compose.yml: service %s runs the choreo image without a command (subcommand)", name)
		}
		out = append(out, s)
	}
	return out
}

// composeImage is the tag compose builds the Dockerfile into.
const composeImage = "choreo:dev"

// serviceEnv is a service's environment; entries without a value (taken from the host) are unset.
func serviceEnv(s composetypes.ServiceConfig) map[string]string {
	env := map[string]string{}
	for k, v := range s.Environment {
		if v != nil {
			env[k] = *v
		}
	}
	return env
}

func TestComposeFile(t *testing.T) {
	root := repoRoot(t)
	p := loadCompose(t, root)
	img := loadDockerfile(t, root)

	for _, name := range slices.Sorted(maps.Keys(p.Services)) {
		s := p.Services[name]
		if s.Image == "" {
			t.Errorf("service %s: no image: name the image it runs or builds", name)
		} else if err := checkPinned(s.Image); err != nil {
			t.Errorf("service %s: %v", name, err)
		}
		for _, dep := range slices.Sorted(maps.Keys(s.DependsOn)) {
			target, ok := p.Services[dep]
			switch cond := s.DependsOn[dep].Condition; {
			case !ok: // the loader rejects this already; kept so the message stays ours if it stops
				t.Errorf("service %s depends on %s, which is no service", name, dep)
			case cond == composetypes.ServiceConditionHealthy && (target.HealthCheck == nil || target.HealthCheck.Disable):
				t.Errorf("service %s waits for %s to be healthy, but %s has no healthcheck", name, dep, dep)
			case cond == composetypes.ServiceConditionCompletedSuccessfully && target.Restart != "" && target.Restart != "no":
				t.Errorf("service %s waits for %s to complete, but %s restarts (%s)", name, dep, dep, target.Restart)
			}
		}
		for _, port := range s.Ports {
			if port.HostIP != "127.0.0.1" {
				t.Errorf("service %s publishes %s:%d on %q; the compose file promises 127.0.0.1 only", name, port.Published, port.Target, port.HostIP)
			}
		}
	}

	brokers := kafkaListeners(p)
	pg := postgresServices(p)
	initDBs := initDatabases(t, root)
	ports := map[string]int{} // subcommand → HTTP port of its service
	hosts := map[string]string{}
	partitions := ""
	services := choreoServices(t, p)
	for _, s := range services {
		cmd := s.Command[0]
		if _, ok := ports[cmd]; ok {
			t.Errorf("service %s: a second service runs `choreo %s`", s.Name, cmd)
		}
		if s.Build != nil && (s.Build.Context != root || (s.Build.Dockerfile != "" && s.Build.Dockerfile != "Dockerfile")) {
			t.Errorf("service %s builds %s/%s, not the repository's Dockerfile", s.Name, s.Build.Context, s.Build.Dockerfile)
		}
		if len(s.Command) != 1 {
			t.Errorf("service %s: command %v; want one subcommand", s.Name, s.Command)
		}
		if len(s.Entrypoint) > 0 {
			t.Errorf("service %s overrides the image's ENTRYPOINT with %v", s.Name, s.Entrypoint)
		}
		env := maps.Clone(img.env)
		maps.Copy(env, serviceEnv(s))
		port, errs := checkProcessEnv(cmd, env)
		for _, err := range errs {
			t.Errorf("service %s: %v", s.Name, err)
		}
		ports[cmd], hosts[cmd] = port, s.Name
		for _, pc := range s.Ports {
			if int(pc.Target) != port {
				t.Errorf("service %s publishes container port %d, but HTTP_ADDR listens on %d", s.Name, pc.Target, port)
			}
		}
		if want := append([]string{"CMD"}, append(slices.Clone(img.entrypoint), "healthcheck")...); s.HealthCheck == nil || !slices.Equal(s.HealthCheck.Test, want) {
			t.Errorf("service %s: healthcheck %v; want %v (checks /healthz on HTTP_ADDR)", s.Name, s.HealthCheck, want)
		}
		if v := env["KAFKA_PARTITIONS"]; v != "" {
			if partitions != "" && v != partitions {
				t.Errorf("service %s: KAFKA_PARTITIONS=%s, another service %s", s.Name, v, partitions)
			}
			partitions = v
		}
		if v := env["KAFKA_BROKERS"]; v != "" {
			for _, b := range strings.Split(v, ",") {
				if _, ok := brokers[b]; !ok {
					t.Errorf("service %s: KAFKA_BROKERS %s is no advertised listener of a Kafka service on the compose network (have %v)", s.Name, b, slices.Sorted(maps.Keys(brokers)))
				}
			}
		}
		if v := env["DATABASE_URL"]; v != "" {
			if err := checkComposeDatabase(v, cmd, pg, initDBs); err != nil {
				t.Errorf("service %s: DATABASE_URL %v", s.Name, err)
			}
		}
	}
	if _, ok := ports["ingress"]; !ok {
		t.Errorf("no service runs `choreo ingress`")
	} else if !slices.ContainsFunc(p.Services[hosts["ingress"]].Ports, func(pc composetypes.ServicePortConfig) bool { return pc.Published == "8080" }) {
		t.Errorf("service %s (ingress) does not publish 127.0.0.1:8080, where README.md and the Makefile send you", hosts["ingress"])
	}
	// Upstream URLs (ORDER_URL, ...) name the service running that subcommand, on its port.
	for _, s := range services {
		for k, v := range serviceEnv(s) {
			upstream, ok := strings.CutSuffix(k, "_URL")
			if !ok || k == "DATABASE_URL" || v == "" {
				continue
			}
			cmd := strings.ToLower(upstream)
			u, err := url.Parse(v)
			if err != nil || u.Scheme != "http" {
				t.Errorf("service %s: %s=%s is not an http:// URL", s.Name, k, v)
				continue
			}
			if u.Hostname() != hosts[cmd] || u.Port() != strconv.Itoa(ports[cmd]) {
				t.Errorf("service %s: %s=%s, but `choreo %s` is service %q on port %d", s.Name, k, v, cmd, hosts[cmd], ports[cmd])
			}
		}
	}

	if partitions == "" {
		partitions = settingDefault("KAFKA_PARTITIONS")
	}
	got, errs := kafkaInitTopics(t, p, brokers)
	for _, err := range errs {
		t.Errorf("kafka-init: %v", err)
	}
	compareTopics(t, "docker-compose.yml kafka-init", got, wantTopics(t, partitions))
}

func settingDefault(env string) string {
	for _, s := range settings() {
		if s.env == env {
			return s.def
		}
	}
	return ""
}

// kafkaListeners maps each address a broker advertises to containers on the compose network
// (host = the service's name or hostname) to its service.
func kafkaListeners(p *composetypes.Project) map[string]string {
	out := map[string]string{}
	for name, s := range p.Services {
		env := serviceEnv(s)
		adv := env["KAFKA_ADVERTISED_LISTENERS"]
		if adv == "" || len(s.Entrypoint) > 0 {
			continue
		}
		for _, l := range strings.Split(adv, ",") {
			_, addr, ok := strings.Cut(l, "://")
			host, _, err := net.SplitHostPort(addr)
			if ok && err == nil && (host == name || host == s.Hostname) {
				out[addr] = name
			}
		}
	}
	return out
}

// postgresServices maps each Postgres service to its user and password.
func postgresServices(p *composetypes.Project) map[string]*url.Userinfo {
	out := map[string]*url.Userinfo{}
	for name, s := range p.Services {
		if strings.HasPrefix(s.Image, "postgres:") {
			env := serviceEnv(s)
			user := env["POSTGRES_USER"]
			if user == "" {
				user = "postgres"
			}
			out[name] = url.UserPassword(user, env["POSTGRES_PASSWORD"])
		}
	}
	return out
}

// initDatabases are the databases deploy/compose/postgres-init.sql creates.
func initDatabases(t *testing.T, root string) []string {
	t.Helper()
	sql, err := os.ReadFile(filepath.Join(root, "deploy/compose/postgres-init.sql"))
	if err != nil {
		t.Fatal(err)
	}
	var dbs []string
	for _, m := range regexp.MustCompile(`(?im)^\s*CREATE DATABASE\s+"?([a-z0-9_]+)"?`).FindAllSubmatch(sql, -1) {
		dbs = append(dbs, string(m[1]))
	}
	return dbs
}

// checkComposeDatabase: the URL reaches a Postgres service as its user, on the database that
// postgres-init.sql creates for this service.
func checkComposeDatabase(raw, cmd string, pg map[string]*url.Userinfo, initDBs []string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return err
	}
	creds, ok := pg[u.Hostname()]
	switch db := strings.TrimPrefix(u.Path, "/"); {
	case !ok:
		return fmt.Errorf("host %s is no Postgres service", u.Hostname())
	case u.Port() != "5432":
		return fmt.Errorf("port %q; Postgres listens on 5432", u.Port())
	case u.User.String() != creds.String():
		return fmt.Errorf("credentials %s do not match the Postgres service's POSTGRES_USER/POSTGRES_PASSWORD", u.Redacted())
	case db != cmd:
		return fmt.Errorf("database %q; each service owns the database named after it (%q)", db, cmd)
	case !slices.Contains(initDBs, db):
		return fmt.Errorf("database %q is not created by deploy/compose/postgres-init.sql (%v)", db, initDBs)
	}
	return nil
}

// kafkaInitTopics runs the topic-creating init service's script in an in-process shell that
// records every kafka-topics.sh --create instead of running it.
func kafkaInitTopics(t *testing.T, p *composetypes.Project, brokers map[string]string) (map[string]kafkaadmin.Topic, []error) {
	t.Helper()
	var init []composetypes.ServiceConfig
	for _, s := range p.Services {
		if len(s.Entrypoint) > 0 && strings.Contains(strings.Join(s.Command, " "), "kafka-topics.sh") {
			init = append(init, s)
		}
	}
	if len(init) != 1 {
		return nil, []error{fmt.Errorf("want one service that runs kafka-topics.sh, found %d", len(init))}
	}
	s := init[0]
	if !slices.Contains([]string{"bash", "sh"}, path.Base(s.Entrypoint[0])) || len(s.Entrypoint) != 2 || !strings.Contains(s.Entrypoint[1], "c") || len(s.Command) != 1 {
		return nil, []error{fmt.Errorf("service %s: entrypoint %v command of %d parts; want a shell -c and one script", s.Name, s.Entrypoint, len(s.Command))}
	}
	var errs []error
	topics := map[string]kafkaadmin.Topic{}
	record := func(next interp.ExecHandlerFunc) interp.ExecHandlerFunc {
		return func(ctx context.Context, args []string) error {
			if path.Base(args[0]) != "kafka-topics.sh" {
				errs = append(errs, fmt.Errorf("runs %v, which this test does not model", args))
				return nil
			}
			var tp kafkaadmin.Topic
			create := false
			for i := 1; i < len(args); i++ {
				val := func() string {
					if i+1 < len(args) {
						i++
						return args[i]
					}
					return ""
				}
				switch a := args[i]; a {
				case "--create":
					create = true
				case "--bootstrap-server":
					if b := val(); brokers[b] == "" {
						errs = append(errs, fmt.Errorf("--bootstrap-server %s is no advertised listener on the compose network", b))
					}
				case "--topic":
					tp.Name = val()
				case "--partitions":
					tp.Partitions, _ = strconv.Atoi(val())
				case "--replication-factor":
					tp.ReplicationFactor, _ = strconv.Atoi(val())
				case "--config":
					k, v, _ := strings.Cut(val(), "=")
					if tp.Configs == nil {
						tp.Configs = map[string]string{}
					}
					tp.Configs[k] = v
				}
			}
			if create {
				if tp.ReplicationFactor != 1 {
					errs = append(errs, fmt.Errorf("topic %s: replication factor %d on a single broker", tp.Name, tp.ReplicationFactor))
				}
				topics[tp.Name] = tp
			}
			return nil
		}
	}
	file, err := syntax.NewParser().Parse(strings.NewReader(s.Command[0]), s.Name)
	if err != nil {
		return nil, []error{err}
	}
	runner, err := interp.New(interp.ExecHandlers(record), interp.StdIO(nil, io.Discard, io.Discard),
		interp.Env(expand.ListEnviron()), interp.Params("-e"))
	if err != nil {
		return nil, []error{err}
	}
	if err := runner.Run(t.Context(), file); err != nil {
		errs = append(errs, fmt.Errorf("script: %w", err))
	}
	return topics, errs
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

// ---- Kubernetes -------------------------------------------------------------------------------

// kustomizations are the directories kubectl apply -k is pointed at.
var kustomizations = []string{"deploy/base", "deploy/overlays/dev"}

// kafkaTopic is Strimzi's kafka.strimzi.io/v1beta2 KafkaTopic, the fields choreo sets.
type kafkaTopic struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Metadata   metav1.ObjectMeta `json:"metadata"`
	Spec       struct {
		TopicName  string         `json:"topicName"`
		Partitions int            `json:"partitions"`
		Replicas   int            `json:"replicas"`
		Config     map[string]any `json:"config"`
	} `json:"spec"`
}

// manifests is one rendered kustomization, every object decoded strictly.
type manifests struct {
	dir         string
	namespace   string // the kustomization's namespace: field
	image       string // the repository's image after the images: transformer
	deployments []appsv1.Deployment
	services    []corev1.Service
	configMaps  map[string]corev1.ConfigMap
	secrets     map[string]corev1.Secret
	ingresses   []networkingv1.Ingress
	pdbs        []policyv1.PodDisruptionBudget
	topics      []kafkaTopic
}

// renderManifests builds dir with kustomize's own engine, as kubectl apply -k does.
func renderManifests(t *testing.T, root, dir string) manifests {
	t.Helper()
	resMap, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), filepath.Join(root, dir))
	if err != nil {
		t.Fatalf("%s: kustomize build: %v", dir, err)
	}
	m := manifests{dir: dir, configMaps: map[string]corev1.ConfigMap{}, secrets: map[string]corev1.Secret{}}
	m.namespace, m.image = kustomizationFacts(t, root, dir)
	for _, r := range resMap.Resources() {
		y, err := r.AsYAML()
		if err != nil {
			t.Fatalf("%s: %v", dir, err)
		}
		id := fmt.Sprintf("%s: %s %s", dir, r.GetKind(), r.GetName())
		decode := func(apiVersion string, into any) bool {
			if r.GetApiVersion() != apiVersion {
				t.Errorf("%s: apiVersion %s, want %s", id, r.GetApiVersion(), apiVersion)
				return false
			}
			if err := yaml.UnmarshalStrict(y, into); err != nil {
				t.Errorf("%s: %v", id, err)
				return false
			}
			return true
		}
		switch r.GetKind() {
		case "Deployment":
			var o appsv1.Deployment
			if decode("apps/v1", &o) {
				m.deployments = append(m.deployments, o)
			}
		case "Service":
			var o corev1.Service
			if decode("v1", &o) {
				m.services = append(m.services, o)
			}
		case "ConfigMap":
			var o corev1.ConfigMap
			if decode("v1", &o) {
				m.configMaps[o.Name] = o
			}
		case "Secret":
			var o corev1.Secret
			if decode("v1", &o) {
				m.secrets[o.Name] = o
			}
		case "Ingress":
			var o networkingv1.Ingress
			if decode("networking.k8s.io/v1", &o) {
				m.ingresses = append(m.ingresses, o)
			}
		case "PodDisruptionBudget":
			var o policyv1.PodDisruptionBudget
			if decode("policy/v1", &o) {
				m.pdbs = append(m.pdbs, o)
			}
		case "KafkaTopic":
			var o kafkaTopic
			if decode("kafka.strimzi.io/v1beta2", &o) {
				m.topics = append(m.topics, o)
			}
		default:
			t.Errorf("%s: no strict decoder for kind %s; add one to cmd/choreo/deploy_test.go", id, r.GetKind())
		}
		if r.GetKind() != "Namespace" && r.GetNamespace() != m.namespace {
			t.Errorf("%s: namespace %q, the kustomization sets %q", id, r.GetNamespace(), m.namespace)
		}
		for _, msg := range validation.IsDNS1123Subdomain(r.GetName()) {
			t.Errorf("%s: invalid name: %s", id, msg)
		}
	}
	return m
}

// kustomizationFacts reads dir's namespace and the image its images: transformer gives the
// repository's image, the one entry of deploy/base's images: (an overlay's entry overrides it).
func kustomizationFacts(t *testing.T, root, dir string) (namespace, image string) {
	t.Helper()
	read := func(d string) kusttypes.Kustomization {
		b, err := os.ReadFile(filepath.Join(root, d, "kustomization.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		var k kusttypes.Kustomization
		if err := yaml.Unmarshal(b, &k); err != nil {
			t.Fatalf("%s/kustomization.yaml: %v", d, err)
		}
		return k
	}
	base := read("deploy/base")
	if len(base.Images) != 1 {
		t.Fatalf("deploy/base/kustomization.yaml: %d images: entries; want one, the repository's image", len(base.Images))
	}
	img := base.Images[0]
	k := read(dir)
	for _, o := range k.Images {
		if o.Name == img.Name {
			img = o
		}
	}
	image = img.Name
	if img.NewName != "" {
		image = img.NewName
	}
	if img.NewTag != "" {
		image += ":" + img.NewTag
	}
	if img.Digest != "" {
		image += "@" + img.Digest
	}
	return k.Namespace, image
}

// secretTemplate is deploy/base/secret.example.yaml: the keys a real choreo-secrets must have.
func secretTemplate(t *testing.T, root string) corev1.Secret {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "deploy/base/secret.example.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var s corev1.Secret
	if err := yaml.UnmarshalStrict(b, &s); err != nil {
		t.Fatalf("deploy/base/secret.example.yaml: %v", err)
	}
	return s
}

func secretValue(s corev1.Secret, key string) (string, bool) {
	if v, ok := s.StringData[key]; ok {
		return v, true
	}
	v, ok := s.Data[key]
	return string(v), ok
}

func secretKeys(s corev1.Secret) []string {
	keys := slices.Collect(maps.Keys(s.StringData))
	for k := range s.Data {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func TestKubernetesManifests(t *testing.T) {
	root := repoRoot(t)
	img := loadDockerfile(t, root)
	tmpl := secretTemplate(t, root)
	for _, dir := range kustomizations {
		t.Run(strings.ReplaceAll(dir, "/", "_"), func(t *testing.T) {
			m := renderManifests(t, root, dir)
			checkManifests(t, m, img, tmpl)
		})
	}
}

// container is one Deployment's container with the environment it would start with.
type container struct {
	deployment *appsv1.Deployment
	spec       corev1.Container
	cmd        string
	port       int // HTTP_ADDR's
	env        map[string]string
}

func checkManifests(t *testing.T, m manifests, img image, tmpl corev1.Secret) {
	if len(m.deployments) == 0 {
		t.Fatalf("%s: renders no Deployment", m.dir)
	}
	for name, s := range m.secrets {
		if name == tmpl.Name {
			t.Errorf("%s renders Secret %s under the template's name: kubectl apply -k would overwrite real credentials", m.dir, name)
		}
		if keys := secretKeys(s); !slices.Equal(keys, secretKeys(tmpl)) {
			t.Errorf("%s: Secret %s has keys %v, secret.example.yaml %v", m.dir, name, keys, secretKeys(tmpl))
		}
	}

	var containers []container
	byCmd := map[string]*appsv1.Deployment{}
	for i := range m.deployments {
		d := &m.deployments[i]
		id := m.dir + ": Deployment " + d.Name
		pod := d.Spec.Template.Spec
		if sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector); err != nil || !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
			t.Errorf("%s: selector %v does not match its pod labels %v", id, d.Spec.Selector, d.Spec.Template.Labels)
		}
		if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
			t.Errorf("%s: mounts a service-account token; deploy/README.md promises none", id)
		}
		var pdbs []string
		for _, p := range m.pdbs {
			sel, err := metav1.LabelSelectorAsSelector(p.Spec.Selector)
			if err == nil && sel.Matches(labels.Set(d.Spec.Template.Labels)) {
				pdbs = append(pdbs, p.Name)
				if p.Spec.MaxUnavailable == nil || p.Spec.MaxUnavailable.IntValue() < 1 {
					t.Errorf("%s: PodDisruptionBudget %s has no maxUnavailable >= 1; at one replica it would block node drains", id, p.Name)
				}
			}
		}
		if len(pdbs) != 1 {
			t.Errorf("%s: selected by PodDisruptionBudgets %v; want exactly one", id, pdbs)
		}
		for _, c := range pod.Containers {
			cid := id + " container " + c.Name
			if c.Image != m.image {
				t.Errorf("%s: image %s; want the repository's image %s (kustomization images:)", cid, c.Image, m.image)
			}
			if len(c.Command) > 0 && !slices.Equal(c.Command, img.entrypoint) {
				t.Errorf("%s: command %v replaces the image's ENTRYPOINT %v", cid, c.Command, img.entrypoint)
			}
			if len(c.Args) != 1 {
				t.Errorf("%s: args %v; want one subcommand", cid, c.Args)
				continue
			}
			env, errs := containerEnv(m, c, img, tmpl)
			port, perrs := checkProcessEnv(c.Args[0], env)
			for _, err := range append(errs, perrs...) {
				t.Errorf("%s: %v", cid, err)
			}
			if other, dup := byCmd[c.Args[0]]; dup {
				t.Errorf("%s: Deployment %s runs `choreo %s` too", cid, other.Name, c.Args[0])
			}
			byCmd[c.Args[0]] = d
			containers = append(containers, container{deployment: d, spec: c, cmd: c.Args[0], port: port, env: env})
			checkContainer(t, cid, pod, c, port)
			if v := env["DATABASE_URL"]; v != "" {
				if u, err := url.Parse(v); err != nil || strings.TrimPrefix(u.Path, "/") != c.Args[0] {
					t.Errorf("%s: DATABASE_URL names database %q; each service owns the database named after it (%q)", cid, strings.TrimPrefix(u.Path, "/"), c.Args[0])
				}
			}
		}
	}

	portOf := map[*appsv1.Deployment]int{}
	for _, c := range containers {
		portOf[c.deployment] = c.port
	}
	// Services: each selects one Deployment and targets its HTTP port.
	svcTarget := map[string]*appsv1.Deployment{}
	for _, s := range m.services {
		id := m.dir + ": Service " + s.Name
		var selected []*appsv1.Deployment
		for i := range m.deployments {
			d := &m.deployments[i]
			if len(s.Spec.Selector) > 0 && labels.SelectorFromSet(s.Spec.Selector).Matches(labels.Set(d.Spec.Template.Labels)) {
				selected = append(selected, d)
			}
		}
		if len(selected) != 1 {
			t.Errorf("%s: selects %d Deployments; want one", id, len(selected))
			continue
		}
		d := selected[0]
		svcTarget[s.Name] = d
		for _, p := range s.Spec.Ports {
			if got := containerPort(d.Spec.Template.Spec.Containers, p.TargetPort); got != portOf[d] {
				t.Errorf("%s: port %s targets %s, which is container port %d; %s listens on %d (HTTP_ADDR)", id, p.Name, p.TargetPort.String(), got, d.Name, portOf[d])
			}
		}
	}
	// The Ingress reaches the ingress Deployment through its Service.
	if len(m.ingresses) == 0 {
		t.Errorf("%s: no Ingress", m.dir)
	}
	for _, ing := range m.ingresses {
		for _, rule := range ing.Spec.Rules {
			if rule.HTTP == nil {
				t.Errorf("%s: Ingress %s rule %s has no http paths", m.dir, ing.Name, rule.Host)
				continue
			}
			for _, p := range rule.HTTP.Paths {
				be := p.Backend.Service
				if be == nil {
					t.Errorf("%s: Ingress %s path %s has no Service backend", m.dir, ing.Name, p.Path)
					continue
				}
				svc := findService(m.services, be.Name)
				switch {
				case svc == nil:
					t.Errorf("%s: Ingress %s routes to Service %s, which does not exist", m.dir, ing.Name, be.Name)
				case !slices.ContainsFunc(svc.Spec.Ports, func(sp corev1.ServicePort) bool {
					return (be.Port.Name != "" && sp.Name == be.Port.Name) || (be.Port.Number != 0 && sp.Port == be.Port.Number)
				}):
					t.Errorf("%s: Ingress %s routes to port %+v, which Service %s does not have", m.dir, ing.Name, be.Port, be.Name)
				case svcTarget[be.Name] == nil || svcTarget[be.Name] != byCmd["ingress"]:
					t.Errorf("%s: Ingress %s routes to Service %s, which does not select the Deployment running `choreo ingress`", m.dir, ing.Name, be.Name)
				}
			}
		}
	}
	// Upstream URLs (ORDER_URL, ...) name the Service of the Deployment running that subcommand.
	for _, c := range containers {
		for k, v := range c.env {
			upstream, ok := strings.CutSuffix(k, "_URL")
			if !ok || k == "DATABASE_URL" || v == "" {
				continue
			}
			cmd := strings.ToLower(upstream)
			u, err := url.Parse(v)
			if err != nil {
				t.Errorf("%s: %s=%s: %v", m.dir, k, v, err)
				continue
			}
			svcName, _, _ := strings.Cut(u.Hostname(), ".")
			svc := findService(m.services, svcName)
			switch {
			case svc == nil:
				t.Errorf("%s: %s=%s names Service %s, which does not exist", m.dir, k, v, svcName)
			case svcTarget[svcName] != byCmd[cmd]:
				t.Errorf("%s: %s=%s: Service %s does not select the Deployment running `choreo %s`", m.dir, k, v, svcName, cmd)
			case !slices.ContainsFunc(svc.Spec.Ports, func(sp corev1.ServicePort) bool { return strconv.Itoa(int(sp.Port)) == u.Port() }):
				t.Errorf("%s: %s=%s: Service %s has no port %s", m.dir, k, v, svcName, u.Port())
			}
		}
	}
	checkTopics(t, m, containers)
}

// containerEnv is the environment the container starts with: the image's ENV, then envFrom, then
// env; Secret values come from the rendered Secret or, for one created out of band, the template.
func containerEnv(m manifests, c corev1.Container, img image, tmpl corev1.Secret) (map[string]string, []error) {
	env := maps.Clone(img.env)
	var errs []error
	for _, from := range c.EnvFrom {
		switch {
		case from.ConfigMapRef != nil:
			cm, ok := m.configMaps[from.ConfigMapRef.Name]
			if !ok {
				errs = append(errs, fmt.Errorf("envFrom ConfigMap %s is not rendered", from.ConfigMapRef.Name))
			}
			maps.Copy(env, cm.Data) // every key becomes a variable, so checkProcessEnv judges them all
		case from.SecretRef != nil:
			errs = append(errs, fmt.Errorf("envFrom Secret %s: map secret keys one by one", from.SecretRef.Name))
		}
	}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			env[e.Name] = e.Value
		case e.ValueFrom.ConfigMapKeyRef != nil:
			ref := e.ValueFrom.ConfigMapKeyRef
			v, ok := m.configMaps[ref.Name].Data[ref.Key]
			if !ok {
				errs = append(errs, fmt.Errorf("%s: ConfigMap %s has no key %s", e.Name, ref.Name, ref.Key))
			}
			env[e.Name] = v
		case e.ValueFrom.SecretKeyRef != nil:
			ref := e.ValueFrom.SecretKeyRef
			v, ok := secretValue(tmpl, ref.Key)
			if !ok {
				errs = append(errs, fmt.Errorf("%s: key %s is not in deploy/base/secret.example.yaml (%v)", e.Name, ref.Key, secretKeys(tmpl)))
			}
			if s, rendered := m.secrets[ref.Name]; rendered {
				if v, ok = secretValue(s, ref.Key); !ok {
					errs = append(errs, fmt.Errorf("%s: rendered Secret %s has no key %s", e.Name, ref.Name, ref.Key))
				}
			} else if ref.Name != tmpl.Name {
				errs = append(errs, fmt.Errorf("%s: Secret %s is neither rendered nor the template's %s", e.Name, ref.Name, tmpl.Name))
			}
			if ref.Optional == nil || !*ref.Optional || v != "" {
				env[e.Name] = v
			}
		case e.ValueFrom.ResourceFieldRef != nil:
			if !runtimeEnv[e.Name] {
				errs = append(errs, fmt.Errorf("%s comes from %s; only Go runtime variables are", e.Name, e.ValueFrom.ResourceFieldRef.Resource))
			}
			env[e.Name] = "set-by-kubelet"
		default:
			errs = append(errs, fmt.Errorf("%s: unsupported valueFrom", e.Name))
		}
	}
	return env, errs
}

// checkContainer: probes, ports, resources and the restricted Pod Security Standard.
func checkContainer(t *testing.T, id string, pod corev1.PodSpec, c corev1.Container, port int) {
	t.Helper()
	probes := []struct {
		name string
		p    *corev1.Probe
		path string
		need bool
	}{
		{"readinessProbe", c.ReadinessProbe, "/readyz", true},
		{"livenessProbe", c.LivenessProbe, "/healthz", true},
		{"startupProbe", c.StartupProbe, "/healthz", false},
	}
	for _, pr := range probes {
		switch {
		case pr.p == nil && pr.need:
			t.Errorf("%s: no %s", id, pr.name)
		case pr.p == nil:
		case pr.p.HTTPGet == nil:
			t.Errorf("%s: %s is not an httpGet", id, pr.name)
		case pr.p.HTTPGet.Path != pr.path:
			t.Errorf("%s: %s GETs %s, want %s", id, pr.name, pr.p.HTTPGet.Path, pr.path)
		case containerPort([]corev1.Container{c}, pr.p.HTTPGet.Port) != port:
			t.Errorf("%s: %s hits port %s, but HTTP_ADDR listens on %d", id, pr.name, pr.p.HTTPGet.Port.String(), port)
		}
	}
	if !slices.ContainsFunc(c.Ports, func(p corev1.ContainerPort) bool { return int(p.ContainerPort) == port }) {
		t.Errorf("%s: declares ports %v, not HTTP_ADDR's %d", id, c.Ports, port)
	}
	for _, kind := range []struct {
		name string
		list corev1.ResourceList
	}{{"requests", c.Resources.Requests}, {"limits", c.Resources.Limits}} {
		for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			if q, ok := kind.list[r]; !ok || q.IsZero() {
				t.Errorf("%s: resources.%s.%s is not set", id, kind.name, r)
			}
		}
	}
	psc, sc := pod.SecurityContext, c.SecurityContext
	if psc == nil {
		psc = &corev1.PodSecurityContext{}
	}
	if sc == nil {
		sc = &corev1.SecurityContext{}
	}
	pick := func(c, p *bool) bool {
		if c != nil {
			return *c
		}
		return p != nil && *p
	}
	if !pick(sc.RunAsNonRoot, psc.RunAsNonRoot) {
		t.Errorf("%s: runAsNonRoot is not true", id)
	}
	if u := sc.RunAsUser; (u != nil && *u == 0) || (u == nil && psc.RunAsUser != nil && *psc.RunAsUser == 0) {
		t.Errorf("%s: runs as uid 0", id)
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Errorf("%s: allowPrivilegeEscalation is not false (restricted Pod Security Standard)", id)
	}
	if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
		t.Errorf("%s: capabilities do not drop ALL (restricted Pod Security Standard)", id)
	}
	seccomp := sc.SeccompProfile
	if seccomp == nil {
		seccomp = psc.SeccompProfile
	}
	if seccomp == nil || (seccomp.Type != corev1.SeccompProfileTypeRuntimeDefault && seccomp.Type != corev1.SeccompProfileTypeLocalhost) {
		t.Errorf("%s: no RuntimeDefault/Localhost seccompProfile (restricted Pod Security Standard)", id)
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Errorf("%s: the root filesystem is writable; deploy/README.md promises read-only", id)
	}
}

// containerPort resolves a probe's or Service's port (a name or a number) in containers; 0 when
// it names no declared port.
func containerPort(cs []corev1.Container, p intstr.IntOrString) int {
	for _, c := range cs {
		for _, cp := range c.Ports {
			if (p.Type == intstr.String && cp.Name == p.StrVal) || (p.Type == intstr.Int && cp.ContainerPort == p.IntVal) {
				return int(cp.ContainerPort)
			}
		}
	}
	if p.Type == intstr.Int {
		return int(p.IntVal) // a number needs no declaration
	}
	return 0
}

func findService(svcs []corev1.Service, name string) *corev1.Service {
	for i := range svcs {
		if svcs[i].Name == name {
			return &svcs[i]
		}
	}
	return nil
}

// checkTopics: the KafkaTopics are internal/system.Topics with the partitions the processes use,
// on the Strimzi cluster KAFKA_BROKERS points at.
func checkTopics(t *testing.T, m manifests, containers []container) {
	t.Helper()
	if len(m.topics) == 0 {
		return // a managed Kafka: the overlay dropped topics.yaml (deploy/README.md)
	}
	partitions := ""
	for _, c := range containers {
		if v := c.env["KAFKA_PARTITIONS"]; v != "" && partitions != "" && v != partitions {
			t.Errorf("%s: Deployment %s has KAFKA_PARTITIONS=%s, another %s", m.dir, c.deployment.Name, v, partitions)
		} else if v != "" {
			partitions = v
		}
	}
	if partitions == "" {
		partitions = settingDefault("KAFKA_PARTITIONS")
	}
	got := map[string]kafkaadmin.Topic{}
	clusters := map[string]bool{}
	for _, kt := range m.topics {
		id := m.dir + ": KafkaTopic " + kt.Metadata.Name
		name := kt.Spec.TopicName
		if name == "" {
			name = kt.Metadata.Name
		}
		configs := map[string]string{}
		for k, v := range kt.Spec.Config {
			configs[k] = fmt.Sprint(v)
		}
		// Strimzi-only settings; internal/system.Topics leaves them to the broker.
		minISR, _ := strconv.Atoi(configs["min.insync.replicas"])
		delete(configs, "min.insync.replicas")
		if kt.Spec.Replicas < 1 || minISR > kt.Spec.Replicas {
			t.Errorf("%s: replicas %d, min.insync.replicas %d: writes with acks=all could never succeed", id, kt.Spec.Replicas, minISR)
		}
		got[name] = kafkaadmin.Topic{Name: name, Partitions: kt.Spec.Partitions, Configs: configs}
		cluster := kt.Metadata.Labels["strimzi.io/cluster"]
		if cluster == "" {
			t.Errorf("%s: no strimzi.io/cluster label: no Topic Operator reconciles it", id)
		}
		clusters[cluster] = true
	}
	compareTopics(t, m.dir, got, wantTopics(t, partitions))
	for _, c := range containers {
		for _, b := range strings.Split(c.env["KAFKA_BROKERS"], ",") {
			host, port, _ := net.SplitHostPort(b)
			cluster, isStrimzi := strings.CutSuffix(host, "-kafka-bootstrap")
			if b != "" && (!isStrimzi || !clusters[cluster] || port != "9092") {
				t.Errorf("%s: Deployment %s: KAFKA_BROKERS %s is not the plain bootstrap (<cluster>-kafka-bootstrap:9092) of the KafkaTopics' cluster %v", m.dir, c.deployment.Name, b, slices.Sorted(maps.Keys(clusters)))
			}
		}
	}
}
