package deploy

import (
	"bytes"
	"context"
	"fmt"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/linter"
	dfparser "github.com/moby/buildkit/frontend/dockerfile/parser"
	dfshell "github.com/moby/buildkit/frontend/dockerfile/shell"
	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
	goversion "go/version"
	"maps"
	"mvdan.cc/sh/v3/expand"
	"mvdan.cc/sh/v3/syntax"
	"net"
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
)

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
	root := built.root
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
