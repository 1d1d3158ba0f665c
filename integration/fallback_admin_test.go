package integration

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dsrlb/dsrlb/integration/topo"
)

// Issue 15 points 4-6: fallback servers, on_failure: drain, the notify
// hook and lbd set, against real traffic.

// onBackend opens keep-alive connections to url until one lands on
// backend (bounded) and returns it.
func onBackend(t *testing.T, e *lbEnv, url, backend string) keepAlive {
	t.Helper()
	for i := 0; i < 60; i++ {
		if k := openKeepAlives(t, e.tp.Client, url, 1)[0]; k.backend == backend {
			return k
		}
	}
	t.Fatalf("no connection landed on %s in 60 tries", backend)
	return keepAlive{}
}

// mustStay makes n requests on an established connection and fails unless
// each is answered by backend.
func mustStay(t *testing.T, k keepAlive, url string, n int, what string) {
	t.Helper()
	for i := 0; i < n; i++ {
		if a := topo.Get(context.Background(), k.c, url); a.Err != nil || a.Backend != k.backend {
			t.Fatalf("%s: established connection to %s, request %d: %+v", what, k.backend, i, a)
		}
	}
}

// waitRun waits (bounded by d) for run consecutive new connections for
// which ok holds: the change being waited for reached the data plane.
func (e *lbEnv) waitRun(url string, run int, d time.Duration, what string, ok func(topo.Answer) bool) {
	e.t.Helper()
	deadline := time.Now().Add(d)
	var last topo.Answer
	for n := 0; n < run; {
		if time.Now().After(deadline) {
			e.t.Fatalf("%s: not within %v (last answer %+v)", what, d, last)
		}
		if last = topo.Get(context.Background(), e.client, url); last.Err == nil && ok(last) {
			n++
		} else {
			n = 0
		}
	}
}

// mustAvoid makes n new connections: none may fail, none may reach any of
// avoid.
func (e *lbEnv) mustAvoid(url string, n int, what string, avoid ...string) map[string]int {
	e.t.Helper()
	as := e.newConns(e.client, url, n, 4, 60*time.Second)
	mustNoFailures(e.t, what, as)
	tally := topo.Tally(as)
	for _, b := range avoid {
		if tally[b] != 0 {
			e.t.Fatalf("%s: %d of %d new connections reached %s: %s", what, tally[b], n, b, topo.FormatTally(tally))
		}
	}
	e.t.Logf("%s: %s", what, topo.FormatTally(tally))
	return tally
}

func (e *lbEnv) status(ctx context.Context) string {
	e.t.Helper()
	out, err := e.tp.Lbd(ctx, "status")
	if err != nil {
		e.t.Fatalf("lbd status: %v\n%s", err, out)
	}
	return out
}

// statusLine is the line of lbd status about backend name.
func statusLine(out, name string) string {
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), "-> "+name+" ") {
			return l
		}
	}
	return ""
}

