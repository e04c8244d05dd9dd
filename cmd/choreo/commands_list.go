package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/choreo-dev/choreo/cmd/choreo/system"
	"github.com/choreo-dev/choreo/internal/host"
)

// command is one subcommand of choreo.
type command struct {
	name string
	args string // its arguments, as placeholders for the usage text ("SERVICE")
	doc  string
	// service: it hosts one unit of system.Specs, so it reads the settings marked anyService.
	service bool
	// serves: it runs until stopped and serves /healthz and /readyz on HTTP_ADDR, so a container
	// may run it as its main process behind probes.
	serves bool
	// needs are the settings it refuses to start without.
	needs []string
	// flags, when set, binds the command's own flags (and their environment defaults) beside its settings'
	// (their values reach run through the closure that made both).
	flags func(fs *flag.FlagSet, getenv func(string) string)
	run   func(ctx context.Context, cfg Config, args []string, stdout io.Writer) error
	// own, set instead of run, takes the arguments and the environment as they are: a command about
	// other commands, which reads no settings itself.
	own func(args []string, getenv func(string) string, stdout, stderr io.Writer) error
}

// reads says whether the command reads setting s.
func (c command) reads(s setting) bool {
	return slices.Contains(s.readBy, c.name) || (c.service && slices.Contains(s.readBy, anyService))
}

// settingNames are the environment variables the command reads, in the order of settings().
func (c command) settingNames() []string {
	var names []string
	for _, s := range settings() {
		if c.reads(s) {
			names = append(names, s.env)
		}
	}
	return names
}

// commands lists every subcommand. The hosted units come from system.Specs, the one list of what choreo
// runs, so a new service gets its command, its line in the usage text and its deployment checks from its
// spec alone.
func commands() []command {
	cmds := []command{{
		name: "run", serves: true,
		doc: "everything in one process; embedded Kafka and Postgres unless KAFKA_BROKERS/DATABASE_URL are set",
		run: func(ctx context.Context, cfg Config, _ []string, stdout io.Writer) error {
			return runAll(ctx, cfg, stdout)
		},
	}}
	for _, spec := range system.Specs(system.Config{}) {
		cmds = append(cmds, command{
			name: spec.Name, doc: spec.Doc, service: true, serves: true, needs: []string{"KAFKA_BROKERS", "DATABASE_URL"},
			run: func(ctx context.Context, cfg Config, _ []string, _ io.Writer) error {
				return runService(ctx, spec.Name, cfg)
			},
		})
	}
	var dryRun bool
	return append(cmds,
		command{name: "ingress", serves: true, doc: "the HTTP front door routing to the services",
			run: func(ctx context.Context, cfg Config, _ []string, _ io.Writer) error { return runIngress(ctx, cfg) }},
		command{name: "topics", needs: []string{"KAFKA_BROKERS"},
			doc: "create every topic with its partitions, then exit; -dry-run prints them as JSON instead",
			flags: func(fs *flag.FlagSet, _ func(string) string) {
				fs.BoolVar(&dryRun, "dry-run", false, "print the topics as JSON (name, partitions, configs) and create nothing; needs no broker")
			},
			run: func(ctx context.Context, cfg Config, _ []string, stdout io.Writer) error {
				if dryRun {
					return printTopics(cfg, stdout)
				}
				return createTopics(ctx, cfg, stdout)
			}},
		// replay and dlq need both KAFKA_BROKERS and DATABASE_URL, or neither (the embedded data of `choreo run`,
		// running or not).
		replayCommand(),
		command{name: "dlq", args: "SERVICE", doc: "list the service's dead letters; 'dlq SERVICE redrive' hands them back once fixed; 'dlq SERVICE parked' lists its parked keys, 'dlq SERVICE release KEY|--all' applies them in order",
			run: deadLetters},
		loadCommand(),
		command{name: "healthcheck", doc: "exit 0 if this container's /healthz answers (for image health checks)",
			run: func(ctx context.Context, cfg Config, _ []string, _ io.Writer) error { return healthcheck(ctx, cfg) }},
		command{name: "config", args: "COMMAND", doc: "check the environment (and flags) as COMMAND would read them; print its settings as JSON",
			own: checkConfig},
		tokenCommand(),
		command{name: "saga", doc: "print the saga's documentation (docs/saga.md)",
			run: func(_ context.Context, _ Config, _ []string, stdout io.Writer) error { return printSaga(stdout) }},
	)
}

// commandNames is the name of every subcommand, in the order of commands.
func commandNames() []string {
	var names []string
	for _, c := range commands() {
		names = append(names, c.name)
	}
	return names
}

// lookupCommand returns the subcommand called name.
func lookupCommand(name string) (command, bool) {
	for _, c := range commands() {
		if c.name == name {
			return c, true
		}
	}
	return command{}, false
}

// usage is the text of `choreo help`.
func usage() string {
	var b strings.Builder
	b.WriteString("choreo: an event-driven order saga on Kafka and Postgres\n\nUsage: choreo <command> [flags]\n\nCommands:\n")
	for _, c := range commands() {
		name := strings.TrimSpace(c.name + " " + c.args)
		fmt.Fprintf(&b, "  %-16s %s\n", name, c.doc)
	}
	b.WriteString("\nEvery setting is an environment variable and a flag; 'choreo <command> -h' lists those the command reads,\n" +
		"'choreo config <command>' checks them. 'choreo help -json' describes every command and setting for tools.\n")
	return b.String()
}

// flagSet is the flag set of cmd: the flags of the settings it reads (added by loadConfig) and its own.
func flagSet(cmd command, stderr io.Writer, getenv func(string) string) *flag.FlagSet {
	fs := flag.NewFlagSet("choreo "+cmd.name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: choreo %s [flags]\n\n%s\n", strings.TrimSpace(cmd.name+" "+cmd.args), cmd.doc)
		n := 0
		fs.VisitAll(func(*flag.Flag) { n++ })
		if n == 0 {
			fmt.Fprintln(stderr, "\nIt reads no settings.")
			return
		}
		fmt.Fprintln(stderr, "\nFlags (a setting's flag overrides its environment variable):")
		fs.PrintDefaults()
	}
	if cmd.flags != nil {
		cmd.flags(fs, getenv)
	}
	return fs
}

// catalog is `choreo help -json`: what tools (the deployment checks in deploy/) learn about the binary.
type catalog struct {
	Commands []catalogCommand  `json:"commands"`
	Settings []catalogSetting  `json:"settings"`
	Metrics  []host.MetricInfo `json:"metrics"` // every metric family /metrics may serve
}

type catalogCommand struct {
	Name     string   `json:"name"`
	Args     string   `json:"args,omitempty"`
	Doc      string   `json:"doc"`
	Serves   bool     `json:"serves"`   // runs until stopped, serving /healthz and /readyz on HTTP_ADDR
	Metrics  bool     `json:"metrics"`  // serves /metrics on HTTP_ADDR too
	Needs    []string `json:"needs"`    // settings it refuses to start without
	Settings []string `json:"settings"` // every setting it reads
}

type catalogSetting struct {
	Env     string `json:"env"`
	Flag    string `json:"flag"`
	Default string `json:"default"`
	Secret  bool   `json:"secret"`
	Usage   string `json:"usage"`
}

func printCatalog(stdout io.Writer) error {
	cat := catalog{}
	for _, c := range commands() {
		cat.Commands = append(cat.Commands, catalogCommand{
			Name: c.name, Args: c.args, Doc: c.doc, Serves: c.serves, Metrics: c.service || c.name == "run",
			Needs: append([]string{}, c.needs...), Settings: append([]string{}, c.settingNames()...),
		})
	}
	for _, s := range settings() {
		cat.Settings = append(cat.Settings, catalogSetting{Env: s.env, Flag: "-" + flagName(s.env), Default: s.def, Secret: s.secret, Usage: s.usage})
	}
	cat.Metrics = host.MetricFamilies(system.Specs(system.Config{}))
	return writeJSON(stdout, cat)
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
