// Package telemetry sets up OpenTelemetry tracing for choreo's processes and moves W3C trace context
// between spans and the traceparent events carry. Tracing is off unless an OTLP endpoint is configured (or a
// test hands in an exporter): a nil *Tracing gives no-op tracer providers, and the runtime skips span work
// altogether when it has no provider.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Config is where spans go: the standard OTEL_EXPORTER_OTLP_* settings, read in cmd/choreo.
type Config struct {
	Endpoint       string            // OTLP/HTTP base URL; traces go to Endpoint + "/v1/traces"
	TracesEndpoint string            // the full URL for traces; wins over Endpoint
	Headers        map[string]string // sent with every export (API keys of hosted backends)
}

// Enabled reports whether spans are exported at all.
func (c Config) Enabled() bool { return c.Endpoint != "" || c.TracesEndpoint != "" }

// Validate checks the endpoints are URLs.
func (c Config) Validate() error {
	var errs []error
	for name, v := range map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": c.Endpoint, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": c.TracesEndpoint} {
		if v == "" {
			continue
		}
		if u, err := url.Parse(v); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("%s %q: want an http:// or https:// URL", name, v))
		}
	}
	return errors.Join(errs...)
}

// ParseHeaders reads OTEL_EXPORTER_OTLP_HEADERS: "key=value,key2=value2", values URL-encoded.
func ParseHeaders(v string) (map[string]string, error) {
	out := map[string]string{}
	// Errors name the entry by position, never by content: values are credentials.
	for i, kv := range strings.Split(v, ",") {
		if kv = strings.TrimSpace(kv); kv == "" {
			continue
		}
		k, val, ok := strings.Cut(kv, "=")
		if !ok || strings.TrimSpace(k) == "" {
			return nil, fmt.Errorf("entry %d: want key=value", i+1)
		}
		dec, err := url.QueryUnescape(strings.TrimSpace(val))
		if err != nil {
			return nil, fmt.Errorf("entry %d: the value is not URL-encoded", i+1)
		}
		out[strings.TrimSpace(k)] = dec
	}
	return out, nil
}

// Tracing gives each service of a process its own tracer provider (its spans name the service), all
// feeding one batching exporter. The zero of *Tracing (nil) traces nothing.
type Tracing struct {
	processor sdktrace.SpanProcessor
	mu        sync.Mutex
	providers map[string]*sdktrace.TracerProvider
}

// New returns tracing that exports over OTLP/HTTP as cfg says, or nil when cfg enables nothing.
func New(ctx context.Context, cfg Config) (*Tracing, error) {
	if !cfg.Enabled() {
		return nil, nil
	}
	var opts []otlptracehttp.Option
	if cfg.TracesEndpoint != "" {
		opts = append(opts, otlptracehttp.WithEndpointURL(cfg.TracesEndpoint))
	} else {
		opts = append(opts, otlptracehttp.WithEndpointURL(strings.TrimSuffix(cfg.Endpoint, "/")+"/v1/traces"))
	}
	if len(cfg.Headers) > 0 {
		opts = append(opts, otlptracehttp.WithHeaders(cfg.Headers))
	}
	exp, err := otlptracehttp.New(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("OTLP trace exporter: %w", err)
	}
	return &Tracing{processor: sdktrace.NewBatchSpanProcessor(exp), providers: map[string]*sdktrace.TracerProvider{}}, nil
}

// WithExporter returns tracing that hands every span to exp as soon as it ends (tests: tracetest's
// in-memory exporter).
func WithExporter(exp sdktrace.SpanExporter) *Tracing {
	return &Tracing{processor: sdktrace.NewSimpleSpanProcessor(exp), providers: map[string]*sdktrace.TracerProvider{}}
}

// Provider returns the tracer provider of service: its spans carry service.name = service and
// service.namespace = choreo. On a nil *Tracing it is a no-op provider.
func (t *Tracing) Provider(service string) trace.TracerProvider {
	if t == nil {
		return noop.NewTracerProvider()
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if p, ok := t.providers[service]; ok {
		return p
	}
	res := resource.NewSchemaless(attribute.String("service.name", service), attribute.String("service.namespace", "choreo"))
	p := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(t.processor), sdktrace.WithResource(res))
	t.providers[service] = p
	return p
}

// Providers returns Provider as a function, nil when tracing is off, for the host's options.
func (t *Tracing) Providers() func(service string) trace.TracerProvider {
	if t == nil {
		return nil
	}
	return t.Provider
}

// Shutdown exports the spans still buffered and stops the exporter.
func (t *Tracing) Shutdown(ctx context.Context) error {
	if t == nil {
		return nil
	}
	if err := t.processor.Shutdown(ctx); err != nil {
		return fmt.Errorf("flush spans: %w", err)
	}
	return nil
}

// Propagator is the W3C Trace Context propagator (the traceparent header), for otelhttp: choreo passes it
// explicitly instead of setting OpenTelemetry's global one.
func Propagator() propagation.TextMapPropagator { return propagation.TraceContext{} }

// ContextWithParent returns ctx carrying the remote span context of traceParent, the parent of spans
// started from it; ctx unchanged when traceParent is not valid.
func ContextWithParent(ctx context.Context, traceParent string) context.Context {
	if traceParent == "" {
		return ctx
	}
	return propagation.TraceContext{}.Extract(ctx, propagation.MapCarrier{"traceparent": traceParent})
}

// TraceParent returns the traceparent of ctx's span, "" when ctx has none.
func TraceParent(ctx context.Context) string {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return ""
	}
	c := propagation.MapCarrier{}
	propagation.TraceContext{}.Inject(ctx, c)
	return c["traceparent"]
}

// HTTPHandler wraps h in a server span per request (otelhttp), a child of the caller's traceparent header;
// h itself when tp is nil.
func HTTPHandler(h http.Handler, tp trace.TracerProvider) http.Handler {
	if tp == nil {
		return h
	}
	return otelhttp.NewHandler(h, "http", otelhttp.WithTracerProvider(tp), otelhttp.WithPropagators(Propagator()),
		otelhttp.WithMeterProvider(metricnoop.NewMeterProvider()))
}
