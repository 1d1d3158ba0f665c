package integration

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dsrlb/dsrlb/integration/topo"
	"github.com/dsrlb/dsrlb/lbd/datapath"
	"github.com/dsrlb/dsrlb/lbd/statusjson"
)

// TestAdoptedFailedStartLeavesPlane (issue 12): lbd A runs one
// configuration and stops, its data plane pinned and forwarding; lbd B
// starts with another that fails late — an IPv6-only balancer in BGP mode
// whose new file lost bgp.router_id: the speaker finds no IPv4 address on
// the interface for one, which nothing before the BGP start looks at. B
// exits, and the data plane is the one A left: the same services and
// backends in `lbd status --json`, connections established through A kept
// on their backends, new ones spread over A's backends, and A's conntrack
// tcp_timeout in the pinned settings although B's differs.
func TestAdoptedFailedStartLeavesPlane(t *testing.T) {
	const timeoutA, timeoutB = 25 * time.Minute, 7 * time.Minute
	s := begin(t, "adopted-failed-start-left-as-found")
	peer := netip.MustParseAddr("2001:db8::99") // nobody: sessions never come up, which A does not need
	e := startLB(t, s, topo.Options{}, func(tp *topo.Topology) topo.Config {
		// BGP mode takes no VIP: the client reaches it by a route through
		// the balancer, as a router would send it.
		out, err := tp.Client.NS.Run(context.Background(), "ip", "-6", "route", "add", topo.VIP6.String()+"/128", "via", tp.Balancer.IPv6.String())
		if err != nil {
			t.Fatalf("route the VIP through the balancer: %v\n%s", err, out)
		}
		return topo.Config{
			TCPTimeout: timeoutA,
			Services:   []topo.Service{tp.WebService("web6", topo.VIP6, "", tp.Backends...)},
			BGP: &topo.BGP{ASN: topo.BalancerASN, RouterID: tp.Balancer.IPv4, WithdrawWait: time.Second,
				Peers: []topo.BGPPeer{{Address: peer, ASN: topo.RouterASN}}},
		}
	})
	ctx := ctxFor(t, 2*time.Minute)
	url := topo.URL(topo.VIP6, "/")
	ks := keepAlivesOnEach(t, e.tp.Client, url, "b1", "b2", "b3")
	poke := func(when string) {
		t.Helper()
		for _, k := range ks {
			if a := topo.Get(context.Background(), k.c, url); a.Err != nil || a.Backend != k.backend {
				t.Fatalf("%s: connection established on %s: %+v", when, k.backend, a)
			}
		}
	}
	if err := e.lbd.Stop(10 * time.Second); err != nil {
		t.Fatalf("lbd A did not stop cleanly: %v", err)
	}
	found, first := plane(t, e.tp), e.cfg
	poke("lbd A stopped")

	// B: b3 dropped from web6, a service added, no router_id; the
	// balancer keeps IPv6 only.
	bal := e.tp.Balancer
	if out, err := bal.NS.Run(ctx, "ip", "-4", "addr", "flush", "dev", bal.Link); err != nil {
		t.Fatalf("remove the balancer's IPv4 address: %v\n%s", err, out)
	}
	api := e.tp.WebService("api6", netip.MustParseAddr("2001:db8::30"), "", e.tp.Backends[2])
	cfg := topo.Config{TCPTimeout: timeoutB, Services: []topo.Service{e.tp.WebService("web6", topo.VIP6, "", e.tp.Backends[:2]...), api},
		BGP: &topo.BGP{ASN: topo.BalancerASN, WithdrawWait: time.Second, Peers: []topo.BGPPeer{{Address: peer, ASN: topo.RouterASN}}}}
	if _, err := e.tp.WriteConfig(cfg); err != nil {
		t.Fatal(err)
	}
	b, err := e.tp.StartLbd()
	if err != nil {
		t.Fatal(err)
	}
	logOnFailure(t, b)
	if err := b.Wait(30 * time.Second); err == nil {
		t.Fatalf("lbd B started without a BGP router id:\n%s", b.Output())
	}
	if out := b.Output(); !strings.Contains(out, "BGP router id") || !strings.Contains(out, "adopted the pinned data plane") || strings.Contains(out, "lbd ready") {
		t.Fatalf("lbd B: want it to adopt A's data plane, then fail for the router id, never ready:\n%s", out)
	}

	// lbd status names backends from the file: read it with A's again,
	// as an operator rolling back would.
	if _, err := e.tp.WriteConfig(first); err != nil {
		t.Fatal(err)
	}
	if got := plane(t, e.tp); got != found {
		t.Errorf("data plane after B's failed start:\n%s\nwant what A left:\n%s", got, found)
	}
	if got := pinnedTCPTimeout(t, e.tp); got != timeoutA {
		t.Errorf("pinned conntrack tcp_timeout after B's failed start %v, want A's %v (B's is %v)", got, timeoutA, timeoutB)
	}
	poke("after B's failed start")
	as := e.newConns(e.client, url, 60, 4, 30*time.Second)
	mustNoFailures(t, "new connections after B's failed start", as)
	if tally := topo.Tally(as); len(tally) != 3 {
		t.Errorf("new connections after B's failed start reach %s, want A's three backends", topo.FormatTally(tally))
	}
}

// keepAlivesOnEach opens keep-alive connections to url until each of
// backends holds one, at most 60: Maglev spreads them, so a fixed count
// would miss one backend now and then.
func keepAlivesOnEach(t *testing.T, h *topo.Host, url string, backends ...string) []keepAlive {
	t.Helper()
	var ks []keepAlive
	for len(ks) < 60 {
		ks = append(ks, openKeepAlives(t, h, url, 1)...)
		if !slices.ContainsFunc(backends, func(b string) bool {
			return !slices.ContainsFunc(ks, func(k keepAlive) bool { return k.backend == b })
		}) {
			return ks
		}
	}
	t.Fatalf("60 keep-alive connections do not reach each of %v: %v", backends, ks)
	return nil
}

// pinnedTCPTimeout reads the conntrack tcp_timeout in the pinned
// settings (lb_cfg), read-only.
func pinnedTCPTimeout(t *testing.T, tp *topo.Topology) time.Duration {
	t.Helper()
	r, err := datapath.OpenReadOnly(tp.PinPathFor(tp.Balancer))
	if err != nil {
		t.Fatalf("open the pinned data plane read-only: %v", err)
	}
	defer r.Close()
	return r.TCPTimeout()
}

// plane is what `lbd status --json` shows of the pinned services and
// backends, counters aside, one line each.
func plane(t *testing.T, tp *topo.Topology) string {
	t.Helper()
	var b strings.Builder
	for _, s := range lbdStatus(t, tp, tp.Balancer).Services {
		fmt.Fprintf(&b, "%s %s/%s %v %s\n", s.Name, s.VIP, s.Protocol, s.Ports, s.Scheduler)
		for _, be := range s.Backends {
			fmt.Fprintf(&b, "  %s\n", backendLine(be))
		}
	}
	return b.String()
}

func backendLine(be statusjson.Backend) string {
	return fmt.Sprintf("%s %s %s %s weight %d %q %s", be.Name, be.Address, be.MAC, be.State, be.Weight, be.StateReason, be.Admin)
}
