package main

import (
	"strings"
	"testing"
	"time"

	"github.com/choreo-dev/choreo/cmd/choreo/system"
	"github.com/choreo-dev/choreo/internal/projection"
)

func TestReplayOnlyReadModels(t *testing.T) {
	specs := system.Specs(system.Config{})
	for _, name := range []string{"orderview", "salesview"} {
		spec, p, err := findProjection(specs, name)
		if err != nil || p.Name() != name || spec.Name != "orderview" {
			t.Errorf("replay %s: %v (unit %q)", name, err, spec.Name)
		}
	}
	for _, name := range []string{"payment", "notification", "order", "inventory", "shipping"} {
		_, _, err := findProjection(specs, name)
		if err == nil || !strings.Contains(err.Error(), "refusing to replay "+name) || !strings.Contains(err.Error(), "side effects") {
			t.Errorf("replay %s: %v, want a refusal naming its side effects", name, err)
		}
	}
	if _, _, err := findProjection(specs, "nope"); err == nil || !strings.Contains(err.Error(), "orderview, salesview") {
		t.Errorf("replay nope: %v, want the list of read models", err)
	}
}

func TestRenderProgress(t *testing.T) {
	p := projection.Progress{Projection: "orderview", Phase: "catching up", Applied: 25000, Total: 100000, Elapsed: time.Second / 2}
	got := renderProgress(p)
	for _, want := range []string{"orderview [#######-----------------------]  25%", "25,000/100,000 events", "50,000 events/s", "ETA 2s"} {
		if !strings.Contains(got, want) {
			t.Errorf("progress %q lacks %q", got, want)
		}
	}
}
