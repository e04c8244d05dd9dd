package deploy

import (
	"encoding/json"
	"maps"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	composetypes "github.com/compose-spec/compose-go/v2/types"
	"sigs.k8s.io/yaml"
)

// ---- Prometheus, Grafana and Jaeger of the compose stack ------------------------------------------

// grafanaDashboards is where the provisioned dashboards are kept in the repository.
const grafanaDashboards = "deploy/grafana/dashboards"

// TestDashboardQueriesExportedMetrics parses every PromQL query of every provisioned dashboard and checks
// each metric it names is one the binary exports (`choreo help -json`, "metrics"): a renamed metric
// would otherwise leave an empty panel that nobody notices until an incident.
func TestDashboardQueriesExportedMetrics(t *testing.T) {
	exported := map[string]bool{}
	for _, m := range built.Metrics {
		exported[m.Name] = true
	}
	if !exported["choreo_consumer_lag_messages"] {
		t.Fatalf("choreo help -json lists %d metrics, without choreo_consumer_lag_messages", len(built.Metrics))
	}
	files, _ := filepath.Glob(filepath.Join(built.root, grafanaDashboards, "*.json"))
	if len(files) == 0 {
		t.Fatalf("no dashboards in %s", grafanaDashboards)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var dash any
		if err := json.Unmarshal(b, &dash); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		exprs := queries(dash)
		if len(exprs) == 0 {
			t.Errorf("%s: no PromQL queries", f)
		}
		for _, e := range exprs {
			names := promqlMetrics(e)
			if len(names) == 0 {
				t.Errorf("%s: query %q names no metric", filepath.Base(f), e)
			}
			for _, n := range names {
				if !exported[n] && !exported[histogramFamily(n)] {
					t.Errorf("%s: query %q reads %s, which choreo does not export", filepath.Base(f), e, n)
				}
			}
		}
	}
}

func TestPromQLMetricNames(t *testing.T) {
	for expr, want := range map[string][]string{
		`sum by (group) (choreo_consumer_lag_messages)`:                                                                      {"choreo_consumer_lag_messages"},
		`histogram_quantile(0.95, sum by (le, event_type) (rate(choreo_handler_duration_seconds_bucket[$__rate_interval])))`: {"choreo_handler_duration_seconds_bucket"},
		`rate(a_total{service="order", reason=~"x|y"}[5m]) / on(service) group_left b offset 1h > bool 0`:                    {"a_total", "b"},
		`{__name__="named_metric"}`:                           {"named_metric"},
		`min(up) without (instance) and count_values("v", c)`: {"c", "up"},
	} {
		if got := promqlMetrics(expr); !slices.Equal(got, want) {
			t.Errorf("promqlMetrics(%q) = %v, want %v", expr, got, want)
		}
	}
}

// TestObservabilityStack checks the compose file's Prometheus scrapes every choreo process that serves
// /metrics, its Grafana mounts the provisioning and the dashboards where the provisioning looks, and
// every process that exports spans sends them to a service of the stack.
func TestObservabilityStack(t *testing.T) {
	root := built.root
	p := loadCompose(t, root)

	var want []string // host:port of every choreo process that serves /metrics
	for _, s := range choreoServices(t, p) {
		c, ok := built.command(s.Command[0])
		if !ok || !c.Metrics {
			continue
		}
		env := serviceEnv(s)
		addr := env["HTTP_ADDR"]
		if addr == "" {
			addr = built.settingDefault("HTTP_ADDR")
		}
		_, port, err := net.SplitHostPort(addr)
		if err != nil {
			t.Fatalf("service %s: HTTP_ADDR %q: %v", s.Name, addr, err)
		}
		want = append(want, net.JoinHostPort(s.Name, port))
		if slices.Contains(c.Settings, "OTEL_EXPORTER_OTLP_ENDPOINT") {
			u, err := url.Parse(env["OTEL_EXPORTER_OTLP_ENDPOINT"])
			if err != nil || u.Hostname() == "" {
				t.Errorf("service %s exports no spans: OTEL_EXPORTER_OTLP_ENDPOINT %q", s.Name, env["OTEL_EXPORTER_OTLP_ENDPOINT"])
			} else if _, ok := p.Services[u.Hostname()]; !ok {
				t.Errorf("service %s sends spans to %s, which is no service of the compose file", s.Name, u.Host)
			}
		}
	}
	if len(want) == 0 {
		t.Fatal("no choreo service serves /metrics")
	}
	slices.Sort(want)

	prom, ok := p.Services["prometheus"]
	if !ok {
		t.Fatal("docker-compose.yml has no prometheus service")
	}
	var cfg struct {
		ScrapeConfigs []struct {
			MetricsPath   string `json:"metrics_path"`
			StaticConfigs []struct {
				Targets []string `json:"targets"`
			} `json:"static_configs"`
		} `json:"scrape_configs"`
	}
	readYAML(t, mountedFile(t, root, prom.Volumes, "/etc/prometheus/prometheus.yml"), &cfg)
	var got []string
	for _, sc := range cfg.ScrapeConfigs {
		if sc.MetricsPath != "" && sc.MetricsPath != "/metrics" {
			t.Errorf("prometheus scrapes %s, choreo serves /metrics", sc.MetricsPath)
		}
		for _, st := range sc.StaticConfigs {
			got = append(got, st.Targets...)
		}
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("prometheus scrapes %v, want every choreo process serving /metrics: %v", got, want)
	}

	graf, ok := p.Services["grafana"]
	if !ok {
		t.Fatal("docker-compose.yml has no grafana service")
	}
	var providers struct {
		Providers []struct {
			Options struct {
				Path string `json:"path"`
			} `json:"options"`
		} `json:"providers"`
	}
	readYAML(t, mountedFile(t, root, graf.Volumes, "/etc/grafana/provisioning/dashboards/dashboards.yml"), &providers)
	if len(providers.Providers) != 1 {
		t.Fatalf("grafana dashboard providers %+v, want one", providers.Providers)
	}
	dir := mountedFile(t, root, graf.Volumes, providers.Providers[0].Options.Path)
	if rel, _ := filepath.Rel(root, dir); rel != grafanaDashboards {
		t.Errorf("grafana loads dashboards from %s (mounted at %s), want %s", rel, providers.Providers[0].Options.Path, grafanaDashboards)
	}
}

