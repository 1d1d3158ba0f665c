package daemon

import (
	"net"
	"net/netip"
	"testing"

	"github.com/dsrlb/dsrlb/lbd/arpguard"
	"github.com/dsrlb/dsrlb/shared/config"
)

// TestGuardTargets: the guard's mode follows who owns the VIPs, and a
// backend is known by its static mac or its resolved one; a server in two
// services is named twice.
func TestGuardTargets(t *testing.T) {
	for _, tc := range []struct {
		b    config.Balancer
		want arpguard.Mode
	}{
		{config.Balancer{VIPOwner: config.VIPOwnerLBD}, arpguard.OwnerLBD},
		{config.Balancer{VIPOwner: config.VIPOwnerExternal}, arpguard.OwnerExternal},
		{config.Balancer{VIPOwner: config.VIPOwnerExternal, BGP: &config.BGP{ASN: 64512}}, arpguard.OwnerBGP},
	} {
		if got := guardMode(tc.b); got != tc.want {
			t.Errorf("vip_owner %s, bgp %v: mode %s, want %s", tc.b.VIPOwner, tc.b.BGP != nil, got, tc.want)
		}
	}
	static := net.HardwareAddr{2, 0, 0, 0, 0, 0x11}
	resolved := net.HardwareAddr{2, 0, 0, 0, 0, 0x12}
	a1, a2, a3 := netip.MustParseAddr("203.0.113.11"), netip.MustParseAddr("203.0.113.12"), netip.MustParseAddr("203.0.113.13")
	d := &Daemon{cfg: &config.Config{Balancer: config.Balancer{VIPOwner: config.VIPOwnerLBD}, Services: []config.Service{
		{Name: "web", VIP: netip.MustParseAddr("192.0.2.10"), Servers: []config.Server{{Name: "web1", Address: a1, MAC: static}, {Name: "web2", Address: a2}, {Name: "web3", Address: a3}}},
		{Name: "api", VIP: netip.MustParseAddr("192.0.2.20"), Servers: []config.Server{{Name: "web2", Address: a2}}},
	}}, obs: observed{macs: map[netip.Addr]net.HardwareAddr{a2: resolved}}}
	tg := d.guardTargets()
	if len(tg.VIPs) != 2 || tg.Policy.Mode != arpguard.OwnerLBD {
		t.Fatalf("targets %+v, want 2 VIPs in mode lbd", tg)
	}
	if bs := tg.Policy.Backends[static.String()]; len(bs) != 1 || bs[0] != (arpguard.Backend{Service: "web", Name: "web1", Addr: a1}) {
		t.Errorf("static mac: %v, want web/web1", bs)
	}
	if bs := tg.Policy.Backends[resolved.String()]; arpguard.BackendsText(bs) != "web/web2 (203.0.113.12), api/web2 (203.0.113.12)" {
		t.Errorf("resolved mac: %v, want web/web2 and api/web2", bs)
	}
	if len(tg.Policy.Backends) != 2 {
		t.Errorf("backends %v: web3 has no MAC yet and must not be listed", tg.Policy.Backends)
	}
}
