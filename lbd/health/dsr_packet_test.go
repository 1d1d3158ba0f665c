package health

import (
	"bytes"
	"net"
	"net/netip"
	"slices"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"golang.org/x/net/bpf"
)

var (
	testLBMAC      = net.HardwareAddr{0x00, 0x00, 0x5e, 0x00, 0x53, 0x01}
	testBackendMAC = net.HardwareAddr{0x00, 0x00, 0x5e, 0x00, 0x53, 0x02}
)

// TestSegmentMarshal: a built SYN decodes (with gopacket, independently)
// to the addresses, MACs, flags and MSS it was given, with valid checksums.
func TestSegmentMarshal(t *testing.T) {
	for _, tc := range []struct{ src, dst string }{
		{"192.0.2.1:61000", "198.51.100.10:80"},
		{"[2001:db8::1]:61001", "[2001:db8:1::10]:443"},
	} {
		s := segment{srcMAC: testLBMAC, dstMAC: testBackendMAC,
			src: netip.MustParseAddrPort(tc.src), dst: netip.MustParseAddrPort(tc.dst),
			seq: 0xfffffff0, flags: flagSYN, window: window, mss: 1460}
		frame, err := s.marshal()
		if err != nil {
			t.Fatal(err)
		}
		pkt := gopacket.NewPacket(frame, layers.LayerTypeEthernet, gopacket.Default)
		eth := pkt.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
		tcp, ok := pkt.Layer(layers.LayerTypeTCP).(*layers.TCP)
		if !ok {
			t.Fatalf("%s: no TCP layer in %x", tc.dst, frame)
		}
		if !bytes.Equal(eth.DstMAC, testBackendMAC) || !bytes.Equal(eth.SrcMAC, testLBMAC) {
			t.Errorf("%s: MACs %s > %s, want %s > %s", tc.dst, eth.SrcMAC, eth.DstMAC, testLBMAC, testBackendMAC)
		}
		net := pkt.NetworkLayer().NetworkFlow()
		if net.Src().String() != s.src.Addr().String() || net.Dst().String() != s.dst.Addr().String() {
			t.Errorf("%s: IPs %s, want %s > %s", tc.dst, net, s.src.Addr(), s.dst.Addr())
		}
		if !tcp.SYN || tcp.ACK || tcp.RST || tcp.Seq != s.seq || uint16(tcp.DstPort) != s.dst.Port() || uint16(tcp.SrcPort) != s.src.Port() {
			t.Errorf("%s: TCP %+v", tc.dst, tcp)
		}
		// Recompute the checksum the way a receiver does: over the
		// pseudo header, it must come out as what was sent.
		sent := tcp.Checksum
		if err := tcp.SetNetworkLayerForChecksum(pkt.NetworkLayer()); err != nil {
			t.Fatal(err)
		}
		buf := gopacket.NewSerializeBuffer()
		if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{ComputeChecksums: true, FixLengths: true}, tcp); err != nil {
			t.Fatal(err)
		}
		again := gopacket.NewPacket(buf.Bytes(), layers.LayerTypeTCP, gopacket.Default).Layer(layers.LayerTypeTCP).(*layers.TCP)
		if again.Checksum != sent {
			t.Errorf("%s: TCP checksum %#x, recomputed %#x", tc.dst, sent, again.Checksum)
		}
		back, err := parseSegment(frame)
		if err != nil {
			t.Fatal(err)
		}
		if back.src != s.src || back.dst != s.dst || back.seq != s.seq || back.flags != s.flags || back.mss != 1460 {
			t.Errorf("%s: parsed %+v, want %+v", tc.dst, back, s)
		}
	}
}