// TestFallbackTakesOverAndHandsBack: a fallback server takes no flows
// while a primary is up, takes the new ones when every primary is down,
// hands them back when one returns and keeps the connections it holds; the
// notify hook sees every transition.
func TestFallbackTakesOverAndHandsBack(t *testing.T) {
	s := begin(t, "fallback-takeover-handback")
	var events string
	e := startLB(t, s, topo.Options{}, func(tp *topo.Topology) topo.Config {
		svc := tp.WebService("web", topo.VIP4, "", tp.Backends[0], tp.Backends[1])
		svc.Fallback = []topo.Server{{Name: "sorry", Address: tp.Backends[2].IPv4, Weight: 1}}
		events = filepath.Join(tp.Dir, "notify.log")
		hook := filepath.Join(tp.Dir, "notify.sh")
		script := "#!/bin/sh\necho \"$DSRLB_SERVICE $DSRLB_SERVER $DSRLB_ADDRESS $DSRLB_OLD_STATE>$DSRLB_NEW_STATE fallback=$DSRLB_FALLBACK\" >> " + events + "\n"
		if err := os.WriteFile(hook, []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
		return topo.Config{Services: []topo.Service{svc}, Notify: &topo.Notify{Command: hook, Timeout: 2 * time.Second}}
	})
	ctx := ctxFor(t, 3*time.Minute)
	url := topo.URL(topo.VIP4, "/")
	chk := e.cfg.Services[0].Check
	leaveBy := checkBound(chk, chk.Fall, 5*time.Second)

	e.mustAvoid(url, 100, "new connections while the primaries are up", "b3")
	// The fallback's own checks may still be rising (down, "health check
	// failing"): wait for it to stand by, within its rise.
	standingBy := func(l string) bool {
		return strings.Contains(l, "drain") && strings.Contains(l, "fallback standing by")
	}
	var out string
	for end := time.Now().Add(checkBound(chk, chk.Rise, 5*time.Second)); ; time.Sleep(100 * time.Millisecond) {
		out = e.status(ctx)
		if standingBy(statusLine(out, "sorry (fallback)")) || time.Now().After(end) {
			break
		}
	}
	if l := statusLine(out, "sorry (fallback)"); !standingBy(l) {
		t.Errorf("lbd status shows the standing-by fallback as %q:\n%s", l, out)
	}

	e.servers["b1"].Kill()
	e.servers["b2"].Kill()
	e.waitRun(url, 20, leaveBy, "the fallback taking the new connections", func(a topo.Answer) bool { return a.Backend == "b3" })
	e.mustAvoid(url, 100, "new connections with every primary down", "b1", "b2")
	out = e.status(ctx)
	if !strings.Contains(out, "web: fallback active") || !strings.Contains(statusLine(out, "sorry (fallback)"), " up ") {
		t.Errorf("lbd status does not say the fallback is active:\n%s", out)
	}
	held := onBackend(t, e, url, "b3")

	if _, err := e.tp.StartServer(ctx, e.tp.Backend("b1")); err != nil {
		t.Fatal(err)
	}
	e.waitRun(url, 20, leaveBy, "new connections handed back to the primary b1", func(a topo.Answer) bool { return a.Backend == "b1" })
	e.mustAvoid(url, 100, "new connections once b1 is back", "b2", "b3")
	mustStay(t, held, url, 10, "after the hand-back")

	// The hook: in order per server, the fallback's transitions flagged.
	want := []string{
		"web b1 " + e.tp.Backend("b1").IPv4.String() + " up>down fallback=0",
		"web b2 " + e.tp.Backend("b2").IPv4.String() + " up>down fallback=0",
		"web sorry " + e.tp.Backend("b3").IPv4.String() + " drain>up fallback=1",
		"web sorry " + e.tp.Backend("b3").IPv4.String() + " up>drain fallback=1",
		"web b1 " + e.tp.Backend("b1").IPv4.String() + " down>up fallback=0",
	}
	// The start's transitions (every server starts down until its checks
	// pass) come first; those of the test follow, in order per server.
	var got string
	var lines []string
	idxAfter := func(s string, from int) int {
		for i := from + 1; i < len(lines); i++ {
			if lines[i] == s {
				return i
			}
		}
		return -1
	}
	inOrder := func() bool {
		b1Down, sorryUp := idxAfter(want[0], -1), idxAfter(want[2], -1)
		return b1Down >= 0 && idxAfter(want[1], -1) >= 0 && sorryUp >= 0 && idxAfter(want[3], sorryUp) >= 0 && idxAfter(want[4], b1Down) >= 0
	}
	for end := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		b, _ := os.ReadFile(events)
		got = string(b)
		lines = strings.Split(strings.TrimSpace(got), "\n")
		if inOrder() || time.Now().After(end) {
			break
		}
	}
	if !inOrder() {
		t.Errorf("the notify hook did not see, in order per server,\n%s\nit saw:\n%s", strings.Join(want, "\n"), got)
	}
	t.Logf("notify hook saw:\n%s", got)
}

