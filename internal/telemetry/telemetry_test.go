package telemetry_test

import (
	"context"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/choreo-dev/choreo/internal/telemetry"
)

func TestTraceParentCarriesTheSpanAcross(t *testing.T) {
	const parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	exp := tracetest.NewInMemoryExporter()
	tracing := telemetry.WithExporter(exp)
	ctx := telemetry.ContextWithParent(context.Background(), parent)
	ctx, span := tracing.Provider("payment").Tracer("test").Start(ctx, "handle")
	child := telemetry.TraceParent(ctx)
	span.End()

	if !strings.HasPrefix(child, "00-4bf92f3577b34da6a3ce929d0e0e4736-") || child == parent || !strings.HasSuffix(child, "-01") {
		t.Errorf("traceparent of the child span %q: want the parent's trace, its own span id, sampled", child)
	}
	spans := exp.GetSpans()
	if len(spans) != 1 || spans[0].Parent.SpanID().String() != "00f067aa0ba902b7" {
		t.Fatalf("spans %+v, want one child of 00f067aa0ba902b7", spans)
	}
	if name, _ := spans[0].Resource.Set().Value("service.name"); name.AsString() != "payment" {
		t.Errorf("service.name %q, want payment", name.AsString())
	}
	if tracing.Provider("payment") != tracing.Provider("payment") {
		t.Error("a service got two tracer providers")
	}
	for _, bad := range []string{"", "garbage", "00-00000000000000000000000000000000-00f067aa0ba902b7-01"} {
		if got := telemetry.TraceParent(telemetry.ContextWithParent(context.Background(), bad)); got != "" {
			t.Errorf("traceparent %q gave a span context %q", bad, got)
		}
	}
}

func TestTracingOffIsANoop(t *testing.T) {
	var off *telemetry.Tracing
	if off.Providers() != nil {
		t.Error("Providers of no tracing is not nil: the runtime would record spans")
	}
	ctx, span := off.Provider("order").Tracer("test").Start(context.Background(), "x")
	if span.IsRecording() || telemetry.TraceParent(ctx) != "" {
		t.Error("a span of no tracing records or carries a trace")
	}
	if err := off.Shutdown(context.Background()); err != nil {
		t.Error(err)
	}
	tr, err := telemetry.New(context.Background(), telemetry.Config{})
	if tr != nil || err != nil {
		t.Errorf("New without endpoints: %v, %v; want no tracing", tr, err)
	}
}

func TestConfig(t *testing.T) {
	h, err := telemetry.ParseHeaders(" api-key = s%3Dcret , x=1,")
	if err != nil || h["api-key"] != "s=cret" || h["x"] != "1" || len(h) != 2 {
		t.Errorf("ParseHeaders: %v, %v", h, err)
	}
	if _, err := telemetry.ParseHeaders("Authorization Bearer secret"); err == nil || strings.Contains(err.Error(), "secret") {
		t.Errorf("a malformed header: %v; want an error that does not repeat the value", err)
	}
	for _, c := range []struct {
		cfg telemetry.Config
		ok  bool
	}{
		{telemetry.Config{Endpoint: "http://jaeger:4318"}, true},
		{telemetry.Config{TracesEndpoint: "https://otel.example/v1/traces"}, true},
		{telemetry.Config{Endpoint: "jaeger:4318"}, false},
		{telemetry.Config{Endpoint: "http://jaeger:4318", TracesEndpoint: "x"}, false},
	} {
		if err := c.cfg.Validate(); (err == nil) != c.ok {
			t.Errorf("%+v: Validate %v, want ok=%v", c.cfg, err, c.ok)
		}
	}
}