// synAck builds the backend's answer with gopacket, as a test frame.
func synAck(t *testing.T, from, to netip.AddrPort, payload []byte, flags uint8) []byte {
	t.Helper()
	eth := &layers.Ethernet{SrcMAC: testBackendMAC, DstMAC: testLBMAC}
	tcp := &layers.TCP{SrcPort: layers.TCPPort(from.Port()), DstPort: layers.TCPPort(to.Port()), Seq: 7, Ack: 9, Window: 100,
		SYN: flags&flagSYN != 0, ACK: flags&flagACK != 0, RST: flags&flagRST != 0, FIN: flags&flagFIN != 0}
	var ip gopacket.SerializableLayer
	if from.Addr().Is4() {
		eth.EthernetType = layers.EthernetTypeIPv4
		ip4 := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: from.Addr().AsSlice(), DstIP: to.Addr().AsSlice(),
			// An IPv4 option moves the TCP header: the filter must follow.
			Options: []layers.IPv4Option{{OptionType: 1}, {OptionType: 1}, {OptionType: 1}, {OptionType: 0}}}
		_ = tcp.SetNetworkLayerForChecksum(ip4)
		ip = ip4
	} else {
		eth.EthernetType = layers.EthernetTypeIPv6
		ip6 := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolTCP, SrcIP: from.Addr().AsSlice(), DstIP: to.Addr().AsSlice()}
		_ = tcp.SetNetworkLayerForChecksum(ip6)
		ip = ip6
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{ComputeChecksums: true, FixLengths: true}, eth, ip, tcp, gopacket.Payload(payload)); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestParseSegmentPayload: a data segment with FIN from the backend parses
// to its payload and flags; short Ethernet padding is not payload.
func TestParseSegmentPayload(t *testing.T) {
	from, to := netip.MustParseAddrPort("198.51.100.10:80"), netip.MustParseAddrPort("192.0.2.1:61000")
	frame := synAck(t, from, to, []byte("ok"), flagACK|flagFIN)
	frame = append(frame, make([]byte, 10)...) // padding to the minimum frame size
	s, err := parseSegment(frame)
	if err != nil {
		t.Fatal(err)
	}
	if string(s.payload) != "ok" || !s.has(flagFIN|flagACK) || s.has(flagSYN) || s.src != from || s.dst != to {
		t.Fatalf("parsed %+v", s)
	}
	if _, err := parseSegment([]byte{1, 2, 3}); err == nil {
		t.Fatal("a 3-byte frame parsed")
	}
}