// TestOnFailureDrainKeepsEstablished: with on_failure: drain, a backend
// whose check fails keeps its established connection and takes no new
// ones. The check has a port of its own (8080), so the service on port 80
// stays up while the check fails.
func TestOnFailureDrainKeepsEstablished(t *testing.T) {
	s := begin(t, "on-failure-drain")
	checks := map[string]*topo.Proc{}
	e := startLB(t, s, topo.Options{}, func(tp *topo.Topology) topo.Config {
		cfg := web(tp, "")
		cfg.Services[0].OnFailure = "drain"
		cfg.Services[0].Check = topo.FastCheck(8080)
		for _, b := range tp.Backends {
			p, err := tp.Start(b, "check listener "+b.Role, tp.Bins.TestSrv, "-name", b.Role, "-http", "8080")
			if err != nil {
				t.Fatal(err)
			}
			if err := p.WaitOutput(context.Background(), "ready", 10*time.Second); err != nil {
				t.Fatal(err)
			}
			checks[b.Role] = p
		}
		return cfg
	})
	ctx := ctxFor(t, 2*time.Minute)
	url := topo.URL(topo.VIP4, "/")
	held := onBackend(t, e, url, "b3")
	// lbd logs it at start too (every server starts failing until its
	// checks pass): wait for one more.
	const drained = `backend=web/b3 reason="health check failing (on_failure: drain`
	seen := strings.Count(e.lbd.Output(), drained)
	checks["b3"].Kill()
	if err := e.lbd.WaitOutputN(ctx, drained, seen+1, 15*time.Second); err != nil {
		t.Fatal(err)
	}
	e.mustAvoid(url, 200, "new connections with b3's check failing", "b3")
	mustStay(t, held, topo.URL(topo.VIP4, "/slow?ms=50"), 20, "b3's check failing under on_failure: drain")
	out := e.status(ctx)
	if l := statusLine(out, "b3"); !strings.Contains(l, "drain") || !strings.Contains(l, "on_failure: drain") {
		t.Errorf("lbd status shows b3 as %q:\n%s", l, out)
	}
}

// TestSetDrainMaintReady: lbd set drain keeps established connections and
// sends new ones elsewhere, maint takes a server out, ready restores;
// unknown names, bad weights and a caller without privileges are refused
// clearly; the same set twice changes nothing.
func TestSetDrainMaintReady(t *testing.T) {
	s := begin(t, "lbd-set")
	e := startLB(t, s, topo.Options{}, func(tp *topo.Topology) topo.Config { return web(tp, "") })
	ctx := ctxFor(t, 3*time.Minute)
	url := topo.URL(topo.VIP4, "/")
	set := func(args ...string) (string, error) { return e.tp.Lbd(ctx, append([]string{"set"}, args...)...) }

	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"web/nope", "drain"}, `unknown server "nope" in service web: its servers are b1, b2, b3`},
		{[]string{"api/b3", "drain"}, `unknown service "api": this lbd serves web`},
		{[]string{"web/b3", "weight", "300"}, `weight "300": give a whole number from 0 to 256`},
		{[]string{"web/b3", "pause"}, `"pause": give drain, maint, ready or weight N`},
	} {
		if out, err := set(c.args...); err == nil || !strings.Contains(out, c.want) {
			t.Errorf("lbd set %v: %v\n%s\nwant a refusal saying %q", c.args, err, out, c.want)
		}
	}
	// Without privileges: the socket is root's only.
	dir, err := os.MkdirTemp("", "dsrlb-set-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	os.Chmod(dir, 0o755)
	cfgCopy := filepath.Join(dir, "dsrlb.yaml")
	if b, err := os.ReadFile(e.tp.ConfigPath()); err != nil || os.WriteFile(cfgCopy, b, 0o644) != nil {
		t.Fatalf("copy the configuration: %v", err)
	}
	out, err := e.tp.Balancer.NS.Run(ctx, "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--", e.tp.Bins.Lbd, "set", "web/b3", "drain", "--config", cfgCopy)
	if err == nil || !strings.Contains(out, "permission denied") || !strings.Contains(out, "lbd set needs root") {
		t.Errorf("lbd set without privileges: %v\n%s", err, out)
	}

	held := onBackend(t, e, url, "b3")
	if out, err := set("web/b3", "drain"); err != nil || !strings.Contains(out, "web/b3: drain (admin)") {
		t.Fatalf("lbd set web/b3 drain: %v\n%s", err, out)
	}
	if out, err := set("web/b3", "drain"); err != nil || !strings.Contains(out, "unchanged, already drain (admin)") {
		t.Errorf("second lbd set web/b3 drain: %v\n%s", err, out)
	}
	// set answers once the data plane is programmed: no wait needed.
	e.mustAvoid(url, 200, "new connections with b3 drained by lbd set", "b3")
	mustStay(t, held, topo.URL(topo.VIP4, "/slow?ms=50"), 20, "drained by lbd set")
	st := e.status(ctx)
	if l := statusLine(st, "b3"); !strings.Contains(l, "drain (admin)") {
		t.Errorf("lbd status shows b3 as %q:\n%s", l, st)
	}

	if out, err := set("web/b2", "maint"); err != nil || !strings.Contains(out, "maint (admin)") {
		t.Fatalf("lbd set web/b2 maint: %v\n%s", err, out)
	}
	e.mustAvoid(url, 100, "new connections with b2 in maint and b3 drained", "b2", "b3")
	if l := statusLine(e.status(ctx), "b2"); !strings.Contains(l, "down (admin)") || !strings.Contains(l, "maint (admin)") {
		t.Errorf("lbd status shows b2 in maint as %q", l)
	}
	if out, err := set("web/b1", "weight", "5"); err != nil || !strings.Contains(out, "weight 5 (admin)") {
		t.Errorf("lbd set web/b1 weight 5: %v\n%s", err, out)
	}
	for _, b := range []string{"b1", "b2", "b3"} {
		if out, err := set("web/"+b, "ready"); err != nil || !strings.Contains(out, "ready: back to the configuration") {
			t.Fatalf("lbd set web/%s ready: %v\n%s", b, err, out)
		}
	}
	if err := topo.WaitServing(ctx, e.client, url, []string{"b1", "b2", "b3"}, 10*time.Second); err != nil {
		t.Fatalf("after ready: %v", err)
	}
	if st := e.status(ctx); strings.Contains(st, "(admin)") {
		t.Errorf("lbd status still shows a setting after ready:\n%s", st)
	}
}

