package integration

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/dsrlb/dsrlb/integration/topo"
	"github.com/dsrlb/dsrlb/lbd/statusjson"
)

// Health checks through the DSR path (check.via: vip, the default): the
// failures keepalived/HAProxy-style checks of the backend's own address
// miss.

// TestHealthDSRVIPLeftLo: a backend that loses the VIP from lo still
// answers on its own address, but the default check goes to the VIP and
// takes it out: no new connection fails after interval x fall, and `lbd
// status` says why.
func TestHealthDSRVIPLeftLo(t *testing.T) { vipLeftLo(t, topo.VIP4, "health-dsr-vip-left-lo") }

// TestHealthDSRVIPLeftLoIPv6 is the same over IPv6.
func TestHealthDSRVIPLeftLoIPv6(t *testing.T) {
	vipLeftLo(t, topo.VIP6, "health-dsr-vip-left-lo-ipv6")
}

func vipLeftLo(t *testing.T, vip netip.Addr, name string) {
	s := begin(t, name)
	e := startLB(t, s, topo.Options{}, func(tp *topo.Topology) topo.Config {
		return topo.Config{Services: []topo.Service{tp.WebService("web", vip, "", tp.Backends...)}}
	})
	chk := e.cfg.Services[0].Check
	url := topo.URL(vip, "/")
	leaveBy := checkBound(chk, chk.Fall, checkSlack)
	b2 := e.tp.Backend("b2")
	own := b2.IPv4
	bits := 32
	if vip.Is6() {
		own, bits = b2.IPv6, 128
	}

	bg := startBackground(e.client, url, 4, 20000, 60*time.Second)
	defer bg.finish()
	bg.waitAnswers(t, "before the VIP leaves lo", 50, 20*time.Second)

	ctx := ctxFor(t, 30*time.Second)
	removed := time.Now()
	if out, err := b2.NS.Run(ctx, "ip", "addr", "del", fmt.Sprintf("%s/%d", vip, bits), "dev", "lo"); err != nil {
		t.Fatalf("remove the VIP from b2's lo: %v\n%s", err, out)
	}
	t.Logf("removed %s from b2's lo", vip)
	// The load must run through the window and well past it.
	bg.waitAnswers(t, "within interval x fall", 20, leaveBy+10*time.Second)
	for time.Since(removed) < leaveBy+2*time.Second {
		bg.waitAnswers(t, "after interval x fall", 10, 10*time.Second)
	}
	// b2 still serves on its own address: a check of that address (what
	// keepalived and HAProxy do) would keep it in rotation.
	if a := topo.Get(ctx, e.client, topo.URL(own, "/")); a.Err != nil || a.Backend != "b2" {
		t.Fatalf("b2's own address %s does not answer: %+v", own, a)
	}
	as := bg.finish()
	before, window, after := splitAt(as, removed, leaveBy)
	t.Logf("new connections: before %s; within %v after %s; later %s", topo.FormatTally(topo.Tally(before)),
		leaveBy, topo.FormatTally(topo.Tally(window)), topo.FormatTally(topo.Tally(after)))
	mustNoFailures(t, "new connections before the VIP left lo", before)
	mustNoFailures(t, fmt.Sprintf("new connections later than interval x fall (%v) after the VIP left lo", leaveBy), after)
	if len(after) < 10 || topo.Tally(after)["b2"] != 0 {
		t.Fatalf("after interval x fall: %s; want traffic, none on b2", topo.FormatTally(topo.Tally(after)))
	}
	waitReason(t, e, "web", "b2", "not answered by "+own.String()+" through the DSR path", "is hostprep applied (VIP on lo)?")
	// The check's reason reached the log too.
	if !strings.Contains(e.lbd.Output(), "is hostprep applied (VIP on lo)?") {
		t.Errorf("lbd's log does not give the DSR-path reason:\n%s", e.lbd.Output())
	}
}

// TestHealthDSRServiceOnOwnAddress: a backend whose service listens only on
// its own address (not on the VIP, where client traffic arrives) is down,
// with the reason that says so, and takes no new connection.
func TestHealthDSRServiceOnOwnAddress(t *testing.T) {
	s := begin(t, "health-dsr-service-on-own-address")
	e := startLB(t, s, topo.Options{}, func(tp *topo.Topology) topo.Config { return web(tp, "") })
	chk := e.cfg.Services[0].Check
	url := topo.URL(topo.VIP4, "/")
	leaveBy := checkBound(chk, chk.Fall, checkSlack)
	b2 := e.tp.Backend("b2")
	ctx := ctxFor(t, 60*time.Second)

	e.servers["b2"].Kill()
	p, err := e.tp.StartServerOn(ctx, b2, b2.IPv4)
	if err != nil {
		t.Fatal(err)
	}
	logOnFailure(t, p)
	t.Cleanup(p.Kill)
	rebound := time.Now()
	if a := topo.Get(ctx, e.client, topo.URL(b2.IPv4, "/")); a.Err != nil || a.Backend != "b2" {
		t.Fatalf("b2's own address does not answer: %+v", a)
	}
	waitReason(t, e, "web", "b2", "refused by "+b2.IPv4.String()+" through the DSR path", "nothing listens on the VIP")
	if since := time.Since(rebound); since > leaveBy+5*time.Second {
		t.Errorf("b2 reported down %v after its service left the VIP, want within about %v", since, leaveBy)
	}
	// Now every new connection lands on a backend that serves the VIP.
	as := e.newConns(e.client, url, 60, 4, 30*time.Second)
	mustNoFailures(t, "new connections with b2 down", as)
	if n := topo.Tally(as)["b2"]; n != 0 || len(as) != 60 {
		t.Fatalf("new connections with b2 down: %s; want 60, none on b2", topo.FormatTally(topo.Tally(as)))
	}
}

// splitAt sorts answers into before t0, within d after it, and later.
func splitAt(as []timed, t0 time.Time, d time.Duration) (before, window, after []topo.Answer) {
	for _, a := range as {
		switch {
		case a.end.Before(t0): // in flight at t0: the window's
			before = append(before, a.Answer)
		case a.at.Before(t0.Add(d)):
			window = append(window, a.Answer)
		default:
			after = append(after, a.Answer)
		}
	}
	return before, window, after
}

// waitReason waits until `lbd status --json` shows server of service down
// with a reason containing every one of wants.
func waitReason(t *testing.T, e *lbEnv, service, server string, wants ...string) {
	t.Helper()
	var last string
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		st := lbdStatus(t, e.tp, e.tp.Balancer)
		for _, s := range st.Services {
			for _, b := range s.Backends {
				if s.Name != service || b.Name != server {
					continue
				}
				last = fmt.Sprintf("state %s, reason %q", b.State, b.StateReason)
				ok := b.State == statusjson.StateDown
				for _, w := range wants {
					ok = ok && strings.Contains(b.StateReason, w)
				}
				if ok {
					t.Logf("lbd status: %s/%s %s", service, server, last)
					return
				}
			}
		}
	}
	out, _ := e.tp.Lbd(context.Background(), "status")
	t.Fatalf("lbd status never showed %s/%s down with %q; last %s\n%s", service, server, wants, last, out)
}
