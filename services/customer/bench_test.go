package customer

import (
	"context"
	"testing"

	"github.com/rs/zerolog"
)

// BenchmarkPasswordCheck prints what a wrong password costs for a registered email and for an unknown
// one (checked against the dummy hash) with the production parameters: the two should be alike.
func BenchmarkPasswordCheck(b *testing.B) {
	s, err := New(Config{}, nil, "customer.events", zerolog.Nop())
	if err != nil {
		b.Fatal(err)
	}
	registered, err := hashPassword("the real password", s.params)
	if err != nil {
		b.Fatal(err)
	}
	for name, hash := range map[string]string{"registered": registered, "unknown": s.dummy} {
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				if ok, err := s.check(context.Background(), "a wrong guess", hash); ok || err != nil {
					b.Fatal(ok, err)
				}
			}
		})
	}
}
