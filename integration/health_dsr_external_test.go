package integration

import (
	"bufio"
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dsrlb/dsrlb/integration/topo"
	"github.com/dsrlb/dsrlb/lbd/statusjson"
)

// TestHealthDSRVIPNotLocal: with vip_owner external and the VIP on no
// interface of the balancer (a keepalived standby, a BGP balancer), the
// backends' answers to http checks through the DSR path come from an
// address that is not the balancer's. Its kernel would answer each with a
// RST to the VIP, which reaches a backend (here the VIP's neighbour entry
// points at b1, as the router or the keepalived master would take it there)
// and can reset a check's connection. The data plane drops those answers
// (drop_check_reply) after lbd's socket took them: over many rounds of
// checks the balancer's kernel sends no RST and no backend leaves rotation.
func TestHealthDSRVIPNotLocal(t *testing.T) {
	s := begin(t, "health-dsr-vip-not-local")
	s.needRoot()
	tp := mustTopology(t, topo.Options{})
	svc := tp.WebService("web", topo.VIP4, "", tp.Backends...)
	svc.Check = topo.Check{Type: "http", Path: "/", Interval: 300 * time.Millisecond, Timeout: 250 * time.Millisecond, Rise: 1, Fall: 1, Port: topo.HTTPPort}
	cfg := topo.Config{Services: []topo.Service{svc}, VIPOwner: "external"}
	ctx := ctxFor(t, 90*time.Second)
	if _, err := tp.WriteConfig(cfg); err != nil {
		t.Fatal(err)
	}
	serveBackends(t, ctx, tp)
	lb := tp.Balancer
	b1 := tp.Backend("b1")
	if out, err := lb.NS.Run(ctx, "ip", "neigh", "replace", topo.VIP4.String(), "lladdr", b1.MAC.String(), "dev", lb.Dev, "nud", "permanent"); err != nil {
		t.Fatalf("point the balancer's neighbour entry for the VIP at b1: %v\n%s", err, out)
	}
	lbd, err := tp.StartLbd()
	if err != nil {
		t.Fatal(err)
	}
	logOnFailure(t, lbd)
	since := waitAllUp(t, tp, len(tp.Backends), 30*time.Second)
	if local, err := lb.HasAddr(topo.VIP4); err != nil || local {
		t.Fatalf("the VIP is on the balancer (%v, %v): the scenario needs it elsewhere", local, err)
	}

	logMark := len(lbd.Output())
	rstsBefore := tcpOutRsts(ctx, t, lb)
	dropsBefore := lbdStatus(t, tp, lb).Verdicts["drop_check_reply"]
	// 20 rounds of checks of every backend; each http check's answers are
	// a SYN-ACK, the response and the FIN at least.
	want := dropsBefore + uint64(20*3*len(tp.Backends))
	var drops uint64
	for deadline := time.Now().Add(40 * time.Second); ; time.Sleep(300 * time.Millisecond) {
		if drops = lbdStatus(t, tp, lb).Verdicts["drop_check_reply"]; drops >= want {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("drop_check_reply went %d -> %d within 40s, want at least %d", dropsBefore, drops, want)
		}
	}
	rsts := tcpOutRsts(ctx, t, lb) - rstsBefore
	t.Logf("drop_check_reply %d -> %d; balancer kernel TCP RSTs sent meanwhile: %d", dropsBefore, drops, rsts)
	if rsts != 0 {
		t.Errorf("the balancer's kernel sent %d TCP RSTs during the checks, want 0 (the check answers reached its stack)", rsts)
	}
	for name, at := range waitAllUpSince(t, tp) {
		if !at.Equal(since[name]) {
			t.Errorf("backend %s changed state during the checks (since %v, was %v): a check failed", name, at, since[name])
		}
	}
	if log := lbd.Output()[logMark:]; strings.Contains(log, "out of rotation") {
		t.Errorf("lbd took a backend out of rotation during the checks:\n%s", log)
	}
}

// waitAllUp waits until every one of n backends of the first service is
// up and returns when each became so.
func waitAllUp(t *testing.T, tp *topo.Topology, n int, d time.Duration) map[string]time.Time {
	t.Helper()
	var last string
	deadline := time.Now().Add(d)
	for { // until lbd has pinned its data plane
		out, err := tp.LbdOn(context.Background(), tp.Balancer, "status", "--json")
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("lbd status never answered within %v: %v\n%s", d, err, out)
		}
		time.Sleep(200 * time.Millisecond)
	}
	for ; time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if since := waitAllUpSince(t, tp); len(since) == n {
			return since
		}
		last = fmt.Sprint(lbdStatus(t, tp, tp.Balancer).Services)
	}
	t.Fatalf("not every backend up within %v: %s", d, last)
	return nil
}

// waitAllUpSince is the state_since of each backend that is up.
func waitAllUpSince(t *testing.T, tp *topo.Topology) map[string]time.Time {
	t.Helper()
	up := map[string]time.Time{}
	st := lbdStatus(t, tp, tp.Balancer)
	for _, s := range st.Services {
		for _, b := range s.Backends {
			if b.State == statusjson.StateUp && b.StateSince != nil {
				up[b.Name] = *b.StateSince
			}
		}
	}
	return up
}

// tcpOutRsts is the namespace's Tcp OutRsts counter: RSTs its kernel sent
// (lbd's own segments, written on a packet socket, are not counted).
func tcpOutRsts(ctx context.Context, t *testing.T, h *topo.Host) uint64 {
	t.Helper()
	out, err := h.NS.Run(ctx, "cat", "/proc/net/snmp")
	if err != nil {
		t.Fatalf("read /proc/net/snmp: %v\n%s", err, out)
	}
	var names []string
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 || f[0] != "Tcp:" {
			continue
		}
		if names == nil {
			names = f
			continue
		}
		for i, n := range names {
			if n == "OutRsts" && i < len(f) {
				v, err := strconv.ParseUint(f[i], 10, 64)
				if err != nil {
					t.Fatalf("parse Tcp OutRsts %q: %v", f[i], err)
				}
				return v
			}
		}
	}
	t.Fatalf("no Tcp OutRsts in /proc/net/snmp:\n%s", out)
	return 0
}
