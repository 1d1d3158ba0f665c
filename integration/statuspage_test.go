package integration

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dsrlb/dsrlb/integration/topo"
	"github.com/dsrlb/dsrlb/lbd/statusjson"
)

// needChromium skips (outside CI) or fails (CI=true) without Debian's
// chromium (scripts/setup-debian.sh installs it).
func (s *scenario) needChromium() {
	s.t.Helper()
	if _, err := exec.LookPath(topo.BrowserPath); err == nil {
		return
	}
	why := "needs Debian's chromium (scripts/setup-debian.sh installs it)"
	s.skip("%s", why)
}

// pageRow is one backend row as a person sees it on the status page.
type pageRow struct {
	Service, Backend, State, Reason string
	Visible                         bool
}

// readRows reads the backend rows of the status page's table: the text
// shown (innerText, which only counts what is rendered), not the data.
const readRows = `[...document.querySelectorAll("#services-body tr.backend")].map(r => {
  const reason = document.querySelector('#services-body tr.reason[data-service="' + r.dataset.service + '"][data-backend="' + r.dataset.backend + '"]');
  return {Service: r.dataset.service, Backend: r.cells[0].innerText.replace(/^\W+/, ""), State: r.querySelector("td.state").innerText,
    Reason: reason ? reason.innerText.trim() : "", Visible: r.getClientRects().length > 0};
})`

// TestStatusPage loads lbd's status page in headless Chromium inside the
// balancer's namespace, checks what a person sees (the service, every
// backend up), stops one backend's server and checks that the same page
// shows it down with its reason, without being reloaded: a marker set in
// the page's JavaScript before the change is still there after it (a
// reload would start a new document without it) and the page counted its
// refreshes from /status.json in between. A screenshot of each state is
// kept under out/.
func TestStatusPage(t *testing.T) {
	s := begin(t, "status-page-in-chromium")
	s.needChromium()
	e := startLB(t, s, topo.Options{}, func(tp *topo.Topology) topo.Config {
		c := web(tp, "")
		c.MetricsListen = metricsAddr
		return c
	})
	mustNoFailures(t, "requests to the VIP", e.newConns(e.client, topo.URL(topo.VIP4, "/"), 20, 4, 30*time.Second))

	br, err := topo.StartBrowser(e.tp.Balancer.NS, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("chromium output:\n%s", tail(br.Output(), 40))
		}
		if err := br.Close(); err != nil {
			t.Error(err)
		}
	})
	ctx := ctxFor(t, 90*time.Second)
	page, err := br.Open(ctx, "http://"+metricsAddr+"/")
	if err != nil {
		t.Fatal(err)
	}
	var title string
	if err := page.Eval(ctx, `document.title`, &title); err != nil || !strings.Contains(title, "dsrlb status") {
		t.Fatalf("page title %q (%v): not the status page", title, err)
	}
	svc := e.cfg.Services[0].Name
	allUp := func(rows []pageRow) bool {
		if len(rows) != len(e.tp.Backends) {
			return false
		}
		for _, r := range rows {
			if r.Service != svc || r.State != "up" || !r.Visible {
				return false
			}
		}
		return true
	}
	rows := waitRows(ctx, t, page, "every backend shown up", allUp)
	for i, b := range e.tp.Backends {
		if rows[i].Backend != b.Role {
			t.Errorf("row %d shows backend %q, want %q (configuration order)", i, rows[i].Backend, b.Role)
		}
	}
	var text string
	if err := page.Eval(ctx, `document.body.innerText`, &text); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{svc, topo.VIP4.String(), "maglev"} {
		if !strings.Contains(text, want) {
			t.Errorf("status page does not show %q:\n%s", want, text)
		}
	}
	keepScreenshot(ctx, t, page, "status-page-up.png")

	// Mark this document, then take a backend down.
	var marker string
	if err := page.Eval(ctx, `window.dsrlbTestMarker = "m" + Math.random(); window.dsrlbTestMarker`, &marker); err != nil {
		t.Fatal(err)
	}
	var before string
	page.Eval(ctx, `document.body.dataset.refreshes`, &before)
	victim := e.tp.Backends[len(e.tp.Backends)-1].Role
	e.servers[victim].Kill()
	rows = waitRows(ctx, t, page, victim+" shown down with its reason", func(rows []pageRow) bool {
		for _, r := range rows {
			if r.Backend == victim {
				return r.State == "down" && strings.Contains(r.Reason, "health check failing") && r.Visible
			}
		}
		return false
	})
	for _, r := range rows {
		if r.Backend != victim && r.State != "up" {
			t.Errorf("backend %s shown %s after only %s went down", r.Backend, r.State, victim)
		}
	}
	var same string
	if err := page.Eval(ctx, `window.dsrlbTestMarker || "reloaded"`, &same); err != nil || same != marker {
		t.Fatalf("the page's marker is %q (%v), want %q: the page was reloaded, not updated in place", same, err, marker)
	}
	var after string
	page.Eval(ctx, `document.body.dataset.refreshes`, &after)
	if after == before {
		t.Errorf("refresh count %s before and after the change: the page did not fetch status.json", after)
	}
	t.Logf("page updated in place: %s then %s refreshes, marker %s kept", before, after, marker)
	keepScreenshot(ctx, t, page, "status-page.png")

	// The same data, as the schema says.
	doc := statusDoc(t, e.tp)
	if doc.SchemaVersion != statusjson.SchemaVersion || doc.Source != "lbd" {
		t.Errorf("status.json schema_version %d source %q", doc.SchemaVersion, doc.Source)
	}
	for _, sv := range doc.Services {
		for _, b := range sv.Backends {
			if b.Name == victim && (b.State != statusjson.StateDown || b.StateSince == nil || b.StateReason == "") {
				t.Errorf("status.json backend %s: %+v, want down with a reason and since", b.Name, b)
			}
		}
	}

	// lbd status says the same from the pinned maps: scheduler, state and
	// reason, and rates over an interval.
	out, err := e.tp.Lbd(ctx, "status", "--rate=1s")
	for _, want := range []string{"SCHED", "maglev", "REASON", "health check failing", "PKTS/S", "rates per second over 1s"} {
		if err != nil || !strings.Contains(out, want) {
			t.Errorf("lbd status --rate=1s lacks %q (%v):\n%s", want, err, out)
		}
	}
	st := lbdStatus(t, e.tp, e.tp.Balancer)
	for _, b := range st.Services[0].Backends {
		if b.Name == victim && (b.State != statusjson.StateDown || !strings.HasPrefix(b.StateReason, "health check failing")) {
			t.Errorf("lbd status --json backend %s: state %q reason %q, want down, health check failing", b.Name, b.State, b.StateReason)
		}
	}
	t.Logf("lbd status --rate=1s:\n%s", out)
}

// waitRows reads the page's backend rows until ok holds, for at most 30s.
func waitRows(ctx context.Context, t *testing.T, page *topo.Page, what string, ok func([]pageRow) bool) []pageRow {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var rows []pageRow
	for {
		err := page.Eval(ctx, readRows, &rows)
		if err == nil && ok(rows) {
			return rows
		}
		select {
		case <-ctx.Done():
			t.Fatalf("status page: %s: not within 30s; last rows %+v (%v)", what, rows, err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// keepScreenshot writes the page as shown to out/<name> at the
// repository root (CI keeps out/ as artifacts).
func keepScreenshot(ctx context.Context, t *testing.T, page *topo.Page, name string) {
	t.Helper()
	png, err := page.Screenshot(ctx)
	if err != nil {
		t.Errorf("screenshot: %v", err)
		return
	}
	dir := filepath.Join("..", "out")
	os.MkdirAll(dir, 0o755)
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, png, 0o644); err != nil {
		t.Errorf("keep screenshot: %v", err)
		return
	}
	abs, _ := filepath.Abs(p)
	t.Logf("kept %s (%d bytes)", abs, len(png))
}

// statusDoc reads /status.json from inside the balancer's namespace.
func statusDoc(t *testing.T, tp *topo.Topology) statusjson.Status {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: tp.Balancer.NS.DialContext}}
	resp, err := c.Get("http://" + metricsAddr + "/status.json")
	if err != nil {
		t.Fatalf("read status.json: %v", err)
	}
	defer resp.Body.Close()
	var doc statusjson.Status
	dec := json.NewDecoder(resp.Body)
	dec.DisallowUnknownFields() // the schema's types name every field lbd writes
	if err := dec.Decode(&doc); err != nil {
		t.Fatalf("decode status.json: %v", err)
	}
	return doc
}
