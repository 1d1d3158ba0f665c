package integration

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/dsrlb/dsrlb/integration/topo"
)

// TestDSRByHand checks the backends' half of DSR without lbd: with the
// client's neighbour entry for the VIP pointed at one backend's MAC, the
// backend (prepared by hostprep) accepts the VIP on lo and answers TCP and
// UDP from the VIP, seeing the real client address. It guards the harness
// (servers, hostprep, addressing) that every lbd scenario relies on.
func TestDSRByHand(t *testing.T) {
	s := begin(t, "dsr-by-hand-backends-answer-from-vip")
	s.needRoot()
	tp := mustTopology(t, topo.Options{})
	cfg := topo.Config{Services: []topo.Service{
		tp.WebService("web", topo.VIP4, "", tp.Backends...),
		tp.WebService("web6", topo.VIP6, "", tp.Backends...),
	}}
	if _, err := tp.WriteConfig(cfg); err != nil {
		t.Fatal(err)
	}
	ctx := ctxFor(t, 60*time.Second)
	if _, err := tp.PrepareBackends(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := tp.StartServers(ctx); err != nil {
		t.Fatal(err)
	}
	c := tp.Client.HTTPClient(false, netip.Addr{})
	for _, b := range tp.Backends {
		for _, vip := range []netip.Addr{topo.VIP4, topo.VIP6} {
			want := tp.Client.IPv4
			if vip.Is6() {
				want = tp.Client.IPv6
			}
			if err := tp.PointVIPAt(tp.Client, vip, b); err != nil {
				t.Fatal(err)
			}
			a := topo.Get(ctx, c, topo.URL(vip, "/"))
			if a.Err != nil || a.Backend != b.Role || a.ClientIP() != want {
				t.Fatalf("http %s pointed at %s: %+v, want backend=%s client=%s", vip, b.Role, a, b.Role, want)
			}
			u := tp.Client.UDPAsk(context.Background(), netip.AddrPortFrom(vip, topo.UDPPort), 3*time.Second)
			if u.Err != nil || u.Backend != b.Role || u.ClientIP() != want {
				t.Fatalf("udp %s pointed at %s: %+v (a reply not from the VIP is dropped by the client's connected socket)", vip, b.Role, u)
			}
		}
	}
}