// TestDSRFilter runs the socket filter in x/net/bpf's VM: it passes only
// TCP to the balancer's own addresses on the check ports, for both
// families, and rejects the client traffic of the VIPs.
func TestDSRFilter(t *testing.T) {
	own := []netip.Addr{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.5"), netip.MustParseAddr("2001:db8::1")}
	raw, err := dsrFilter(own)
	if err != nil {
		t.Fatal(err)
	}
	ins, ok := bpf.Disassemble(raw)
	if !ok {
		t.Fatalf("filter does not disassemble")
	}
	vm, err := bpf.NewVM(ins)
	if err != nil {
		t.Fatalf("filter rejected by the VM: %v", err)
	}
	vip4, vip6 := netip.MustParseAddr("198.51.100.10"), netip.MustParseAddr("2001:db8:1::10")
	for _, tc := range []struct {
		name     string
		from, to netip.AddrPort
		pass     bool
	}{
		{"v4 reply", netip.AddrPortFrom(vip4, 80), netip.MustParseAddrPort("192.0.2.1:61000"), true},
		{"v4 reply to second address", netip.AddrPortFrom(vip4, 80), netip.MustParseAddrPort("192.0.2.5:65535"), true},
		{"v4 below the port range", netip.AddrPortFrom(vip4, 80), netip.MustParseAddrPort("192.0.2.1:60999"), false},
		{"v4 to another address", netip.AddrPortFrom(vip4, 80), netip.MustParseAddrPort("192.0.2.9:61000"), false},
		{"v4 client to VIP", netip.MustParseAddrPort("203.0.113.7:61000"), netip.AddrPortFrom(vip4, 61000), false},
		{"v6 reply", netip.AddrPortFrom(vip6, 443), netip.MustParseAddrPort("[2001:db8::1]:62000"), true},
		{"v6 to another address", netip.AddrPortFrom(vip6, 443), netip.MustParseAddrPort("[2001:db8::2]:62000"), false},
		{"v6 below the port range", netip.AddrPortFrom(vip6, 443), netip.MustParseAddrPort("[2001:db8::1]:1000"), false},
	} {
		n, err := vm.Run(synAck(t, tc.from, tc.to, nil, flagSYN|flagACK))
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if (n > 0) != tc.pass {
			t.Errorf("%s: filter returned %d, want pass=%v", tc.name, n, tc.pass)
		}
	}
	// Not TCP: an ARP frame and a UDP datagram to a check port.
	arp := append(make([]byte, 12), 0x08, 0x06)
	arp = append(arp, make([]byte, 28)...)
	if n, _ := vm.Run(arp); n != 0 {
		t.Errorf("ARP frame passed")
	}
	udp := synAck(t, netip.AddrPortFrom(vip4, 80), netip.MustParseAddrPort("192.0.2.1:61000"), nil, flagACK)
	udp[14+9] = 17 // the IPv4 header's protocol byte: UDP
	if n, _ := vm.Run(udp); n != 0 {
		t.Errorf("UDP datagram passed")
	}
	// No own address: nothing passes.
	none, err := dsrFilter(nil)
	if err != nil {
		t.Fatal(err)
	}
	ins, _ = bpf.Disassemble(none)
	vm, _ = bpf.NewVM(ins)
	if n, _ := vm.Run(synAck(t, netip.AddrPortFrom(vip4, 80), netip.MustParseAddrPort("192.0.2.1:61000"), nil, flagSYN|flagACK)); n != 0 {
		t.Errorf("filter without addresses passed a segment")
	}
	if _, err := dsrFilter(make([]netip.Addr, maxFilterAddrs+1)); err == nil {
		t.Errorf("filter with %d addresses of one family built", maxFilterAddrs+1)
	}
}

// nlAddr is a netlink address as AddrList returns it: "192.0.2.1/24".
func nlAddr(s string, flags int) netlink.Addr {
	p := netip.MustParsePrefix(s)
	return netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}, Flags: flags}
}

// TestOwnAddrs: a check's source is one of the balancer's own addresses,
// kept with its prefix length: never a VIP (lbd puts them on the same
// interface), never a tentative one; IPv6 falls back to the link-local
// address when there is no other.
func TestOwnAddrs(t *testing.T) {
	vips := map[netip.Addr]bool{netip.MustParseAddr("192.0.2.10"): true, netip.MustParseAddr("2001:db8::10"): true}
	pfx := func(ss ...string) []netip.Prefix {
		out := make([]netip.Prefix, len(ss))
		for i, s := range ss {
			out[i] = netip.MustParsePrefix(s)
		}
		return out
	}
	for _, tc := range []struct {
		name  string
		addrs []netlink.Addr
		want  []netip.Prefix
	}{
		{"VIPs, loopback and tentative ones left out; link-local when no global IPv6",
			[]netlink.Addr{nlAddr("192.0.2.10/32", 0), nlAddr("192.0.2.1/24", 0), nlAddr("127.0.0.1/8", 0),
				nlAddr("2001:db8::10/128", 0), nlAddr("2001:db8::9/64", unix.IFA_F_TENTATIVE), nlAddr("fe80::1/64", 0)},
			pfx("192.0.2.1/24", "fe80::1/64")},
		{"the global IPv6 address only",
			[]netlink.Addr{nlAddr("fe80::1/64", 0), nlAddr("2001:db8::1/64", 0)},
			pfx("2001:db8::1/64")},
		{"several subnets keep their prefixes, in the kernel's order",
			[]netlink.Addr{nlAddr("192.0.2.1/25", 0), nlAddr("203.0.113.129/26", 0), nlAddr("192.0.2.10/24", 0),
				nlAddr("2001:db8:1::1/64", 0), nlAddr("2001:db8:2::1/48", unix.IFA_F_DEPRECATED), nlAddr("2001:db8:3::1/56", 0)},
			pfx("192.0.2.1/25", "203.0.113.129/26", "2001:db8:1::1/64", "2001:db8:3::1/56")},
		{"an address without a mask is a host prefix",
			[]netlink.Addr{{IPNet: &net.IPNet{IP: net.ParseIP("198.51.100.1").To4()}}},
			pfx("198.51.100.1/32")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := ownAddrs(tc.addrs, vips); !slices.Equal(got, tc.want) {
				t.Fatalf("own addresses %v, want %v", got, tc.want)
			}
		})
	}
}

