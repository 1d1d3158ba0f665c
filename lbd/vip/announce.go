package vip

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"

	"github.com/dsrlb/dsrlb/internal/netnsdo"
	"github.com/dsrlb/dsrlb/internal/netorder"
)

// Announcements of a newly taken VIP: a few, because a single frame may be
// lost, and bounded, because a VIP is announced on every take.
const (
	AnnounceCount = 3
	AnnounceGap   = 100 * time.Millisecond
)

// Announce tells the segment that the VIPs are at ifname's MAC: a
// gratuitous ARP request (sender = target = VIP, to broadcast) for IPv4,
// an unsolicited Neighbor Advertisement with the Override flag (to
// ff02::1) for IPv6; AnnounceCount times, AnnounceGap apart. It is what
// `arping -U -I IFNAME VIP` and `ndsend VIP IFNAME` do.
func (n Namespace) Announce(ifname string, vips []netip.Addr) error {
	var ifi *net.Interface
	var fd int
	err := n.do(func() error {
		var err error
		if ifi, err = net.InterfaceByName(ifname); err != nil {
			return fmt.Errorf("find interface %s: %w", ifname, err)
		}
		// Protocol 0: a send-only socket that receives nothing.
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("open packet socket: %w (lbd needs CAP_NET_RAW)", err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if len(ifi.HardwareAddr) != 6 {
		return fmt.Errorf("announce VIPs on %s: it has no Ethernet address", ifname)
	}
	var errs []error
	for i := range AnnounceCount {
		if i > 0 {
			time.Sleep(AnnounceGap)
		}
		for _, v := range vips {
			if err := send(fd, ifi, v.Unmap()); err != nil {
				errs = append(errs, fmt.Errorf("announce VIP %s on %s: %w", v, ifname, err))
			}
		}
	}
	return errors.Join(errs...)
}

func send(fd int, ifi *net.Interface, v netip.Addr) error {
	var frame, dst []byte
	var proto uint16
	if v.Is4() {
		frame, dst, proto = garp(ifi.HardwareAddr, v), broadcast, unix.ETH_P_ARP
	} else {
		frame, dst, proto = unsolicitedNA(ifi.HardwareAddr, v), allNodesMAC, unix.ETH_P_IPV6
	}
	sa := &unix.SockaddrLinklayer{Ifindex: ifi.Index, Protocol: netorder.Htons(proto), Halen: 6}
	copy(sa.Addr[:], dst)
	return unix.Sendto(fd, frame, 0, sa)
}

var (
	broadcast   = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	allNodesMAC = net.HardwareAddr{0x33, 0x33, 0, 0, 0, 1} // ff02::1
	allNodes    = netip.MustParseAddr("ff02::1")
)

// garp builds a gratuitous ARP request: Ethernet broadcast from mac, ARP
// request with sender = target = vip. A request rather than a reply,
// because every stack updates an existing entry from a request.
func garp(mac net.HardwareAddr, vip netip.Addr) []byte {
	b := make([]byte, 0, 42)
	b = append(b, broadcast...)
	b = append(b, mac...)
	b = binary.BigEndian.AppendUint16(b, unix.ETH_P_ARP)
	b = binary.BigEndian.AppendUint16(b, 1)             // hardware type Ethernet
	b = binary.BigEndian.AppendUint16(b, unix.ETH_P_IP) // protocol IPv4
	b = append(b, 6, 4)                                 // address lengths
	b = binary.BigEndian.AppendUint16(b, 1)             // request
	ip := vip.As4()
	b = append(b, mac...)
	b = append(b, ip[:]...)
	b = append(b, 0, 0, 0, 0, 0, 0) // target hardware address: unknown
	b = append(b, ip[:]...)
	return b
}

// unsolicitedNA builds an unsolicited Neighbor Advertisement (RFC 4861
// 4.4, 7.2.6) for vip from mac: from vip to ff02::1, hop limit 255,
// Override set, Solicited clear, with a target link-layer address option.
func unsolicitedNA(mac net.HardwareAddr, vip netip.Addr) []byte {
	icmp := make([]byte, 0, 32)
	icmp = append(icmp, 136, 0, 0, 0)  // type NA, code 0, checksum
	icmp = append(icmp, 0x20, 0, 0, 0) // flags: Override
	t := vip.As16()
	icmp = append(icmp, t[:]...) // target address
	icmp = append(icmp, 2, 1)    // option: target link-layer address, 1×8 bytes
	icmp = append(icmp, mac...)
	src, dst := vip.As16(), allNodes.As16()
	binary.BigEndian.PutUint16(icmp[2:], checksum6(src, dst, icmp))

	b := make([]byte, 0, 14+40+len(icmp))
	b = append(b, allNodesMAC...)
	b = append(b, mac...)
	b = binary.BigEndian.AppendUint16(b, unix.ETH_P_IPV6)
	b = append(b, 0x60, 0, 0, 0) // version 6, no traffic class or flow label
	b = binary.BigEndian.AppendUint16(b, uint16(len(icmp)))
	b = append(b, unix.IPPROTO_ICMPV6, 255) // next header, hop limit (ND requires 255)
	b = append(b, src[:]...)
	b = append(b, dst[:]...)
	return append(b, icmp...)
}

// checksum6 is the ICMPv6 checksum over the IPv6 pseudo-header and msg.
func checksum6(src, dst [16]byte, msg []byte) uint16 {
	var sum uint32
	add := func(b []byte) {
		for i := 0; i+1 < len(b); i += 2 {
			sum += uint32(b[i])<<8 | uint32(b[i+1])
		}
		if len(b)%2 == 1 {
			sum += uint32(b[len(b)-1]) << 8
		}
	}
	add(src[:])
	add(dst[:])
	var tail [8]byte
	binary.BigEndian.PutUint32(tail[:4], uint32(len(msg)))
	tail[7] = unix.IPPROTO_ICMPV6
	add(tail[:])
	add(msg)
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

// do runs fn on a thread in the namespace (netnsdo.Do), for what netlink
// handles cannot do: sockets belong to the namespace of the thread that
// opens them.
func (n Namespace) do(fn func() error) error {
	if !n.ns.IsOpen() {
		return fn()
	}
	return netnsdo.Do(n.ns, fn)
}
