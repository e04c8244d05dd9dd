package pgembed

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestFindBinDir(t *testing.T) {
	root := t.TempDir()
	install := func(dir string, names ...string) string {
		t.Helper()
		full := filepath.Join(root, dir)
		if err := os.MkdirAll(full, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, n := range names {
			if err := os.WriteFile(filepath.Join(full, n), []byte("#!/bin/sh\n"), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		return full
	}
	v96 := install("lib/9.6/bin", "initdb", "pg_ctl", "postgres")
	v15 := install("lib/15/bin", "initdb", "pg_ctl", "postgres")
	install("lib/16/bin", "initdb") // incomplete: no pg_ctl
	onlyLib := filepath.Join(root, "only")
	install("only/9.6/bin", "initdb", "pg_ctl")
	links := install("links")
	for _, n := range []string{"initdb", "pg_ctl", "postgres"} {
		if err := os.Symlink(filepath.Join(v96, n), filepath.Join(links, n)); err != nil {
			t.Fatal(err)
		}
	}
	plain := install("plain", "initdb", "pg_ctl")
	empty := install("empty")

	tests := []struct {
		name, path, root, want string
	}{
		{"PATH wins over the versioned tree", plain, filepath.Join(root, "lib"), plain},
		{"symlinks on PATH resolve to the installation", empty + ":" + links, filepath.Join(root, "lib"), v96},
		{"highest complete version", empty, filepath.Join(root, "lib"), v15},
		{"versions compare as numbers", "", onlyLib, filepath.Join(onlyLib, "9.6", "bin")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := findBinDir(tt.path, tt.root)
			if err != nil {
				t.Fatalf("findBinDir: %v", err)
			}
			if got != tt.want {
				t.Errorf("findBinDir = %s, want %s", got, tt.want)
			}
		})
	}

	t.Run("nothing installed", func(t *testing.T) {
		_, err := findBinDir(empty, filepath.Join(root, "none"))
		if !errors.Is(err, ErrBinariesNotFound) {
			t.Fatalf("err = %v, want ErrBinariesNotFound", err)
		}
		if want := "install PostgreSQL (e.g. apt-get install postgresql) or set DATABASE_URL"; !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	})
}

func TestCompareVersions(t *testing.T) {
	tests := []struct {
		a, b string
		sign int
	}{
		{"9.6", "15", -1},
		{"15", "16", -1},
		{"16", "16", 0},
		{"10", "9.6", 1},
		{"beta", "9", -1},
	}
	for _, tt := range tests {
		got := compareVersions(tt.a, tt.b)
		if (got < 0 && tt.sign >= 0) || (got > 0 && tt.sign <= 0) || (got == 0 && tt.sign != 0) {
			t.Errorf("compareVersions(%s, %s) = %d, want sign %d", tt.a, tt.b, got, tt.sign)
		}
	}
}
