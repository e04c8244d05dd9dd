package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/rs/zerolog"
)

// Check is a readiness probe of one dependency.
type Check func(ctx context.Context) error

// HealthRoutes registers /healthz (the process is up) and /readyz (every check passes within 2s).
func HealthRoutes(mux *http.ServeMux, checks ...Check) {
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"status":"ok"}` + "\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		var failed []string
		for _, c := range checks {
			if err := c(ctx); err != nil {
				failed = append(failed, err.Error())
			}
		}
		w.Header().Set("Content-Type", "application/json")
		status, body := http.StatusOK, map[string]any{"status": "ready"}
		if len(failed) > 0 {
			status, body = http.StatusServiceUnavailable, map[string]any{"status": "not ready", "failures": failed}
		}
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(body)
	})
}

// Serve serves h on addr until ctx ends, then shuts down gracefully within 10s. ready, if not nil, receives
// the bound address once the listener is open (useful with port 0).
func Serve(ctx context.Context, addr string, h http.Handler, log zerolog.Logger, ready chan<- net.Addr) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", addr, err)
	}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	log.Info().Str("addr", ln.Addr().String()).Msg("http listening")
	if ready != nil {
		ready <- ln.Addr()
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve http on %s: %w", addr, err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("shut down http: %w", err)
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve http on %s: %w", addr, err)
	}
	return nil
}
