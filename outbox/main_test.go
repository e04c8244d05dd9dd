package outbox_test

import (
	"testing"

	"github.com/choreo-dev/choreo/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }
