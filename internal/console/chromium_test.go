package console_test

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/websocket"
)

// chromiumPath returns a headless-capable Chromium. Without one the test fails in CI (CI set), where the
// browser checks must not silently vanish, and is skipped elsewhere.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"/usr/bin/chromium", "chromium"} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	const install = "install it with: apt-get update && apt-get install -y chromium"
	if os.Getenv("CI") != "" {
		t.Fatalf("chromium is required in CI for the console page checks; %s", install)
	}
	t.Skipf("chromium not found; %s (in CI, with CI set, this test fails instead)", install)
	return ""
}

// page is a headless Chromium tab driven over the DevTools protocol, so a test can wait until the page's
// script has rendered what it fetched and streamed (--dump-dom would dump at the load event, before).
type page struct {
	t    *testing.T
	ws   *websocket.Conn
	next int
}

var devtoolsLine = regexp.MustCompile(`DevTools listening on (ws://[^\s]+)`)

func openPage(t *testing.T) *page {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, chromiumPath(t), "--headless", "--no-sandbox", "--disable-gpu",
		"--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
		"--user-data-dir="+t.TempDir(), "--remote-debugging-port=0", "--remote-allow-origins=*",
		"--window-size=1400,900", "--hide-scrollbars", "about:blank")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	t.Cleanup(func() { cancel(); _ = cmd.Wait() })
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if m := devtoolsLine.FindStringSubmatch(sc.Text()); m != nil {
				found <- m[1]
				break
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
	}()
	var browserURL string
	select {
	case browserURL = <-found:
	case <-time.After(30 * time.Second):
		t.Fatal("chromium did not open its DevTools endpoint within 30s")
	}
	host := strings.Split(strings.TrimPrefix(browserURL, "ws://"), "/")[0]
	var targets []struct{ Type, WebSocketDebuggerURL string }
	resp, err := http.Get("http://" + host + "/json/list")
	if err != nil {
		t.Fatalf("list chromium targets: %v", err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&targets); err != nil {
		t.Fatal(err)
	}
	for _, tg := range targets {
		if tg.Type == "page" {
			ws, err := websocket.Dial(tg.WebSocketDebuggerURL, "", "http://127.0.0.1/")
			if err != nil {
				t.Fatalf("connect to the chromium page: %v", err)
			}
			t.Cleanup(func() { ws.Close() })
			return &page{t: t, ws: ws}
		}
	}
	t.Fatalf("chromium has no page target: %+v", targets)
	return nil
}

// call sends one DevTools command and returns its result, skipping the events in between.
func (p *page) call(method string, params any) json.RawMessage {
	p.t.Helper()
	p.next++
	id := p.next
	if err := websocket.JSON.Send(p.ws, map[string]any{"id": id, "method": method, "params": params}); err != nil {
		p.t.Fatalf("devtools %s: %v", method, err)
	}
	_ = p.ws.SetReadDeadline(time.Now().Add(60 * time.Second))
	for {
		var msg struct {
			ID     int             `json:"id"`
			Result json.RawMessage `json:"result"`
			Error  *struct{ Message string }
		}
		if err := websocket.JSON.Receive(p.ws, &msg); err != nil {
			p.t.Fatalf("devtools %s: %v", method, err)
		}
		if msg.ID != id {
			continue
		}
		if msg.Error != nil {
			p.t.Fatalf("devtools %s: %s", method, msg.Error.Message)
		}
		return msg.Result
	}
}

// eval runs a JavaScript expression in the page and returns its value.
func (p *page) eval(expr string) any {
	p.t.Helper()
	var r struct {
		Result struct {
			Value any `json:"value"`
		} `json:"result"`
		ExceptionDetails *struct{ Text string } `json:"exceptionDetails"`
	}
	raw := p.call("Runtime.evaluate", map[string]any{"expression": expr, "returnByValue": true, "awaitPromise": true})
	if err := json.Unmarshal(raw, &r); err != nil {
		p.t.Fatal(err)
	}
	if r.ExceptionDetails != nil {
		p.t.Fatalf("evaluate %s: %s", expr, r.ExceptionDetails.Text)
	}
	return r.Result.Value
}

func (p *page) text(selector string) string {
	p.t.Helper()
	v, _ := p.eval(fmt.Sprintf(`(document.querySelector(%q) || {}).textContent || ""`, selector)).(string)
	return v
}

func (p *page) html() string {
	p.t.Helper()
	v, _ := p.eval(`document.documentElement.outerHTML`).(string)
	return v
}

// open loads url and waits until the console script has marked the page's nav link.
func (p *page) open(url string) {
	p.t.Helper()
	p.call("Page.navigate", map[string]any{"url": url})
	p.waitFor("the console script to run on "+url, `document.readyState === "complete" && !!document.querySelector("nav a.active")`)
}

// waitFor polls the boolean expression until it holds, failing after 45s with the page's DOM.
func (p *page) waitFor(what, expr string) {
	p.t.Helper()
	deadline := time.Now().Add(45 * time.Second)
	for {
		if ok, _ := p.eval("!!(" + expr + ")").(bool); ok {
			return
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("timed out waiting for %s (%s)\nDOM:\n%s", what, expr, p.html())
		}
		time.Sleep(100 * time.Millisecond) // the page updates itself; poll it
	}
}

// screenshot saves the page as PNG to docs/screenshots/name when CONSOLE_SCREENSHOTS is set.
func (p *page) screenshot(name string) {
	p.t.Helper()
	dir := os.Getenv("CONSOLE_SCREENSHOTS")
	if dir == "" {
		return
	}
	var r struct{ Data string }
	if err := json.Unmarshal(p.call("Page.captureScreenshot", map[string]any{"format": "png"}), &r); err != nil {
		p.t.Fatal(err)
	}
	b, err := base64.StdEncoding.DecodeString(r.Data)
	if err != nil {
		p.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
		p.t.Fatal(err)
	}
}
