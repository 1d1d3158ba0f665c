package integration

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/dsrlb/dsrlb/integration/topo"
	"github.com/dsrlb/dsrlb/lbd/vip"
)

// vrrpTakeover bounds a BACKUP's takeover: master down interval
// (3 x advert_int + skew, ~3.6s at advert_int 1s and priority 100) plus
// slack for a shared machine; a functional bound, not a performance figure.
const vrrpTakeover = 10 * time.Second

// standbyEnv is two balancers running lbd with vip_owner external, each
// with keepalived moving the VIP between them by unicast VRRP.
type standbyEnv struct {
	t    *testing.T
	tp   *topo.Topology
	lbds map[string]*topo.Proc
	kas  map[string]*topo.Keepalived
}

func (e *standbyEnv) startLbd(lb *topo.Host) {
	e.t.Helper()
	p, err := e.tp.StartLbdOn(lb)
	if err != nil {
		e.t.Fatal(err)
	}
	logOnFailure(e.t, p)
	e.lbds[lb.Role] = p
	if err := p.WaitOutput(context.Background(), "lbd ready", 20*time.Second); err != nil {
		e.t.Fatal(err)
	}
}

// startKeepalived starts keepalived on lb: priority 150 (MASTER) on the
// first balancer, 100 on the other, unicast to each other.
func (e *standbyEnv) startKeepalived(ctx context.Context, lb *topo.Host) {
	e.t.Helper()
	peer, prio := e.tp.Balancers[1], 150
	if lb != e.tp.Balancers[0] {
		peer, prio = e.tp.Balancers[0], 100
	}
	k, err := e.tp.StartKeepalived(ctx, lb, peer, topo.VIP4, prio, e.tp.LbdPIDFile(lb))
	if err != nil {
		e.t.Fatal(err)
	}
	logOnFailure(e.t, k.Proc)
	// At the end the child, then the parent, are killed by PID, before
	// Close removes the namespaces (cleanups run last-in first-out).
	e.t.Cleanup(k.KillAll)
	e.kas[lb.Role] = k
}

// lbdOwned lists the addresses lbd marked as its own on lb's eth0.
func (e *standbyEnv) lbdOwned(lb *topo.Host) []netip.Addr {
	e.t.Helper()
	var owned []netip.Addr
	err := lb.NS.Do(func() (err error) {
		owned, err = vip.Owned(lb.Dev)
		return err
	})
	if err != nil {
		e.t.Fatalf("addresses of %s on %s: %v", lb.Dev, lb.Role, err)
	}
	return owned
}

// webPackets is the packet counter of service web in lb's pinned data
// plane (lbd status --json reads the maps, lbd running or not).
func (e *standbyEnv) webPackets(lb *topo.Host) uint64 {
	e.t.Helper()
	return serviceCounters(e.t, e.tp, lb, "web").Packets
}

// waitClientSees waits (at most d) until the client's neighbour entry for
// the VIP names lb's MAC: the gratuitous ARP of a new MASTER arrived.
func (e *standbyEnv) waitClientSees(lb *topo.Host, d time.Duration) {
	e.t.Helper()
	var got fmt.Stringer
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		mac, err := e.tp.Client.NeighborMAC(topo.VIP4)
		if err != nil {
			e.t.Fatal(err)
		}
		if bytes.Equal(mac, lb.MAC) {
			return
		}
		got = mac
	}
	e.t.Fatalf("client's neighbour entry for %s is %v, want %s's MAC %s within %v", topo.VIP4, got, lb.Role, lb.MAC, d)
}

