package pgembed

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// ErrBinariesNotFound reports that no PostgreSQL server installation was found.
var ErrBinariesNotFound = errors.New("PostgreSQL server binaries (initdb, pg_ctl) not found on PATH or under /usr/lib/postgresql/*/bin: install PostgreSQL (e.g. apt-get install postgresql) or set DATABASE_URL to an existing server")

// debianRoot is where Debian and Ubuntu install one directory per major
// version, none of them on PATH.
const debianRoot = "/usr/lib/postgresql"

// findBinDir returns the directory holding initdb, pg_ctl and postgres:
// the first PATH entry with initdb and pg_ctl wins, else the highest
// version under root. Symlinks are resolved so the directory reported is
// the installation itself, where pg_ctl also finds postgres.
func findBinDir(pathList, root string) (string, error) {
	for _, dir := range filepath.SplitList(pathList) {
		if dir == "" || !hasServer(dir) {
			continue
		}
		real, err := filepath.EvalSymlinks(filepath.Join(dir, "initdb"))
		if err == nil && hasServer(filepath.Dir(real)) {
			return filepath.Dir(real), nil
		}
		return dir, nil
	}
	dirs, _ := filepath.Glob(filepath.Join(root, "*", "bin"))
	slices.SortFunc(dirs, func(a, b string) int {
		return compareVersions(filepath.Base(filepath.Dir(b)), filepath.Base(filepath.Dir(a)))
	})
	for _, dir := range dirs {
		if hasServer(dir) {
			return dir, nil
		}
	}
	return "", ErrBinariesNotFound
}

func hasServer(dir string) bool {
	return isExecutable(filepath.Join(dir, "initdb")) && isExecutable(filepath.Join(dir, "pg_ctl"))
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}

// compareVersions orders "9.6" < "15" < "16", comparing dotted parts as
// numbers; a part that is not a number sorts first.
func compareVersions(a, b string) int {
	as, bs := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < max(len(as), len(bs)); i++ {
		x, y := -1, -1
		if i < len(as) {
			x = atoiOr(as[i], -1)
		}
		if i < len(bs) {
			y = atoiOr(bs[i], -1)
		}
		if x != y {
			return x - y
		}
	}
	return 0
}

func atoiOr(s string, fallback int) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		return fallback
	}
	return n
}
