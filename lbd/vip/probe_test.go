package vip

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/dsrlb/dsrlb/internal/nettest"
)

// TestClaimSkipsAnsweredVIPs: a VIP another host already holds (the peer's
// own addresses here) is neither added nor announced, and is reported with
// that host's MAC; the free VIPs are taken in the same call.
func TestClaimSkipsAnsweredVIPs(t *testing.T) {
	nettest.Require(t)
	p := mustBalancer(t)
	peerMAC := strings.TrimSpace(p.Peer.Run(t, "cat", "/sys/class/net/peer0/address"))
	taken4, taken6 := netip.MustParseAddr("192.0.2.2"), netip.MustParseAddr("2001:db8::2")
	ns := In(p.LB.Handle)
	got, err := ns.Claim("lb0", []netip.Addr{vip4, taken4, vip6, taken6}, nil)
	if err != nil {
		t.Fatalf("claim: %v", err)
	}
	if len(got.Conflicts) != 2 {
		t.Fatalf("conflicts %v, want %s and %s", got.Conflicts, taken4, taken6)
	}
	for i, want := range []netip.Addr{taken4, taken6} {
		if c := got.Conflicts[i]; c.VIP != want || c.MAC.String() != peerMAC {
			t.Errorf("conflict %d: %v, want %s answered by %s", i, c, want, peerMAC)
		}
	}
	mustOwned(t, ns, vip4, vip6)
	if err := ns.Take("lb0", []netip.Addr{taken4}, nil); err == nil || !strings.Contains(err.Error(), peerMAC) {
		t.Errorf("Take of an answered VIP: %v, want an error naming %s", err, peerMAC)
	}
}

// TestProbeFreeVIPs: nobody answers for free addresses, and probing adds
// nothing to the interface.
func TestProbeFreeVIPs(t *testing.T) {
	nettest.Require(t)
	p := mustBalancer(t)
	ns := In(p.LB.Handle)
	cs, err := ns.Probe("lb0", []netip.Addr{vip4, vip6})
	if err != nil || len(cs) != 0 {
		t.Fatalf("probe of free VIPs: %v %v", cs, err)
	}
	mustOwned(t, ns)
}
