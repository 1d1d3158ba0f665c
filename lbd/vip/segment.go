package vip

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/ndp"
	"github.com/mdlayher/packet"
	"github.com/vishvananda/netns"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// Segment is a pair of packet sockets on one interface, for asking the
// segment who answers for an address and hearing who claims one: the
// start-time probe (Probe) and lbd's ARP guard (lbd/arpguard) share it.
// It needs CAP_NET_RAW.
type Segment struct {
	ns  Namespace
	Ifi *net.Interface
	// ARP receives every ARP frame; ND receives only ICMPv6 neighbour
	// solicitations and advertisements (a socket filter keeps the rest of
	// the IPv6 traffic out of user space). Either is nil when not asked
	// for.
	ARP, ND *packet.Conn
}

// In returns the operations for the namespace ns: lbd itself works in its
// own (Current), the tests in the namespaces they made.
func In(ns netns.NsHandle) Namespace { return Namespace{ns: ns} }

// OpenSegment opens the sockets on ifname in the namespace: an ARP socket
// when v4, an ND socket when v6.
func (n Namespace) OpenSegment(ifname string, v4, v6 bool) (*Segment, error) {
	s := &Segment{ns: n}
	err := n.do(func() error { // sockets belong to the namespace they are opened in
		var err error
		if s.Ifi, err = net.InterfaceByName(ifname); err != nil {
			return fmt.Errorf("find interface %s: %w", ifname, err)
		}
		if v4 {
			if s.ARP, err = packet.Listen(s.Ifi, packet.Raw, unix.ETH_P_ARP, nil); err != nil {
				return fmt.Errorf("open packet socket on %s: %w (lbd needs CAP_NET_RAW)", ifname, err)
			}
		}
		if v6 {
			if s.ND, err = packet.Listen(s.Ifi, packet.Raw, unix.ETH_P_IPV6, &packet.Config{Filter: ndFilter}); err != nil {
				return fmt.Errorf("open packet socket on %s: %w (lbd needs CAP_NET_RAW)", ifname, err)
			}
		}
		return nil
	})
	if err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Close closes both sockets.
func (s *Segment) Close() error {
	var errs []error
	for _, c := range []*packet.Conn{s.ARP, s.ND} {
		if c != nil {
			errs = append(errs, c.Close())
		}
	}
	return errors.Join(errs...)
}

// Ethernet says whether the interface has Ethernet addressing; on a tun
// or lo there is nobody to ask.
func (s *Segment) Ethernet() bool { return s.Ifi != nil && len(s.Ifi.HardwareAddr) == 6 }

// Sources picks the addresses requests are sent from: an IPv4 address of
// the interface and its IPv6 link-local one (else a global one), none that
// skip accepts (the VIPs). Unspecified when there is none: requests are
// then probes (0.0.0.0, ::), which holders answer all the same.
func (s *Segment) Sources(skip func(netip.Addr) bool) (v4, v6 netip.Addr, err error) {
	v4, v6 = netip.IPv4Unspecified(), netip.IPv6Unspecified()
	present, err := s.ns.addrsOf(s.Ifi.Index)
	if err != nil {
		return v4, v6, err
	}
	var best6 netip.Addr
	for a := range present {
		switch {
		case skip(a):
		case a.Is4() && (v4.IsUnspecified() || a.Less(v4)):
			v4 = a
		case a.Is6() && a.IsLinkLocalUnicast() && (!best6.IsLinkLocalUnicast() || a.Less(best6)):
			best6 = a
		case a.Is6() && !best6.IsLinkLocalUnicast() && (!best6.IsValid() || a.Less(best6)):
			best6 = a
		}
	}
	if best6.IsValid() {
		v6 = best6
	}
	return v4, v6, nil
}

// ndFilter accepts IPv6 frames carrying ICMPv6 (next header 58, no
// extension header: RFC 4861 messages have none) of type 135 (neighbour
// solicitation) or 136 (neighbour advertisement).
var ndFilter = mustAssemble([]bpf.Instruction{
	bpf.LoadAbsolute{Off: 14 + 6, Size: 1},
	bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: unix.IPPROTO_ICMPV6, SkipTrue: 4},
	bpf.LoadAbsolute{Off: 14 + 40, Size: 1},
	bpf.JumpIf{Cond: bpf.JumpEqual, Val: 135, SkipTrue: 1},
	bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: 136, SkipTrue: 1},
	bpf.RetConstant{Val: 0xffff},
	bpf.RetConstant{Val: 0},
})