// TestKeepalivedFailover: active/standby with keepalived. Both balancers
// run lbd with vip_owner external (so neither takes the VIP itself) and
// keepalived with unicast VRRP; the MASTER holds the VIP. Long-lived
// connections through the VIP then survive: (1) SIGKILL of the MASTER's
// keepalived and lbd: the BACKUP takes the VIP, its gratuitous ARP
// repoints the client, and every connection continues on its backend
// through a balancer that has no conntrack for it (same Maglev table);
// (2) the first balancer's keepalived returning without lbd stays out
// (track_script), and takes the VIP back once lbd runs again; (3) lbd
// alone killed on the MASTER: the track_script puts it in FAULT, which
// releases the VIP to the other.
func TestKeepalivedFailover(t *testing.T) {
	s := begin(t, "keepalived-active-standby-failover")
	s.needRoot()
	s.needTools("keepalived", "nsenter")
	tp := mustTopology(t, topo.Options{Balancers: 2})
	lb1, lb2 := tp.Balancers[0], tp.Balancers[1]
	e := &standbyEnv{t: t, tp: tp, lbds: map[string]*topo.Proc{}, kas: map[string]*topo.Keepalived{}}
	ctx := ctxFor(t, 3*time.Minute)
	cfg := topo.Config{Services: []topo.Service{tp.WebService("web", topo.VIP4, "maglev", tp.Backends...)}, VIPOwner: "external"}
	if _, err := tp.WriteConfig(cfg); err != nil {
		t.Fatal(err)
	}
	if out, err := tp.Lbd(ctx, "validate"); err != nil {
		t.Fatalf("harness wrote a configuration lbd refuses:\n%s\n%s", tp.Render(cfg), out)
	}
	serveBackends(t, ctx, tp)
	for _, lb := range tp.Balancers {
		e.startLbd(lb)
	}
	// vip_owner external: lbd put the VIP on neither balancer.
	if err := topo.WaitVIPHolder(ctx, tp.Balancers, topo.VIP4, nil, time.Second); err != nil {
		t.Fatalf("lbd with vip_owner external took the VIP: %v", err)
	}
	for _, lb := range tp.Balancers {
		e.startKeepalived(ctx, lb)
	}
	if err := topo.WaitVIPHolder(ctx, tp.Balancers, topo.VIP4, lb1, vrrpTakeover); err != nil {
		t.Fatalf("keepalived: %v", err)
	}
	client := tp.Client.HTTPClient(false, netip.Addr{})
	url := topo.URL(topo.VIP4, "/")
	if err := topo.WaitServing(ctx, client, url, []string{"b1", "b2", "b3"}, 20*time.Second); err != nil {
		t.Fatalf("VIP not served through %s: %v", lb1.Role, err)
	}
	e.waitClientSees(lb1, time.Second)
	// keepalived's address is not lbd's, and a reload leaves it alone.
	if owned := e.lbdOwned(lb1); len(owned) != 0 {
		t.Fatalf("lbd marked %v as its own on %s", owned, lb1.Role)
	}
	if out, err := tp.LbdOn(ctx, lb1, "reload"); err != nil {
		t.Fatalf("lbd reload on %s: %v\n%s", lb1.Role, err, out)
	}
	if err := e.lbds[lb1.Role].WaitOutput(ctx, "configuration reloaded", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := topo.WaitVIPHolder(ctx, tp.Balancers, topo.VIP4, lb1, time.Second); err != nil {
		t.Fatalf("after lbd reload: %v", err)
	}

	const n = 24
	ks := openKeepAlives(t, tp.Client, url, n)
	per := map[string]int{}
	for _, k := range ks {
		per[k.backend]++
	}
	if len(per) != len(tp.Backends) {
		t.Fatalf("%d connections reached only %v", n, per)
	}
	t.Logf("%d long-lived connections through %s: %v", n, lb1.Role, per)
	p := startPoking(ks, url)
	defer p.halt()
	p.check(t, "through "+lb1.Role+" before the crash", 3)

	// 1. The MASTER's keepalived (child, then parent) and lbd are killed
	// with SIGKILL: no priority-0 advert, nothing released.
	before2 := e.webPackets(lb2)
	killed := time.Now()
	e.kas[lb1.Role].KillAll()
	e.lbds[lb1.Role].Kill()
	for deadline := time.Now().Add(vrrpTakeover); ; time.Sleep(50 * time.Millisecond) {
		if ok, err := lb2.HasAddr(topo.VIP4); err != nil {
			t.Fatal(err)
		} else if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not take %s within %v of %s's keepalived being killed", lb2.Role, topo.VIP4, vrrpTakeover, lb1.Role)
		}
	}
	e.waitClientSees(lb2, 5*time.Second)
	t.Logf("%s's keepalived and lbd killed: %s holds %s and the client's neighbour entry names it after %v",
		lb1.Role, lb2.Role, topo.VIP4, time.Since(killed).Round(time.Millisecond))
	p.check(t, "after "+lb1.Role+"'s keepalived and lbd were killed", 5) // through lb2
	if after := e.webPackets(lb2); after <= before2 {
		t.Fatalf("%s forwarded no packet of service web after the takeover (%d before, %d after)", lb2.Role, before2, after)
	}

	// 2. keepalived returns on lb1 without lbd: the track_script keeps it
	// out of MASTER (it removes the VIP its killed predecessor left). Then
	// lbd returns, adopts its data plane, and lb1 (priority 150) preempts.
	e.startKeepalived(ctx, lb1)
	if err := topo.WaitVIPHolder(ctx, tp.Balancers, topo.VIP4, lb2, vrrpTakeover); err != nil {
		t.Fatalf("%s's keepalived back without lbd: %v", lb1.Role, err)
	}
	time.Sleep(3 * time.Second) // more than a track_script rise: lb1 must still be out
	if err := topo.WaitVIPHolder(ctx, tp.Balancers, topo.VIP4, lb2, time.Second); err != nil {
		t.Fatalf("%s took the VIP without lbd running: %v", lb1.Role, err)
	}
	p.check(t, "while "+lb1.Role+"'s keepalived ran without lbd", 2)
	e.startLbd(lb1)
	if err := topo.WaitVIPHolder(ctx, tp.Balancers, topo.VIP4, lb1, vrrpTakeover); err != nil {
		t.Fatalf("%s with lbd back: %v", lb1.Role, err)
	}
	e.waitClientSees(lb1, 5*time.Second)
	p.check(t, "after "+lb1.Role+" took the VIP back", 5)

	// 3. lbd alone dies on the MASTER: the track_script fails, keepalived
	// goes to FAULT and releases the VIP; lb2 takes it.
	e.lbds[lb1.Role].Kill()
	if err := topo.WaitVIPHolder(ctx, tp.Balancers, topo.VIP4, lb2, vrrpTakeover); err != nil {
		t.Fatalf("%s's lbd killed: %v", lb1.Role, err)
	}
	e.waitClientSees(lb2, 5*time.Second)
	p.check(t, "after "+lb1.Role+"'s lbd alone was killed", 5)
	rounds := p.finish(t)
	t.Logf("%d long-lived connections, %d requests each across a MASTER crash, a return and an lbd crash: none failed", n, rounds)
}
