package pgembed

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

const (
	confName    = "pgembed.conf"
	includeLine = "include_if_exists = '" + confName + "'"
)

// settings are rewritten on every start, since the port and the socket
// directory change between runs of a persistent cluster.
type settings struct {
	port      int
	socketDir string
	durable   bool
	preload   []string
}

func (s settings) render() []byte {
	var b bytes.Buffer
	b.WriteString("# Written by choreo's pgembed on every start; edits are lost.\n")
	fmt.Fprintf(&b, "listen_addresses = '127.0.0.1'\n")
	fmt.Fprintf(&b, "port = %d\n", s.port)
	fmt.Fprintf(&b, "unix_socket_directories = %s\n", quote(s.socketDir))
	fmt.Fprintf(&b, "max_connections = 200\n")
	// Each service's outbox is a queue vacuumed after every 500 deletes (outbox/migrations/005); the
	// default naptime (1 min per database) would let a busy relay's dead rows pile up between visits.
	b.WriteString("autovacuum_naptime = 5s\n")
	if len(s.preload) > 0 {
		fmt.Fprintf(&b, "shared_preload_libraries = %s\n", quote(strings.Join(s.preload, ",")))
	}
	if !s.durable {
		// Test data is thrown away, so a crash may lose it: skip the flushes.
		b.WriteString("fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n")
	}
	return b.Bytes()
}

func quote(v string) string {
	return "'" + strings.ReplaceAll(v, "'", "''") + "'"
}

// writeConf writes pgembed.conf into dataDir and makes postgresql.conf
// include it, last, so its settings win.
func writeConf(dataDir string, s settings, owner *account) error {
	path := filepath.Join(dataDir, confName)
	if err := os.WriteFile(path, s.render(), 0o600); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := owner.chown(path); err != nil {
		return err
	}
	main := filepath.Join(dataDir, "postgresql.conf")
	current, err := os.ReadFile(main)
	if err != nil {
		return fmt.Errorf("read %s: %w", main, err)
	}
	if bytes.Contains(current, []byte(includeLine)) {
		return nil
	}
	f, err := os.OpenFile(main, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", main, err)
	}
	if _, err := fmt.Fprintf(f, "\n%s\n", includeLine); err != nil {
		f.Close()
		return fmt.Errorf("append include to %s: %w", main, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", main, err)
	}
	return nil
}
