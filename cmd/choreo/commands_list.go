package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/choreo-dev/choreo/cmd/choreo/system"
)

// command is one subcommand of choreo.
type command struct {
	name string
	args string // its arguments, as placeholders for the usage text ("SERVICE")
	doc  string
	// serves: it runs until stopped and serves /healthz and /readyz on HTTP_ADDR, so a container
	// may run it as its main process behind probes.
	serves bool
	// needs are the settings it refuses to start without.
	needs []string
	// flags, when set, binds the command's own flags (and their environment defaults) beside the settings.
	flags func(fs *flag.FlagSet, getenv func(string) string)
	run   func(ctx context.Context, cfg Config, args []string, stdout io.Writer) error
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
			name: spec.Name, doc: spec.Doc, serves: true, needs: []string{"KAFKA_BROKERS", "DATABASE_URL"},
			run: func(ctx context.Context, cfg Config, _ []string, _ io.Writer) error {
				return runService(ctx, spec.Name, cfg)
			},
		})
	}
	return append(cmds,
		command{name: "ingress", serves: true, doc: "the HTTP front door routing to the services",
			run: func(ctx context.Context, cfg Config, _ []string, _ io.Writer) error { return runIngress(ctx, cfg) }},
		command{name: "topics", needs: []string{"KAFKA_BROKERS"}, doc: "create every topic with its partitions, then exit",
			run: func(ctx context.Context, cfg Config, _ []string, stdout io.Writer) error {
				return createTopics(ctx, cfg, stdout)
			}},
		// replay and dlq need both KAFKA_BROKERS and DATABASE_URL, or neither (the embedded data of `choreo run`).
		command{name: "replay", doc: "wipe the order read model and its consumer group so it is rebuilt from the topics",
			run: func(ctx context.Context, cfg Config, _ []string, stdout io.Writer) error {
				return replayReadModel(ctx, cfg, stdout)
			}},
		command{name: "dlq", args: "SERVICE", doc: "list the service's dead letters; 'dlq SERVICE redrive' hands them back once fixed",
			run: deadLetters},
		loadCommand(),
		command{name: "healthcheck", doc: "exit 0 if this container's /healthz answers (for image health checks)",
			run: func(ctx context.Context, cfg Config, _ []string, _ io.Writer) error { return healthcheck(ctx, cfg) }},
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
		fmt.Fprintf(&b, "  %-14s %s\n", name, c.doc)
	}
	b.WriteString("\nEvery setting is an environment variable and a flag; see 'choreo <command> -h'.\n")
	return b.String()
}