func mustAssemble(ins []bpf.Instruction) []bpf.RawInstruction {
	raw, err := bpf.Assemble(ins)
	if err != nil {
		panic(err)
	}
	return raw
}

// SendARP sends, for each VIP, a broadcast who-has from sender: the
// unspecified address makes it an RFC 5227 probe (target hardware address
// zero), an address of the balancer an ordinary request, which every host
// holding the VIP and not told to ignore it (arp_ignore) answers.
func (s *Segment) SendARP(sender netip.Addr, vips []netip.Addr) error {
	mac := s.Ifi.HardwareAddr
	for _, v := range vips {
		p, err := arp.NewPacket(arp.OperationRequest, mac, sender, ethernet.Broadcast, v)
		if err != nil {
			return fmt.Errorf("build ARP request for %s: %w", v, err)
		}
		p.TargetHardwareAddr = make(net.HardwareAddr, 6) // RFC 5227 and RFC 826 practice: unknown, zero
		pb, _ := p.MarshalBinary()
		fb, _ := (&ethernet.Frame{Destination: ethernet.Broadcast, Source: mac, EtherType: ethernet.EtherTypeARP, Payload: pb}).MarshalBinary()
		if _, err := s.ARP.WriteTo(fb, &packet.Addr{HardwareAddr: ethernet.Broadcast}); err != nil {
			return fmt.Errorf("send ARP request for %s: %w", v, err)
		}
	}
	return nil
}

// SendNS sends, for each VIP, a neighbour solicitation to its
// solicited-node group from src: from :: it is a DAD probe, without a
// source link-layer option (RFC 4862 5.4.2); from an address of the
// balancer an ordinary lookup carrying our MAC, which the holder answers.
func (s *Segment) SendNS(src netip.Addr, vips []netip.Addr) error {
	mac := s.Ifi.HardwareAddr
	for _, v := range vips {
		group := solicitedNode(v)
		ns := &ndp.NeighborSolicitation{TargetAddress: v}
		if !src.IsUnspecified() {
			ns.Options = []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Source, Addr: mac}}
		}
		icmp, err := ndp.MarshalMessageChecksum(ns, src, group)
		if err != nil {
			return fmt.Errorf("build neighbour solicitation for %s: %w", v, err)
		}
		g := group.As16()
		dst := net.HardwareAddr{0x33, 0x33, g[12], g[13], g[14], g[15]}
		b := make([]byte, 0, 14+40+len(icmp))
		b = append(b, dst...)
		b = append(b, mac...)
		b = binary.BigEndian.AppendUint16(b, unix.ETH_P_IPV6)
		b = append(b, 0x60, 0, 0, 0)
		b = binary.BigEndian.AppendUint16(b, uint16(len(icmp)))
		b = append(b, unix.IPPROTO_ICMPV6, 255)
		s16 := src.As16()
		b = append(b, s16[:]...)
		b = append(b, g[:]...)
		b = append(b, icmp...)
		if _, err := s.ND.WriteTo(b, &packet.Addr{HardwareAddr: dst}); err != nil {
			return fmt.Errorf("send neighbour solicitation for %s: %w", v, err)
		}
	}
	return nil
}

func solicitedNode(v netip.Addr) netip.Addr {
	a := v.As16()
	return netip.AddrFrom16([16]byte{0xff, 0x02, 10: 0, 11: 1, 12: 0xff, 13: a[13], 14: a[14], 15: a[15]})
}

// ClaimKind is how a frame claims an address.
type ClaimKind uint8

// Claim kinds, from the frames that carry them.
const (
	ARPReply       ClaimKind = iota + 1 // is-at, sender the VIP
	GratuitousARP                       // request or reply with sender = target = the VIP
	ARPFromVIP                          // who-has another address, tell the VIP (arp_announce not set)
	ARPProbe                            // RFC 5227 probe for the VIP (sender 0.0.0.0)
	NeighborAdvert                      // neighbour advertisement, solicited or not
	DADProbe                            // neighbour solicitation for the VIP from ::
)