// TestPickSource: a check comes from the own address on the backend's
// subnet (the backend answers it on the segment), the most specific one
// when prefixes nest; from the link-local one when that is the only IPv6
// address; else off-link from the first of the family; never from a VIP,
// whatever its prefix.
func TestPickSource(t *testing.T) {
	vips := map[netip.Addr]bool{netip.MustParseAddr("198.51.100.10"): true, netip.MustParseAddr("2001:db8:2::10"): true}
	multi := ownAddrs([]netlink.Addr{
		nlAddr("192.0.2.1/24", 0),
		nlAddr("198.51.100.10/24", 0), // a VIP put on the interface with a prefix
		nlAddr("203.0.113.1/24", 0),
		nlAddr("203.0.113.129/25", 0),
		nlAddr("2001:db8:1::1/64", 0),
		nlAddr("2001:db8:2::10/64", 0), // a VIP again
		nlAddr("2001:db8:3::1/64", 0),
		nlAddr("fe80::1/64", 0),
	}, vips)
	linkLocal := ownAddrs([]netlink.Addr{nlAddr("192.0.2.1/24", 0), nlAddr("fe80::1/64", 0)}, vips)
	v6only := ownAddrs([]netlink.Addr{nlAddr("2001:db8:1::1/64", 0)}, vips)
	for _, tc := range []struct {
		name    string
		own     []netip.Prefix
		backend string
		want    string // "" for none
		onLink  bool
	}{
		{"IPv4 backend in the first subnet", multi, "192.0.2.12", "192.0.2.1", true},
		{"IPv4 backend in the second subnet", multi, "203.0.113.12", "203.0.113.1", true},
		{"IPv4 nested prefixes: the longest", multi, "203.0.113.200", "203.0.113.129", true},
		{"IPv4-mapped backend", multi, "::ffff:203.0.113.12", "203.0.113.1", true},
		{"IPv4 backend on the VIP's subnet: off-link, the first", multi, "198.51.100.12", "192.0.2.1", false},
		{"IPv4 backend outside the nested prefix: the wider one", multi, "203.0.113.100", "203.0.113.1", true},
		{"IPv4 backend on no subnet: the first", multi, "203.0.112.5", "192.0.2.1", false},
		{"IPv6 backend in the first subnet", multi, "2001:db8:1::12", "2001:db8:1::1", true},
		{"IPv6 backend in the third subnet", multi, "2001:db8:3::12", "2001:db8:3::1", true},
		{"IPv6 backend on the VIP's subnet: off-link, the first", multi, "2001:db8:2::12", "2001:db8:1::1", false},
		{"IPv6 backend, only a link-local address", linkLocal, "2001:db8:1::12", "fe80::1", true},
		{"IPv6 link-local backend", linkLocal, "fe80::12", "fe80::1", true},
		{"IPv4 backend, no IPv4 address", v6only, "192.0.2.12", "", false},
		{"IPv6 backend, no IPv6 address", ownAddrs([]netlink.Addr{nlAddr("192.0.2.1/24", 0)}, vips), "2001:db8:1::12", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := pickSource(tc.own, netip.MustParseAddr(tc.backend))
			var want netip.Addr
			if tc.want != "" {
				want = netip.MustParseAddr(tc.want)
			}
			if got.addr != want || got.onLink != tc.onLink {
				t.Fatalf("source for %s among %v: %s on-link=%v, want %s on-link=%v", tc.backend, tc.own, got.addr, got.onLink, tc.want, tc.onLink)
			}
		})
	}
}
