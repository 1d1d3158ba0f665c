// Package netops reads and changes the addresses of the network namespace
// the calling thread is in, through netlink. Each method names the ip(8)
// command it equals.
package netops

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Loopback is the interface VIPs are put on.
const Loopback = "lo"

// dumpRetries bounds retries of a netlink dump interrupted by a concurrent
// change (ErrDumpInterrupted): its partial result must not be trusted.
const dumpRetries = 5

// Addr is one address of one interface.
type Addr struct {
	Link   string       // interface name
	Prefix netip.Prefix // address and prefix length
	Label  string       // IPv4 only; "" for IPv6
}

func (a Addr) String() string {
	s := a.Prefix.String() + " dev " + a.Link
	if a.Label != "" {
		s += " label " + a.Label
	}
	return s
}

// Netlink changes addresses through a netlink handle bound to the
// namespace the handle was opened in.
type Netlink struct{ h *netlink.Handle }

// Open returns a Netlink for the calling thread's current namespace.
func Open() (*Netlink, error) {
	h, err := netlink.NewHandle()
	if err != nil {
		return nil, fmt.Errorf("open netlink: %w", err)
	}
	return &Netlink{h: h}, nil
}

// Close releases the handle's sockets.
func (n *Netlink) Close() { n.h.Close() }

// Addrs lists every address of every interface: `ip addr show`.
func (n *Netlink) Addrs() ([]Addr, error) {
	var err error
	for range dumpRetries {
		var out []Addr
		if out, err = n.dumpAddrs(); !errors.Is(err, netlink.ErrDumpInterrupted) {
			return out, err
		}
	}
	return nil, fmt.Errorf("list addresses: %w (addresses kept changing; retry)", err)
}

func (n *Netlink) dumpAddrs() ([]Addr, error) {
	links, err := n.h.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	names := make(map[int]string, len(links))
	for _, l := range links {
		names[l.Attrs().Index] = l.Attrs().Name
	}
	addrs, err := n.h.AddrList(nil, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("list addresses: %w", err)
	}
	out := make([]Addr, 0, len(addrs))
	for _, a := range addrs {
		if p, ok := toPrefix(a.IPNet); ok {
			out = append(out, Addr{Link: names[a.LinkIndex], Prefix: p, Label: ipv4Label(p, a.Label)})
		}
	}
	return out, nil
}

// ipv4Label drops the label the kernel reports for IPv6 addresses (the
// interface name): IPv6 has no labels, and comparing it would be noise.
func ipv4Label(p netip.Prefix, label string) string {
	if p.Addr().Is4() {
		return label
	}
	return ""
}

func toPrefix(n *net.IPNet) (netip.Prefix, bool) {
	if n == nil {
		return netip.Prefix{}, false
	}
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), ones), true
}

// LoopbackUp reports whether lo is administratively up.
func (n *Netlink) LoopbackUp() (bool, error) {
	l, err := n.h.LinkByName(Loopback)
	if err != nil {
		return false, fmt.Errorf("find %s: %w", Loopback, err)
	}
	return l.Attrs().Flags&net.FlagUp != 0, nil
}

// SetLoopbackUp is `ip link set lo up` (or down).
func (n *Netlink) SetLoopbackUp(up bool) error {
	l, err := n.h.LinkByName(Loopback)
	if err != nil {
		return fmt.Errorf("find %s: %w", Loopback, err)
	}
	if up {
		err = n.h.LinkSetUp(l)
	} else {
		err = n.h.LinkSetDown(l)
	}
	if err != nil {
		return fmt.Errorf("set %s up=%t: %w", Loopback, up, hint(err))
	}
	return nil
}

// AddAddr is `ip addr add PREFIX dev lo label LABEL` for IPv4 and
// `ip addr add PREFIX dev lo nodad` for IPv6.
func (n *Netlink) AddAddr(a Addr) error {
	l, na, err := n.resolve(a)
	if err == nil {
		err = n.h.AddrAdd(l, na)
	}
	if err != nil {
		return fmt.Errorf("add %s: %w", a, hint(err))
	}
	return nil
}

// DelAddr is `ip addr del PREFIX dev LINK`.
func (n *Netlink) DelAddr(a Addr) error {
	l, na, err := n.resolve(a)
	if err == nil {
		err = n.h.AddrDel(l, na)
	}
	if err != nil {
		return fmt.Errorf("delete %s: %w", a, hint(err))
	}
	return nil
}

func (n *Netlink) resolve(a Addr) (netlink.Link, *netlink.Addr, error) {
	l, err := n.h.LinkByName(a.Link)
	if err != nil {
		return nil, nil, err
	}
	ip := net.IP(a.Prefix.Addr().AsSlice())
	na := &netlink.Addr{IPNet: &net.IPNet{IP: ip, Mask: net.CIDRMask(a.Prefix.Bits(), len(ip)*8)}}
	if a.Prefix.Addr().Is4() {
		na.Label = a.Label
	} else {
		// On lo the kernel skips DAD anyway; nodad says so explicitly and
		// keeps the address usable at once on any interface.
		na.Flags = unix.IFA_F_NODAD
	}
	return l, na, nil
}

// hint adds what to do to the errors a user can fix.
func hint(err error) error {
	if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
		return fmt.Errorf("%w (changing addresses needs root with CAP_NET_ADMIN)", err)
	}
	return err
}
