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

func main() {
	err := run(context.Background(), os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	switch {
	case errors.Is(err, flag.ErrHelp): // -h: the usage is printed; asking for it is no failure
	case err != nil:
		fmt.Fprintln(os.Stderr, "choreo:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		if len(args) > 1 && (args[1] == "-json" || args[1] == "--json") {
			return printCatalog(stdout)
		}
		fmt.Fprint(stdout, usage())
		return nil
	}
	cmd, ok := lookupCommand(args[0])
	if !ok {
		return fmt.Errorf("unknown command %q; run 'choreo help'", args[0])
	}
	if cmd.own != nil {
		return cmd.own(args[1:], getenv, stdout, stderr)
	}
	fs := flagSet(cmd, stderr, getenv)
	cfg, err := loadConfig(fs, cmd, args[1:], getenv)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	// After the first signal starts the graceful shutdown, a second one ends the process at once.
	context.AfterFunc(ctx, stop)

	return cmd.run(ctx, cfg, fs.Args(), stdout)
}
