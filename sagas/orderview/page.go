package orderview

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"strings"
	"time"

	"github.com/google/uuid"
)

//go:embed page.html page.css
var pageFiles embed.FS

// pages renders the HTML views with html/template, so every value from an event is escaped for where it
// lands. The only style is one inline stylesheet, allowed by its hash in the Content-Security-Policy; the
// pages load nothing else and run no script.
type pages struct {
	tmpl *template.Template
	css  template.CSS
	csp  string
}

func newPages() (*pages, error) {
	css, err := pageFiles.ReadFile("page.css")
	if err != nil {
		return nil, fmt.Errorf("read page stylesheet: %w", err)
	}
	tmpl, err := template.New("page.html").Funcs(template.FuncMap{
		"money": money,
		"line":  lineTotal,
		"when":  func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05.000 UTC") },
		"iso":   func(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) },
		"lower": strings.ToLower,
	}).ParseFS(pageFiles, "page.html")
	if err != nil {
		return nil, fmt.Errorf("parse page templates: %w", err)
	}
	sum := sha256.Sum256(css)
	csp := "default-src 'none'; style-src 'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) +
		"'; img-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
	return &pages{tmpl: tmpl, css: template.CSS(css), csp: csp}, nil
}

// orderView is what the "order" template shows.
type orderView struct {
	Order    Order
	Refresh  bool // the saga is still running: reload to follow it
	Timeline []step
}

// step is a timeline entry with its delay since the saga's first event.
type step struct {
	Entry
	Since string
}

// listView is what the "list" template shows.
type listView struct {
	Status string
	Orders []Order
	Next   string // query string of the next page; "" on the last
}

// errorView is what the "error" template shows.
type errorView struct {
	Status  int
	Title   string
	Message string
}

func (s *Service) handlePage(w http.ResponseWriter, r *http.Request) {
	id, err := uuid.Parse(r.PathValue("id"))
	if err != nil {
		s.renderError(w, http.StatusNotFound, "There is no order with this id.")
		return
	}
	o, err := s.visible(r.Context(), id)
	switch {
	case errors.Is(err, ErrNotFound):
		s.renderError(w, http.StatusNotFound, "There is no order with this id yet. A new order appears once its order.placed event has been projected.")
		return
	case err != nil:
		s.log.Error().Err(err).Str("order_id", id.String()).Msg("render order page failed")
		s.renderError(w, http.StatusInternalServerError, "The order could not be read; the error has been logged.")
		return
	}
	v := orderView{Order: o, Refresh: o.Status == Pending}
	for _, e := range o.Timeline {
		v.Timeline = append(v.Timeline, step{Entry: e, Since: "+" + e.Time.Sub(o.Timeline[0].Time).Round(time.Millisecond).String()})
	}
	s.render(w, http.StatusOK, "order", v)
}

func (s *Service) handleListPage(w http.ResponseWriter, r *http.Request) {
	f, errs := parseFilter(r.URL.Query())
	if len(errs) > 0 {
		var msg []string
		for _, e := range errs {
			msg = append(msg, e.Field+" "+e.Detail)
		}
		s.renderError(w, http.StatusBadRequest, "Invalid query: "+strings.Join(msg, "; ")+".")
		return
	}
	if f.Limit == 0 {
		f.Limit = 50
	}
	p, err := s.listVisible(r.Context(), f)
	if err != nil {
		s.log.Error().Err(err).Msg("render order list failed")
		s.renderError(w, http.StatusInternalServerError, "The orders could not be read; the error has been logged.")
		return
	}
	v := listView{Status: f.Status, Orders: p.Orders}
	if p.Next != "" {
		q := r.URL.Query()
		q.Set("cursor", p.Next)
		v.Next = q.Encode()
	}
	s.render(w, http.StatusOK, "list", v)
}

func (s *Service) renderError(w http.ResponseWriter, status int, message string) {
	s.render(w, status, "error", errorView{Status: status, Title: http.StatusText(status), Message: message})
}

// render executes template name into a buffer first, so a failing template yields a clean 500.
func (s *Service) render(w http.ResponseWriter, status int, name string, view any) {
	var buf bytes.Buffer
	err := s.pages.tmpl.ExecuteTemplate(&buf, name, struct {
		CSS  template.CSS
		View any
	}{s.pages.css, view})
	if err != nil {
		s.log.Error().Err(err).Str("template", name).Msg("render page failed")
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", s.pages.csp)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = buf.WriteTo(w)
}

// money formats cents as units with two decimals; "—" when not priced yet.
func money(cents *int64) string {
	if cents == nil {
		return "—"
	}
	c := *cents
	sign := ""
	if c < 0 {
		sign, c = "-", -c
	}
	return fmt.Sprintf("%s%d.%02d", sign, c/100, c%100)
}

// lineTotal is a line's price times its quantity; nil when not priced yet.
func lineTotal(it Item) *int64 {
	if it.PriceCents == nil {
		return nil
	}
	t := *it.PriceCents * int64(it.Quantity)
	return &t
}