// mountedFile returns the repository file (or directory) that volumes mount at target in a container,
// directly or inside a mounted directory.
func mountedFile(t *testing.T, root string, volumes []composetypes.ServiceVolumeConfig, target string) string {
	t.Helper()
	for _, v := range volumes {
		if v.Type != "bind" {
			continue
		}
		rel, err := filepath.Rel(v.Target, target)
		if err != nil || strings.HasPrefix(rel, "..") {
			continue
		}
		src := filepath.Join(v.Source, rel)
		if _, err := os.Stat(src); err != nil {
			t.Fatalf("%s is mounted from %s, which does not exist", target, src)
		}
		if !strings.HasPrefix(src, root+string(filepath.Separator)) {
			t.Fatalf("%s is mounted from %s, outside the repository", target, src)
		}
		return src
	}
	t.Fatalf("no volume mounts %s", target)
	return ""
}

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// queries returns every "expr" string in a dashboard's JSON, at any depth (panels, rows, templating).
func queries(v any) []string {
	var out []string
	switch x := v.(type) {
	case map[string]any:
		for _, k := range slices.Sorted(maps.Keys(x)) {
			if s, ok := x[k].(string); ok && k == "expr" {
				out = append(out, s)
				continue
			}
			out = append(out, queries(x[k])...)
		}
	case []any:
		for _, e := range x {
			out = append(out, queries(e)...)
		}
	}
	return out
}

var (
	promString   = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|` + "`[^`]*`")
	promNameEq   = regexp.MustCompile(`__name__\s*=\s*"([^"]+)"`)
	promMatchers = regexp.MustCompile(`\{[^}]*\}`)
	promRange    = regexp.MustCompile(`\[[^\]]*\]`)
	promGrouping = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	promIdent    = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*`)
	promKeywords = map[string]bool{"by": true, "without": true, "on": true, "ignoring": true, "group_left": true,
		"group_right": true, "bool": true, "offset": true, "and": true, "or": true, "unless": true, "atan2": true,
		"inf": true, "nan": true, "Inf": true, "NaN": true}
)

// promqlMetrics returns the metric names a PromQL expression reads, sorted: the identifiers that are not
// functions (followed by "("), keywords, label names (in matchers and groupings) or strings.
func promqlMetrics(expr string) []string {
	names := map[string]bool{}
	for _, m := range promNameEq.FindAllStringSubmatch(expr, -1) {
		names[m[1]] = true
	}
	e := promMatchers.ReplaceAllString(expr, " ")
	e = promString.ReplaceAllString(e, " ")
	e = promRange.ReplaceAllString(e, " ")
	e = promGrouping.ReplaceAllString(e, " ")
	for _, loc := range promIdent.FindAllStringIndex(e, -1) {
		id := e[loc[0]:loc[1]]
		rest := strings.TrimLeft(e[loc[1]:], " \t\n")
		if promKeywords[id] || strings.HasPrefix(rest, "(") || (loc[0] > 0 && isDigitish(e[loc[0]-1])) {
			continue
		}
		names[id] = true
	}
	return slices.Sorted(maps.Keys(names))
}

// isDigitish says whether an identifier starting after b is part of a number (1e3, 0x1f, 5m).
func isDigitish(b byte) bool { return b >= '0' && b <= '9' || b == '.' }

// histogramFamily is the family a histogram's series belongs to: x for x_bucket, x_sum and x_count.
func histogramFamily(series string) string {
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if strings.HasSuffix(series, suffix) {
			return strings.TrimSuffix(series, suffix)
		}
	}
	return series
}
