package integration

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/dsrlb/dsrlb/integration/topo"
)

// TestStatusLastChange: while lbd runs, `lbd status` shows for each
// backend how long ago its state last changed (asked from the daemon over
// its control socket; the pinned maps keep no time), and --json carries
// state_since; a backend taken down moves its time; once lbd is stopped
// the column shows "-", --json has no state_since nor arp_guard, and the
// command still works from the maps.
func TestStatusLastChange(t *testing.T) {
	s := begin(t, "status-last-change")
	e := startLB(t, s, topo.Options{}, func(tp *topo.Topology) topo.Config { return web(tp, "") })
	ctx := ctxFor(t, 2*time.Minute)
	e.waitInRotation(ctx, e.cfg.Services[0])
	row := func(out, backend string) string {
		return regexp.MustCompile(`(?m)^\s+-> ` + backend + `\s.*$`).FindString(out)
	}
	out, err := e.tp.Lbd(ctx, "status")
	if err != nil || !strings.Contains(out, "LAST CHANGE") {
		t.Fatalf("lbd status: %v, want a LAST CHANGE column:\n%s", err, out)
	}
	for _, b := range e.tp.Backends {
		if r := row(out, b.Role); !regexp.MustCompile(`\sup\s+\d+(m\d+)?s ago\s`).MatchString(r) {
			t.Errorf("%s: row %q, want up N s ago:\n%s", b.Role, r, out)
		}
	}
	st := lbdStatus(t, e.tp, e.tp.Balancer)
	started := *st.Services[0].Backends[0].StateSince
	if st.ARPGuard == nil || !st.ARPGuard.Running {
		t.Errorf("lbd status --json while lbd runs: arp_guard %+v, want running", st.ARPGuard)
	}

	// A backend going down moves its time.
	down := e.tp.Backends[0]
	e.servers[down.Role].Kill()
	deadline := time.Now().Add(30 * time.Second)
	for {
		st = lbdStatus(t, e.tp, e.tp.Balancer)
		if st.Services[0].Backends[0].State == "down" || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if b := st.Services[0].Backends[0]; b.State != "down" || b.StateSince == nil || !b.StateSince.After(started) {
		t.Errorf("after the kill: %s %s since %v, want down since after %s", b.Name, b.State, b.StateSince, started)
	}

	if err := e.lbd.Stop(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	out, err = e.tp.Lbd(context.Background(), "status")
	if err != nil || !strings.Contains(out, "lbd is not running") || !strings.Contains(out, "ARP guard: not watching (lbd is not running)") {
		t.Fatalf("lbd status with lbd stopped: %v\n%s", err, out)
	}
	for _, b := range e.tp.Backends {
		if r := row(out, b.Role); !regexp.MustCompile(`\s(up|down)\s+-\s`).MatchString(r) {
			t.Errorf("%s with lbd stopped: row %q, want \"-\" as LAST CHANGE:\n%s", b.Role, r, out)
		}
	}
	st = lbdStatus(t, e.tp, e.tp.Balancer)
	if st.ARPGuard != nil || st.Services[0].Backends[0].StateSince != nil {
		t.Errorf("lbd status --json with lbd stopped: arp_guard %+v, state_since %v; want neither", st.ARPGuard, st.Services[0].Backends[0].StateSince)
	}
}
