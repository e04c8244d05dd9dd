package pgembed

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"syscall"
)

// watchdog stops the server, and removes its private directory, when this
// process dies without calling Stop (a panicking or killed test binary): a
// shell waits for EOF on a pipe that only this process holds open. It runs
// in its own process group so the Ctrl-C that kills us does not kill it.
type watchdog struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
}

const watchdogScript = `cat >/dev/null; "$0" -D "$1" stop -m "$2" -w -t 60 >/dev/null 2>&1; rm -rf "$3"`

func startWatchdog(owner *account, pgCtl, dataDir, mode, removeDir string) (*watchdog, error) {
	cmd := owner.command(context.Background(), "/", "/bin/sh", "-c", watchdogScript, pgCtl, dataDir, mode, removeDir)
	cmd.SysProcAttr.Setpgid = true
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("create watchdog pipe: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start watchdog: %w", err)
	}
	return &watchdog{cmd: cmd, stdin: stdin}, nil
}

// cancel ends the watchdog without letting it act: Stop has done its job.
func (w *watchdog) cancel() error {
	if err := syscall.Kill(-w.cmd.Process.Pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("kill watchdog %d: %w", w.cmd.Process.Pid, err)
	}
	w.stdin.Close()
	_ = w.cmd.Wait() // killed on purpose: its exit status says nothing
	return nil
}

// release lets the watchdog act now, in the background: it stops the server
// and removes the private directory as if this process had died.
func (w *watchdog) release() {
	w.stdin.Close()
	go func() { _ = w.cmd.Wait() }() // reap the shell; its status tells us nothing
}
