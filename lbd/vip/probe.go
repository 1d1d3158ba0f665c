package vip

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/ndp"
	"github.com/mdlayher/packet"
	"golang.org/x/sys/unix"
)

// Probing before a VIP is taken (RFC 5227 for IPv4, RFC 4862 duplicate
// address detection for IPv6), shortened: RFC 5227's 1–2 s between probes
// would hold lbd's start for seconds per restart, and a host that owns the
// address answers a probe within milliseconds on one segment.
const (
	ProbeCount = 3
	ProbeGap   = 50 * time.Millisecond
	// ProbeWait is how long answers are awaited after the last probe.
	ProbeWait = 200 * time.Millisecond
)

// Conflict is a VIP another host on the segment answers for: lbd does not
// take it.
type Conflict struct {
	VIP netip.Addr
	MAC net.HardwareAddr // the other host's
}

func (c Conflict) String() string { return fmt.Sprintf("%s (answered by %s)", c.VIP, c.MAC) }

// Probe asks the segment on ifname whether another host already uses any
// of the VIPs: ARP probes (sender 0.0.0.0, `arping -D`) for IPv4, DAD
// neighbour solicitations (source ::) for IPv6, ProbeCount of each,
// ProbeGap apart, answers awaited ProbeWait after the last. A VIP is in
// conflict when another MAC answers for it, announces it, or probes for
// it at the same time. It needs CAP_NET_RAW.
func (n Namespace) Probe(ifname string, vips []netip.Addr) ([]Conflict, error) {
	var v4, v6 []netip.Addr
	for _, v := range vips {
		if v = v.Unmap(); v.Is4() {
			v4 = append(v4, v)
		} else {
			v6 = append(v6, v)
		}
	}
	var ifi *net.Interface
	var conns []*packet.Conn
	err := n.do(func() error { // sockets belong to the namespace they are opened in
		var err error
		if ifi, err = net.InterfaceByName(ifname); err != nil {
			return fmt.Errorf("find interface %s: %w", ifname, err)
		}
		for _, p := range []struct {
			want  []netip.Addr
			proto int
		}{{v4, unix.ETH_P_ARP}, {v6, unix.ETH_P_IPV6}} {
			if len(p.want) == 0 {
				continue
			}
			c, err := packet.Listen(ifi, packet.Raw, p.proto, nil)
			if err != nil {
				return fmt.Errorf("open packet socket on %s: %w (lbd needs CAP_NET_RAW)", ifname, err)
			}
			conns = append(conns, c)
		}
		return nil
	})
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	if err != nil {
		return nil, err
	}
	if len(ifi.HardwareAddr) != 6 {
		return nil, nil // no Ethernet segment (tun, lo): nobody to ask
	}
	var (
		mu        sync.Mutex
		conflicts = map[netip.Addr]net.HardwareAddr{}
		wg        sync.WaitGroup
		found     = func(v netip.Addr, mac net.HardwareAddr) {
			mu.Lock()
			if _, ok := conflicts[v]; !ok {
				conflicts[v] = append(net.HardwareAddr(nil), mac...)
			}
			mu.Unlock()
		}
	)
	end := time.Now().Add(ProbeCount*ProbeGap + ProbeWait)
	for _, c := range conns {
		c.SetReadDeadline(end)
		wg.Add(1)
		go func() {
			defer wg.Done()
			listen(c, ifi.HardwareAddr, v4, v6, found)
		}()
	}
	var errs []error
	for i := range ProbeCount {
		if i > 0 {
			time.Sleep(ProbeGap)
		}
		ci := 0
		if len(v4) > 0 {
			errs = append(errs, sendARPProbes(conns[ci], ifi.HardwareAddr, v4))
			ci++
		}
		if len(v6) > 0 {
			errs = append(errs, sendDADProbes(conns[ci], ifi.HardwareAddr, v6))
		}
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("probe VIPs on %s: %w", ifname, err)
	}
	var out []Conflict
	for _, v := range vips {
		if mac, ok := conflicts[v.Unmap()]; ok {
			out = append(out, Conflict{VIP: v.Unmap(), MAC: mac})
		}
	}
	return out, nil
}

