package vip

import (
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/ndp"
	"golang.org/x/sys/unix"

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

// TestParseSighting: which frames claim a VIP, and as what. Frames from
// our own MAC, ordinary lookups and other addresses are not claims.
func TestParseSighting(t *testing.T) {
	ours := net.HardwareAddr{0x02, 0, 0, 0, 1, 1}
	other := net.HardwareAddr{0x02, 0, 0, 0, 0, 0x11}
	isVIP := func(a netip.Addr) bool { return a == vip4 || a == vip6 }
	bal4, bal6 := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("fe80::1")
	arpFrame := func(src net.HardwareAddr, op arp.Operation, sender, target netip.Addr) []byte {
		p, err := arp.NewPacket(op, src, sender, ethernet.Broadcast, target)
		if err != nil {
			t.Fatal(err)
		}
		pb, _ := p.MarshalBinary()
		fb, _ := (&ethernet.Frame{Destination: ethernet.Broadcast, Source: src, EtherType: ethernet.EtherTypeARP, Payload: pb}).MarshalBinary()
		return fb
	}
	ndFrame := func(src net.HardwareAddr, ipSrc netip.Addr, m ndp.Message) []byte {
		icmp, err := ndp.MarshalMessageChecksum(m, ipSrc, netip.MustParseAddr("ff02::1"))
		if err != nil {
			t.Fatal(err)
		}
		b := append([]byte{0x33, 0x33, 0, 0, 0, 1}, src...)
		b = append(b, 0x86, 0xdd, 0x60, 0, 0, 0, 0, byte(len(icmp)), unix.IPPROTO_ICMPV6, 255)
		s16, d16 := ipSrc.As16(), netip.MustParseAddr("ff02::1").As16()
		b = append(append(append(b, s16[:]...), d16[:]...), icmp...)
		return b
	}
	na := &ndp.NeighborAdvertisement{Override: true, TargetAddress: vip6}
	for _, tc := range []struct {
		name  string
		frame []byte
		kind  ClaimKind // 0: no claim
		vip   netip.Addr
	}{
		{"reply from the VIP", arpFrame(other, arp.OperationReply, vip4, bal4), ARPReply, vip4},
		{"gratuitous request", arpFrame(other, arp.OperationRequest, vip4, vip4), GratuitousARP, vip4},
		{"gratuitous reply", arpFrame(other, arp.OperationReply, vip4, vip4), GratuitousARP, vip4},
		{"request sent from the VIP (arp_announce 0)", arpFrame(other, arp.OperationRequest, vip4, netip.MustParseAddr("198.51.100.7")), ARPFromVIP, vip4},
		{"RFC 5227 probe", arpFrame(other, arp.OperationRequest, netip.IPv4Unspecified(), vip4), ARPProbe, vip4},
		{"ordinary who-has the VIP", arpFrame(other, arp.OperationRequest, bal4, vip4), 0, netip.Addr{}},
		{"reply for another address", arpFrame(other, arp.OperationReply, netip.MustParseAddr("192.0.2.99"), bal4), 0, netip.Addr{}},
		{"our own reply", arpFrame(ours, arp.OperationReply, vip4, bal4), 0, netip.Addr{}},
		{"neighbour advertisement", ndFrame(other, netip.MustParseAddr("fe80::11"), na), NeighborAdvert, vip6},
		{"our own advertisement", ndFrame(ours, bal6, na), 0, netip.Addr{}},
		{"DAD probe", ndFrame(other, netip.IPv6Unspecified(), &ndp.NeighborSolicitation{TargetAddress: vip6}), DADProbe, vip6},
		{"ordinary solicitation", ndFrame(other, netip.MustParseAddr("fe80::11"), &ndp.NeighborSolicitation{TargetAddress: vip6}), 0, netip.Addr{}},
		{"advertisement of another address", ndFrame(other, netip.MustParseAddr("fe80::11"), &ndp.NeighborAdvertisement{TargetAddress: netip.MustParseAddr("2001:db8::99")}), 0, netip.Addr{}},
		{"truncated", []byte{1, 2, 3}, 0, netip.Addr{}},
	} {
		s, ok := ParseSighting(tc.frame, ours, isVIP)
		switch {
		case tc.kind == 0 && ok:
			t.Errorf("%s: claim %+v, want none", tc.name, s)
		case tc.kind != 0 && (!ok || s.Kind != tc.kind || s.VIP != tc.vip || s.MAC.String() != other.String()):
			t.Errorf("%s: %+v %v, want %s of %s by %s", tc.name, s, ok, tc.kind, tc.vip, other)
		}
	}
}
