// Package arpguard watches the balancer's segment for other hosts
// answering for a VIP: the DSR failure in which a backend whose
// arp_ignore/arp_announce were reset takes the balancer's traffic for
// itself, silently.
//
// It listens (ARP replies, gratuitous ARP, ARP requests sent from a VIP,
// neighbour advertisements and DAD probes for a VIP, from any MAC but the
// interface's own) and asks (an ARP who-has and a neighbour solicitation
// for each VIP, from the balancer's own address, one every Gap at least,
// a full round every Interval or n×Gap for n VIPs). Which MACs may answer
// depends on who owns the VIPs (Mode); every other answer is a Conflict,
// held until it has not been seen for Hold rounds.
package arpguard

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
)

// Mode says who, besides this balancer, may answer for a VIP on the
// segment.
type Mode uint8

const (
	// OwnerLBD: lbd holds the VIPs (balancer.vip_owner lbd); only this
	// balancer's MAC may answer. Every other MAC is reported.
	OwnerLBD Mode = iota
	// OwnerExternal: keepalived (or another tool) moves the VIPs between
	// balancers, so the peer balancer answers while it is master, and lbd
	// cannot tell its MAC from any other host's. Only backends' MACs are
	// reported: a backend never may answer.
	OwnerExternal
	// OwnerBGP: routers reach the VIPs through BGP next hops, the VIPs are
	// on no interface of the segment, so nobody should answer: every MAC
	// is reported, a backend's named.
	OwnerBGP
)

func (m Mode) String() string {
	switch m {
	case OwnerLBD:
		return "lbd"
	case OwnerExternal:
		return "external"
	case OwnerBGP:
		return "bgp"
	}
	return fmt.Sprintf("mode(%d)", uint8(m))
}

// Backend is a configured server whose MAC answered.
type Backend struct {
	Service, Name string
	Addr          netip.Addr
}

func (b Backend) String() string { return fmt.Sprintf("%s/%s (%s)", b.Service, b.Name, b.Addr) }

// Policy is what a sighting is judged against.
type Policy struct {
	Mode Mode
	// Backends are the configured servers by MAC (aa:bb:cc:dd:ee:ff),
	// from static `mac:` and the neighbour table.
	Backends map[string][]Backend
}

// Judge says whether mac answering for a VIP is to be reported (own is
// this balancer's MAC) and which backends the MAC belongs to.
func (p Policy) Judge(own, mac net.HardwareAddr) (bool, []Backend) {
	if mac.String() == own.String() {
		return false, nil
	}
	bs := p.Backends[mac.String()]
	switch p.Mode {
	case OwnerExternal:
		return len(bs) > 0, bs
	default: // OwnerLBD, OwnerBGP: nobody else may answer
		return true, bs
	}
}

// BackendsText names the backends, "" for none.
func BackendsText(bs []Backend) string {
	s := make([]string, len(bs))
	for i, b := range bs {
		s[i] = b.String()
	}
	return strings.Join(s, ", ")
}
