package testenv

import (
	"os"
	"testing"

	"github.com/rs/zerolog"
)

// Logger writes through t.Log, so a test's logs show with its result. The
// level comes from TEST_LOG_LEVEL (debug, info, warn, ...; default warn).
func Logger(t testing.TB) zerolog.Logger {
	t.Helper()
	level := zerolog.WarnLevel
	if s := os.Getenv("TEST_LOG_LEVEL"); s != "" {
		l, err := zerolog.ParseLevel(s)
		if err != nil {
			t.Fatalf("testenv: TEST_LOG_LEVEL: %v", err)
		}
		level = l
	}
	return zerolog.New(zerolog.NewTestWriter(t)).Level(level).With().Timestamp().Logger()
}
