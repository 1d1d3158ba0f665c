package vip

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// execute sends req on a route socket in the namespace and passes each
// answer of type resType to fn. netlink.Handle cannot carry a request it
// did not build, so the socket is opened here.
func (n Namespace) execute(req *nl.NetlinkRequest, resType uint16, fn func([]byte)) error {
	s, err := nl.GetNetlinkSocketAt(n.ns, netns.None(), unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("open route socket: %w", err)
	}
	defer s.Close()
	req.Sockets = map[int]*nl.SocketHandle{unix.NETLINK_ROUTE: {Socket: s}}
	return req.ExecuteIter(unix.NETLINK_ROUTE, resType, func(m []byte) bool {
		if fn != nil {
			fn(m)
		}
		return true
	})
}

// addrsOf dumps the interface's addresses with their protocol (`ip addr
// show dev IFNAME`): netlink.AddrList drops IFA_PROTO. A dump the kernel
// interrupted (addresses changed meanwhile) is retried.
func (n Namespace) addrsOf(ifindex int) (map[netip.Addr]addr, error) {
	var out map[netip.Addr]addr
	var err error
	for range 5 {
		out = map[netip.Addr]addr{}
		req := nl.NewNetlinkRequest(unix.RTM_GETADDR, unix.NLM_F_DUMP)
		req.AddData(nl.NewIfAddrmsg(unix.AF_UNSPEC))
		err = n.execute(req, unix.RTM_NEWADDR, func(m []byte) {
			if a, ip, ok := parseAddr(m, ifindex); ok {
				out[ip] = a
			}
		})
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("list addresses of ifindex %d: %w", ifindex, err)
	}
	return out, nil
}

// parseAddr decodes one RTM_NEWADDR message of interface ifindex.
func parseAddr(m []byte, ifindex int) (addr, netip.Addr, bool) {
	if len(m) < unix.SizeofIfAddrmsg {
		return addr{}, netip.Addr{}, false
	}
	msg := nl.DeserializeIfAddrmsg(m)
	if int(msg.Index) != ifindex {
		return addr{}, netip.Addr{}, false
	}
	attrs, err := nl.ParseRouteAttr(m[msg.Len():])
	if err != nil {
		return addr{}, netip.Addr{}, false
	}
	var a addr
	var local, address []byte
	for _, at := range attrs {
		switch at.Attr.Type {
		case unix.IFA_LOCAL:
			local = at.Value
		case unix.IFA_ADDRESS:
			address = at.Value
		case ifaProto:
			if len(at.Value) > 0 {
				a.proto = at.Value[0]
			}
		}
	}
	// IFA_LOCAL is the address itself; IFA_ADDRESS is the peer on
	// point-to-point links and the only one for IPv6.
	raw := local
	if raw == nil {
		raw = address
	}
	ip, ok := netip.AddrFromSlice(raw)
	if !ok {
		return addr{}, netip.Addr{}, false
	}
	a.ipnet = &net.IPNet{IP: net.IP(raw), Mask: net.CIDRMask(int(msg.Prefixlen), len(raw)*8)}
	return a, ip.Unmap(), true
}
