package outbox_test

import (
	"testing"

	"github.com/choreo-dev/choreo/internal/testing/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }
