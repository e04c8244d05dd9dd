package console

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// maxStream bounds one Server-Sent Events response; the browser's EventSource reconnects by itself.
const maxStream = 10 * time.Minute

// stream is one open Server-Sent Events response.
type stream struct {
	w     http.ResponseWriter
	rc    *http.ResponseController
	r     *http.Request
	done  <-chan struct{}
	until *time.Timer
}

// openStream starts an event stream on w. It lifts the server's write timeout for this response only, and
// ends with the request, with Run (so a shutdown is not held up) or after maxStream.
func (c *Console) openStream(w http.ResponseWriter, r *http.Request) (*stream, bool) {
	rc := http.NewResponseController(w)
	if err := rc.SetWriteDeadline(time.Time{}); err != nil && !errors.Is(err, http.ErrNotSupported) {
		http.Error(w, "cannot stream", http.StatusInternalServerError)
		return nil, false
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	if err := rc.Flush(); err != nil {
		return nil, false
	}
	return &stream{w: w, rc: rc, r: r, done: c.done, until: time.NewTimer(maxStream)}, true
}

// send writes one event with v as its JSON data.
func (s *stream) send(event string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s event: %w", event, err)
	}
	if _, err := fmt.Fprintf(s.w, "event: %s\ndata: %s\n\n", event, b); err != nil {
		return err
	}
	return s.rc.Flush()
}

// wait pauses for d; false means the stream is over.
func (s *stream) wait(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-s.r.Context().Done():
	case <-s.done:
	case <-s.until.C:
	}
	return false
}

func (s *stream) close() { s.until.Stop() }
