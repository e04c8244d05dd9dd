package main

// command is one subcommand that run dispatches.
type command struct {
	name string
	// serves: it runs until stopped and serves /healthz and /readyz on HTTP_ADDR, so a container
	// may run it as its main process behind probes.
	serves bool
	// needs are the settings it refuses to start without.
	needs []string
}

// commands lists every subcommand of run's switch, as data for the deployment tests, which also
// check that the switch and the usage text name exactly these.
func commands() []command {
	infra := []string{"KAFKA_BROKERS", "DATABASE_URL"} // runService
	return []command{
		{name: "run", serves: true},
		{name: "order", serves: true, needs: infra},
		{name: "inventory", serves: true, needs: infra},
		{name: "payment", serves: true, needs: infra},
		{name: "shipping", serves: true, needs: infra},
		{name: "notification", serves: true, needs: infra},
		{name: "orderview", serves: true, needs: infra},
		{name: "ingress", serves: true},
		{name: "topics", needs: []string{"KAFKA_BROKERS"}},
		{name: "replay"}, // both KAFKA_BROKERS and DATABASE_URL, or neither (embedded data)
		{name: "dlq"},    // the same
		{name: "healthcheck"},
		{name: "saga"},
	}
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