// TestSetSurvivesRestartDroppedByReload: a setting outlives an lbd restart,
// a reload that leaves its server alone, and is dropped by one that
// changes the server. While lbd is down, lbd set says lbd is not running.
func TestSetSurvivesRestartDroppedByReload(t *testing.T) {
	s := begin(t, "lbd-set-restart-reload")
	e := startLB(t, s, topo.Options{}, func(tp *topo.Topology) topo.Config { return web(tp, "") })
	ctx := ctxFor(t, 3*time.Minute)
	url := topo.URL(topo.VIP4, "/")
	if out, err := e.tp.Lbd(ctx, "set", "web/b3", "drain"); err != nil {
		t.Fatalf("lbd set: %v\n%s", err, out)
	}
	old := e.lbd
	if err := old.Stop(10 * time.Second); err != nil {
		t.Fatalf("lbd did not stop: %v", err)
	}
	if out, err := e.tp.Lbd(ctx, "set", "web/b3", "ready"); err == nil || !strings.Contains(out, "lbd is not running: ") {
		t.Errorf("lbd set while lbd is down: %v\n%s", err, out)
	}
	e.restartLbd(ctx, old)
	if !strings.Contains(e.lbd.Output(), "lbd set settings restored") {
		t.Errorf("the restarted lbd did not restore the setting:\n%s", e.lbd.Output())
	}
	e.mustAvoid(url, 100, "new connections after the restart", "b3")
	if l := statusLine(e.status(ctx), "b3"); !strings.Contains(l, "drain (admin)") {
		t.Errorf("after the restart lbd status shows b3 as %q", l)
	}

	reload := func(what string) {
		t.Helper()
		if _, err := e.tp.WriteConfig(e.cfg); err != nil {
			t.Fatal(err)
		}
		if out, err := e.tp.Lbd(ctx, "reload"); err != nil {
			t.Fatalf("lbd reload (%s): %v\n%s", what, err, out)
		}
	}
	e.cfg.Services[0].Servers[0].Weight = 2 // b1 changes, b3 does not
	reload("b1's weight")
	e.mustAvoid(url, 100, "new connections after a reload that leaves b3 alone", "b3")

	e.cfg.Services[0].Servers[2].Weight = 2 // b3 changes: its setting goes
	reload("b3's weight")
	if err := e.lbd.WaitOutput(ctx, `lbd set setting dropped: the configuration changed the server" backend=web/b3`, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := topo.WaitServing(ctx, e.client, url, []string{"b3"}, 10*time.Second); err != nil {
		t.Fatalf("b3 not back after the reload that changed it: %v", err)
	}
	if st := e.status(ctx); strings.Contains(st, "(admin)") {
		t.Errorf("lbd status still shows the dropped setting:\n%s", st)
	}
}