func sendARPProbes(c *packet.Conn, mac net.HardwareAddr, vips []netip.Addr) error {
	for _, v := range vips {
		p, err := arp.NewPacket(arp.OperationRequest, mac, netip.IPv4Unspecified(), ethernet.Broadcast, v)
		if err != nil {
			return err
		}
		p.TargetHardwareAddr = make(net.HardwareAddr, 6) // RFC 5227: target hardware address zero
		pb, _ := p.MarshalBinary()
		fb, _ := (&ethernet.Frame{Destination: ethernet.Broadcast, Source: mac, EtherType: ethernet.EtherTypeARP, Payload: pb}).MarshalBinary()
		if _, err := c.WriteTo(fb, &packet.Addr{HardwareAddr: ethernet.Broadcast}); err != nil {
			return fmt.Errorf("send ARP probe for %s: %w", v, err)
		}
	}
	return nil
}

// sendDADProbes sends a neighbour solicitation from :: to the VIP's
// solicited-node group, without a source link-layer option (RFC 4862 5.4.2).
func sendDADProbes(c *packet.Conn, mac net.HardwareAddr, vips []netip.Addr) error {
	for _, v := range vips {
		group := solicitedNode(v)
		icmp, err := ndp.MarshalMessageChecksum(&ndp.NeighborSolicitation{TargetAddress: v}, netip.IPv6Unspecified(), group)
		if err != nil {
			return err
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
		src := netip.IPv6Unspecified().As16()
		b = append(b, src[:]...)
		b = append(b, g[:]...)
		b = append(b, icmp...)
		if _, err := c.WriteTo(b, &packet.Addr{HardwareAddr: dst}); err != nil {
			return fmt.Errorf("send DAD probe for %s: %w", v, err)
		}
	}
	return nil
}

func solicitedNode(v netip.Addr) netip.Addr {
	a := v.As16()
	return netip.AddrFrom16([16]byte{0xff, 0x02, 10: 0, 11: 1, 12: 0xff, 13: a[13], 14: a[14], 15: a[15]})
}

// listen reads frames until the deadline and reports every VIP another
// MAC claims or probes for.
func listen(c *packet.Conn, ours net.HardwareAddr, v4, v6 []netip.Addr, found func(netip.Addr, net.HardwareAddr)) {
	buf := make([]byte, 1500)
	for {
		n, _, err := c.ReadFrom(buf)
		if err != nil {
			return // deadline reached (or socket closed)
		}
		var f ethernet.Frame
		if f.UnmarshalBinary(buf[:n]) != nil || bytes.Equal(f.Source, ours) {
			continue // our own probes, seen going out
		}
		switch f.EtherType {
		case ethernet.EtherTypeARP:
			if v, mac, ok := arpClaim(f.Payload, v4); ok {
				found(v, mac)
			}
		case ethernet.EtherTypeIPv6:
			if v, ok := ndClaim(f.Payload, v6); ok {
				found(v, f.Source)
			}
		}
	}
}

// arpClaim: an ARP packet from another host whose sender is one of the
// VIPs (a reply to our probe, or its own announcement), or a probe of its
// own for one of them.
func arpClaim(b []byte, vips []netip.Addr) (netip.Addr, net.HardwareAddr, bool) {
	var p arp.Packet
	if p.UnmarshalBinary(b) != nil {
		return netip.Addr{}, nil, false
	}
	for _, v := range vips {
		if p.SenderIP == v || (p.Operation == arp.OperationRequest && p.SenderIP == netip.IPv4Unspecified() && p.TargetIP == v) {
			return v, p.SenderHardwareAddr, true
		}
	}
	return netip.Addr{}, nil, false
}

// ndClaim: a neighbour advertisement for one of the VIPs, or another
// host's DAD solicitation for one (source ::).
func ndClaim(b []byte, vips []netip.Addr) (netip.Addr, bool) {
	if len(b) < 40 || b[6] != unix.IPPROTO_ICMPV6 {
		return netip.Addr{}, false
	}
	src := netip.AddrFrom16([16]byte(b[8:24]))
	m, err := ndp.ParseMessage(b[40:])
	if err != nil {
		return netip.Addr{}, false
	}
	var target netip.Addr
	switch m := m.(type) {
	case *ndp.NeighborAdvertisement:
		target = m.TargetAddress
	case *ndp.NeighborSolicitation:
		if !src.IsUnspecified() {
			return netip.Addr{}, false // an ordinary lookup, not a claim
		}
		target = m.TargetAddress
	default:
		return netip.Addr{}, false
	}
	for _, v := range vips {
		if target == v {
			return v, true
		}
	}
	return netip.Addr{}, false
}