func (k ClaimKind) String() string {
	switch k {
	case ARPReply:
		return "ARP reply"
	case GratuitousARP:
		return "gratuitous ARP"
	case ARPFromVIP:
		return "ARP request sent from the VIP"
	case ARPProbe:
		return "ARP probe"
	case NeighborAdvert:
		return "neighbour advertisement"
	case DADProbe:
		return "DAD probe"
	}
	return fmt.Sprintf("claim(%d)", uint8(k))
}

// Sighting is a frame in which a host other than this one claims a VIP.
type Sighting struct {
	VIP  netip.Addr
	MAC  net.HardwareAddr // the claiming host's
	Kind ClaimKind
}

// ParseSighting reads one Ethernet frame (ARP, or IPv6 carrying ND) and says
// whether a MAC other than ours claims an address isVIP accepts.
func ParseSighting(frame []byte, ours net.HardwareAddr, isVIP func(netip.Addr) bool) (Sighting, bool) {
	var f ethernet.Frame
	if f.UnmarshalBinary(frame) != nil || bytes.Equal(f.Source, ours) {
		return Sighting{}, false // our own frames, seen going out
	}
	switch f.EtherType {
	case ethernet.EtherTypeARP:
		c, ok := arpClaim(f.Payload, isVIP)
		return c, ok && !bytes.Equal(c.MAC, ours)
	case ethernet.EtherTypeIPv6:
		if v, k, ok := ndClaim(f.Payload, isVIP); ok {
			return Sighting{VIP: v, MAC: append(net.HardwareAddr(nil), f.Source...), Kind: k}, true
		}
	}
	return Sighting{}, false
}

// arpClaim: an ARP packet whose sender is a VIP (a reply to a request, an
// announcement, or a request sent from the VIP), or an RFC 5227 probe for
// a VIP.
func arpClaim(b []byte, isVIP func(netip.Addr) bool) (Sighting, bool) {
	var p arp.Packet
	if p.UnmarshalBinary(b) != nil {
		return Sighting{}, false
	}
	mac := append(net.HardwareAddr(nil), p.SenderHardwareAddr...)
	switch {
	case p.SenderIP.IsValid() && isVIP(p.SenderIP) && p.SenderIP == p.TargetIP:
		return Sighting{VIP: p.SenderIP, MAC: mac, Kind: GratuitousARP}, true
	case p.SenderIP.IsValid() && isVIP(p.SenderIP) && p.Operation == arp.OperationReply:
		return Sighting{VIP: p.SenderIP, MAC: mac, Kind: ARPReply}, true
	case p.SenderIP.IsValid() && isVIP(p.SenderIP):
		return Sighting{VIP: p.SenderIP, MAC: mac, Kind: ARPFromVIP}, true
	case p.Operation == arp.OperationRequest && p.SenderIP == netip.IPv4Unspecified() && p.TargetIP.IsValid() && isVIP(p.TargetIP):
		return Sighting{VIP: p.TargetIP, MAC: mac, Kind: ARPProbe}, true
	}
	return Sighting{}, false
}

// ndClaim: a neighbour advertisement for a VIP, or another host's DAD
// solicitation for one (source ::).
func ndClaim(b []byte, isVIP func(netip.Addr) bool) (netip.Addr, ClaimKind, bool) {
	if len(b) < 40 || b[6] != unix.IPPROTO_ICMPV6 {
		return netip.Addr{}, 0, false
	}
	src := netip.AddrFrom16([16]byte(b[8:24]))
	m, err := ndp.ParseMessage(b[40:])
	if err != nil {
		return netip.Addr{}, 0, false
	}
	var target netip.Addr
	var kind ClaimKind
	switch m := m.(type) {
	case *ndp.NeighborAdvertisement:
		target, kind = m.TargetAddress, NeighborAdvert
	case *ndp.NeighborSolicitation:
		if !src.IsUnspecified() {
			return netip.Addr{}, 0, false // an ordinary lookup, not a claim
		}
		target, kind = m.TargetAddress, DADProbe
	default:
		return netip.Addr{}, 0, false
	}
	if target.IsValid() && isVIP(target) {
		return target, kind, true
	}
	return netip.Addr{}, 0, false
}
