package testenv_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/choreo-dev/choreo/internal/testing/testenv"
)

// recorder captures what Logger writes through t.Log.
type recorder struct {
	testing.TB
	lines []string
}

func (r *recorder) Log(args ...any) { r.lines = append(r.lines, fmt.Sprint(args...)) }
func (r *recorder) Logf(format string, args ...any) {
	r.lines = append(r.lines, fmt.Sprintf(format, args...))
}
func (r *recorder) Helper() {}

func TestLoggerLevel(t *testing.T) {
	tests := []struct {
		env         string
		wantDebug   bool
		wantWarning bool
	}{
		{"", false, true},
		{"debug", true, true},
		{"error", false, false},
	}
	for _, tt := range tests {
		t.Run("TEST_LOG_LEVEL="+tt.env, func(t *testing.T) {
			t.Setenv("TEST_LOG_LEVEL", tt.env)
			rec := &recorder{TB: t}
			log := testenv.Logger(rec)
			log.Debug().Msg("detail")
			log.Warn().Msg("trouble")
			out := strings.Join(rec.lines, "\n")
			if got := strings.Contains(out, "detail"); got != tt.wantDebug {
				t.Errorf("debug logged = %v, want %v; output %q", got, tt.wantDebug, out)
			}
			if got := strings.Contains(out, "trouble"); got != tt.wantWarning {
				t.Errorf("warning logged = %v, want %v; output %q", got, tt.wantWarning, out)
			}
		})
	}
}
