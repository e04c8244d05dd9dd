// Package chaos is the chaos rig behind `make chaos`: the services run as separate `choreo` processes on a
// real Kafka broker (scripts/kafka.sh) and a Postgres cluster (pgembed); during a load of orders it kills
// service processes with SIGKILL and restarts them, restarts the broker and Postgres and adds a second
// instance of a service (a rebalance), then checks every saga ended, stock and money are conserved, each
// order got exactly one notification and no effect was applied twice. Its test carries the build tag
// "chaos", so `make test` leaves it out.
package chaos
