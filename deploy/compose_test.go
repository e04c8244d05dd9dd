package deploy

import (
	"context"
	"fmt"
	composeloader "github.com/compose-spec/compose-go/v2/loader"
	composetypes "github.com/compose-spec/compose-go/v2/types"
	"io"
	"maps"
	"mvdan.cc/sh/v3/expand"
	"mvdan.cc/sh/v3/interp"
	"mvdan.cc/sh/v3/syntax"
	"net"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

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
	root := built.root
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
		own := serviceEnv(s)
		env, ambient := maps.Clone(img.env), map[string]bool{}
		for k := range img.env {
			ambient[k] = true
		}
		for k, v := range own {
			env[k] = v
			delete(ambient, k)
		}
		port, errs := checkProcessEnv(cmd, env, ambient)
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
		partitions = built.settingDefault("KAFKA_PARTITIONS")
	}
	got, errs := kafkaInitTopics(t, p, brokers)
	for _, err := range errs {
		t.Errorf("kafka-init: %v", err)
	}
	compareTopics(t, "docker-compose.yml kafka-init", got, wantTopics(t, partitions))
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
func kafkaInitTopics(t *testing.T, p *composetypes.Project, brokers map[string]string) (map[string]topic, []error) {
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
	topics := map[string]topic{}
	record := func(next interp.ExecHandlerFunc) interp.ExecHandlerFunc {
		return func(ctx context.Context, args []string) error {
			if path.Base(args[0]) != "kafka-topics.sh" {
				errs = append(errs, fmt.Errorf("runs %v, which this test does not model", args))
				return nil
			}
			var tp topic
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
