// Command choreo runs the choreo system: every service in one process (`choreo run`), or one service,
// the read model or the ingress per process for container deployments.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

const usage = `choreo: an event-driven order saga on Kafka and Postgres

Usage: choreo <command> [flags]

Commands:
  run            everything in one process; embedded Kafka and Postgres unless KAFKA_BROKERS/DATABASE_URL are set
  order          the order service            inventory      the inventory service
  payment        the payment service          shipping       the shipping service
  notification   the notification service     orderview      the order read model and timeline pages
  ingress        the HTTP front door routing to the services
  topics         create every topic with its partitions, then exit
  replay         wipe the order read model and its consumer group so it is rebuilt from the topics
  dlq SERVICE    list the service's dead letters; 'dlq SERVICE redrive' hands them back once fixed
  healthcheck    exit 0 if this container's /healthz answers (for image health checks)
  saga           print the saga's documentation (docs/saga.md)

Every setting is an environment variable and a flag; see 'choreo <command> -h'.
`

func main() {
	if err := run(context.Background(), os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "choreo:", err)
		}
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stdout, usage)
		return nil
	}
	cmd, args := args[0], args[1:]
	fs := flag.NewFlagSet("choreo "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg, err := loadConfig(fs, args, getenv)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	// After the first signal starts the graceful shutdown, a second one ends the process at once.
	context.AfterFunc(ctx, stop)

	switch cmd {
	case "run":
		return runAll(ctx, cfg, stdout)
	case "order", "inventory", "payment", "shipping", "notification", "orderview":
		return runService(ctx, cmd, cfg)
	case "ingress":
		return runIngress(ctx, cfg)
	case "topics":
		return createTopics(ctx, cfg, stdout)
	case "replay":
		return replayReadModel(ctx, cfg, stdout)
	case "dlq":
		return deadLetters(ctx, cfg, fs.Args(), stdout)
	case "healthcheck":
		return healthcheck(ctx, cfg)
	case "saga":
		return printSaga(stdout)
	}
	return fmt.Errorf("unknown command %q; run 'choreo help'", cmd)
}
