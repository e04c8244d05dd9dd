package testenv

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
)

const maxNameLen = 60

// Name returns a name unique to this call for a topic, consumer group or
// database: base, then the test's name, then a random suffix, lowercase and
// made only of [a-z0-9_.-] (the test's part only of [a-z0-9_]), at most 60
// characters, so it is valid for Kafka and Postgres alike.
func Name(t testing.TB, base string) string {
	t.Helper()
	suffix := fmt.Sprintf("%08x", rand.Uint32())
	name := clean(base, "_.-")
	if test := clean(t.Name(), "_"); test != "" {
		name = strings.Trim(name+"_"+test, "_")
	}
	if limit := maxNameLen - len(suffix) - 1; len(name) > limit {
		name = strings.TrimRight(name[:limit], "_.-")
	}
	if name == "" {
		return "t_" + suffix
	}
	return name + "_" + suffix
}

// clean lowercases s, turns every character outside [a-z0-9] and keep into
// '_' and squeezes runs of '_'.
func clean(s, keep string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		ok := (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') || strings.ContainsRune(keep, r)
		if !ok {
			r = '_'
		}
		if r == '_' && strings.HasSuffix(b.String(), "_") {
			continue
		}
		b.WriteRune(r)
	}
	return strings.Trim(b.String(), "_")
}
