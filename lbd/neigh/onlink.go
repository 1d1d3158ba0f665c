// Package neigh finds the MAC addresses of the backends and checks that
// DSR can reach them.
//
// In Direct Server Return the balancer rewrites only the destination MAC
// of a client's frame, so every backend must sit on the balancer
// interface's L2 segment (OnLink checks it with a route lookup), and the
// data plane needs each backend's current MAC. The Resolver reads those
// MACs from the kernel's neighbour table (ARP for IPv4, ND for IPv6),
// asks the kernel to resolve addresses it lacks, follows the table through
// a netlink subscription and reports every change, so the daemon can
// reprogram the data plane when a backend's MAC changes or its resolution
// fails. Backends with a static MAC in the configuration need none of
// this: the daemon simply does not watch them.
//
// Every function has an ...At twin or option taking a network namespace,
// so tests (and a daemon started outside its namespace) can work on
// another namespace without switching the calling thread.
package neigh

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// ErrNotOnLink is wrapped by OnLink's errors when the backend is
// reachable but not directly on the balancer's segment.
var ErrNotOnLink = errors.New("backend not on the balancer's L2 segment")

// OnLink checks, in the current network namespace, that addr is directly
// connected through ifname. See OnLinkAt.
func OnLink(ifname string, addr netip.Addr) error {
	return OnLinkAt(nil, ifname, addr)
}

// OnLinkAt checks that the kernel would send packets for addr straight out
// of ifname, with no gateway: `ip route get ADDR` must say `dev IFNAME`
// and no `via`. h selects the namespace; nil means the current one.
func OnLinkAt(h *netlink.Handle, ifname string, addr netip.Addr) error {
	h = handleOrCurrent(h)
	link, err := h.LinkByName(ifname)
	if err != nil {
		return fmt.Errorf("find balancer interface %s: %w", ifname, err)
	}
	routes, err := h.RouteGet(net.IP(addr.AsSlice()))
	if err != nil {
		return fmt.Errorf("look up route to backend %s: %w: add a route or fix the address", addr, err)
	}
	if len(routes) == 0 {
		return fmt.Errorf("look up route to backend %s: the kernel returned no route", addr)
	}
	r := routes[0]
	why := "DSR rewrites only the MAC, so backends must be on the balancer's L2 segment (same subnet as " + ifname + ")"
	switch {
	case r.Type == unix.RTN_LOCAL:
		return fmt.Errorf("backend %s is an address of this host: %s: %w", addr, why, ErrNotOnLink)
	case r.LinkIndex != link.Attrs().Index:
		return fmt.Errorf("backend %s leaves by %s, not %s: %s: %w", addr, linkName(h, r.LinkIndex), ifname, why, ErrNotOnLink)
	case len(r.MultiPath) > 0:
		return fmt.Errorf("backend %s is routed over several paths: %s: %w", addr, why, ErrNotOnLink)
	case r.Gw != nil:
		return fmt.Errorf("backend %s is routed via %s on %s: %s: %w", addr, r.Gw, ifname, why, ErrNotOnLink)
	}
	return nil
}

// handleOrCurrent returns h, or a handle on the current namespace (the
// zero Handle opens a socket per call, as netlink's package functions do).
func handleOrCurrent(h *netlink.Handle) *netlink.Handle {
	if h == nil {
		return &netlink.Handle{}
	}
	return h
}

func linkName(h *netlink.Handle, index int) string {
	if l, err := h.LinkByIndex(index); err == nil {
		return l.Attrs().Name
	}
	return fmt.Sprintf("ifindex %d", index)
}
