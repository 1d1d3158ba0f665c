// Package vip makes the balancer the owner of the VIPs on its segment: it
// puts each VIP on the balancer interface, so the kernel answers ARP (IPv4)
// and neighbour solicitations (IPv6) for it there, and announces a newly
// taken VIP with gratuitous ARP or unsolicited Neighbor Advertisements, so
// clients and routers that cached another MAC for it (a previous balancer)
// switch at once.
//
// VIPs are added as /32 (IPv4) or /128 with nodad (IPv6: duplicate address
// detection would hold the VIP tentative for a second, and the backends
// hold the same address on their loopback without answering for it). Each
// address lbd adds carries the address protocol Proto (IFA_PROTO, kernel
// ≥ 5.18), so lbd later finds and removes exactly the addresses it added
// (newer iproute2 shows it as `proto 213`), whatever else an operator or
// another tool configured on the interface. An address that was already
// on the interface without that mark is left alone: lbd neither claims
// nor removes it.
//
// The balancer host needs no special ARP sysctls (arp_ignore/arp_announce
// are for the backends), but its reverse-path filter must accept client
// traffic arriving on the interface: with net.ipv4.conf.{all,IFNAME}.rp_filter
// = 1 (strict), clients reached through another interface are dropped
// before the data plane sees them in some setups; use 0 or 2 (loose) when
// clients' return routes leave by another interface. IPv6 forwarding is
// not needed: the data plane redirects frames itself.
package vip

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Proto is the address protocol (IFA_PROTO) marking the addresses lbd
// added. 213 is not used by the kernel (1–3) nor by iproute2's names.
const Proto = 213

// LabelSuffix makes the label of lbd's IPv4 VIPs (eth0 → "eth0:lbd"), so
// operators see them as lbd's in any `ip addr` output; Debian 12's
// iproute2 (6.1) neither shows nor filters the address protocol. The
// label is only a hint (IPv6 has none, long names get none): ownership is
// decided by Proto.
const LabelSuffix = ":lbd"

// ifaProto is IFA_PROTO from linux/if_addr.h; x/sys/unix lacks it.
const ifaProto = 11

// Namespace runs the package's operations in one network namespace.
type Namespace struct{ ns netns.NsHandle }

// Current returns the operations for the calling thread's namespace.
func Current() Namespace { return Namespace{ns: netns.None()} }

// Owned lists the addresses lbd added to ifname in the current namespace.
func Owned(ifname string) ([]netip.Addr, error) { return Current().Owned(ifname) }

// Taken says what Claim did.
type Taken struct {
	Added     []netip.Addr // VIPs this call put on the interface
	Conflicts []Conflict   // VIPs another host answers for: not taken
}

// Claim puts every VIP on ifname that is not there yet (`ip addr add
// VIP/32 dev IFNAME label IFNAME:lbd proto 213`; IPv6 `VIP/128 ... nodad`)
// and announces the ones it added (AnnounceCount frames each, AnnounceGap
// apart). Before adding, it probes for them (see Namespace.Probe): a VIP another
// host answers for is not taken but logged as an ERROR and returned in
// Conflicts, and the other VIPs are taken all the same. Claim may so block
// for about a second. It is idempotent: a VIP already on the interface,
// lbd's or not, is neither probed, added again nor announced. On error,
// VIPs added by this call stay (a retry completes the set) and are in
// Added; the error names what failed.
func (n Namespace) Claim(ifname string, vips []netip.Addr, log *slog.Logger) (Taken, error) {
	p, err := n.Prepare(ifname, vips, log)
	if err != nil {
		return Taken{}, err
	}
	return n.TakePrepared(p, log)
}

// Prepared is the first half of a Claim: the VIPs missing on the
// interface, probed. Prepare and TakePrepared apart let lbd probe while it loads
// the data plane, so the probe's wait does not add to the start.
type Prepared struct {
	ifname    string
	missing   []netip.Addr
	conflicts []Conflict
}

// Unprobed is a Prepared for VIPs known missing on ifname, without a
// probe: for a vipManager standing in for Namespace (daemon tests).
func Unprobed(ifname string, missing []netip.Addr) Prepared {
	return Prepared{ifname: ifname, missing: slices.Clone(missing)}
}

// Missing is the VIPs Prepare found missing on the interface (those
// another host answers for included).
func (p Prepared) Missing() []netip.Addr { return slices.Clone(p.missing) }

// Split parts p into the VIPs for which first holds and the others, each
// with its conflicts: lbd takes the VIPs an adopted data plane already
// serves before it programs the maps, and the new ones only after.
func (p Prepared) Split(first func(netip.Addr) bool) (a, b Prepared) {
	a, b = Prepared{ifname: p.ifname}, Prepared{ifname: p.ifname}
	for _, v := range p.missing {
		if first(v) {
			a.missing = append(a.missing, v)
		} else {
			b.missing = append(b.missing, v)
		}
	}
	for _, c := range p.conflicts {
		if first(c.VIP) {
			a.conflicts = append(a.conflicts, c)
		} else {
			b.conflicts = append(b.conflicts, c)
		}
	}
	return a, b
}

// Prepare finds the VIPs missing on ifname and probes for them, changing
// nothing.
func (n Namespace) Prepare(ifname string, vips []netip.Addr, log *slog.Logger) (Prepared, error) {
	log = orDiscard(log)
	p := Prepared{ifname: ifname}
	h, link, err := n.open(ifname)
	if err != nil {
		return p, err
	}
	defer h.Close()
	present, err := n.addrsOf(link.Attrs().Index)
	if err != nil {
		return p, err
	}
	for _, v := range vips {
		v = v.Unmap()
		if a, ok := present[v]; ok {
			if a.proto != Proto {
				log.Info("VIP already on the interface, not added by lbd: leaving it as it is",
					"vip", v.String(), "interface", ifname)
			}
			continue
		}
		if !slices.Contains(p.missing, v) {
			p.missing = append(p.missing, v)
		}
	}
	if len(p.missing) == 0 {
		return p, nil
	}
	p.conflicts, err = n.Probe(ifname, p.missing)
	return p, err
}

// TakePrepared adds the VIPs Prepare found missing and free, and announces them.
// A VIP that appeared on the interface since is left as it is.
func (n Namespace) TakePrepared(p Prepared, log *slog.Logger) (Taken, error) {
	log = orDiscard(log)
	t := Taken{Conflicts: p.conflicts}
	if len(p.missing) == 0 {
		return t, nil
	}
	h, link, err := n.open(p.ifname)
	if err != nil {
		return t, err
	}
	defer h.Close()
	present, err := n.addrsOf(link.Attrs().Index)
	if err != nil {
		return t, err
	}
	var errs []error
	for _, v := range p.missing {
		if i := slices.IndexFunc(t.Conflicts, func(c Conflict) bool { return c.VIP == v }); i >= 0 {
			log.Error("VIP not taken: another host on the segment answers for it; remove it there (or from the configuration) and reload",
				"vip", v.String(), "mac", t.Conflicts[i].MAC.String(), "interface", p.ifname)
			continue
		}
		if _, ok := present[v]; ok {
			continue
		}
		if err := n.addVIP(p.ifname, link.Attrs().Index, v); err != nil {
			errs = append(errs, fmt.Errorf("add VIP %s to %s: %w", v, p.ifname, err))
			continue
		}
		t.Added = append(t.Added, v)
		log.Info("VIP taken", "vip", v.String(), "interface", p.ifname)
	}
	if len(t.Added) > 0 {
		if err := n.Announce(p.ifname, t.Added); err != nil {
			errs = append(errs, err)
		}
	}
	return t, errors.Join(errs...)
}

// Release removes the given VIPs from ifname if lbd added them (`ip addr
// del VIP/32 dev IFNAME`); addresses without lbd's mark, and VIPs that
// are not there, are left alone. It is idempotent.
func (n Namespace) Release(ifname string, vips []netip.Addr, log *slog.Logger) error {
	return n.release(ifname, vips, false, log)
}

// ReleaseAdded removes VIPs lbd recorded adding itself: those carrying its
// mark, and those carrying none, which is how a kernel without IFA_PROTO
// (< 5.18, e.g. RHEL 9's 5.14) reports every address. An address with
// another tool's mark is left alone.
func (n Namespace) ReleaseAdded(ifname string, vips []netip.Addr, log *slog.Logger) error {
	return n.release(ifname, vips, true, log)
}

// ReleaseAdded releases recorded VIPs in the current namespace.
func ReleaseAdded(ifname string, vips []netip.Addr, log *slog.Logger) error {
	return Current().ReleaseAdded(ifname, vips, log)
}

func (n Namespace) release(ifname string, vips []netip.Addr, unmarked bool, log *slog.Logger) error {
	log = orDiscard(log)
	h, link, err := n.open(ifname)
	if err != nil {
		return err
	}
	defer h.Close()
	present, err := n.addrsOf(link.Attrs().Index)
	if err != nil {
		return err
	}
	var errs []error
	for _, v := range vips {
		v = v.Unmap()
		a, ok := present[v]
		if !ok || (a.proto != Proto && !(unmarked && a.proto == 0)) {
			continue
		}
		err := h.AddrDel(link, &netlink.Addr{IPNet: a.ipnet})
		if err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
			errs = append(errs, fmt.Errorf("remove VIP %s from %s: %w", v, ifname, err))
			continue
		}
		log.Info("VIP released", "vip", v.String(), "interface", ifname)
	}
	return errors.Join(errs...)
}

// Owned lists the addresses lbd added to ifname (those `ip addr show dev
// IFNAME` reports with protocol Proto), sorted.
func (n Namespace) Owned(ifname string) ([]netip.Addr, error) {
	h, link, err := n.open(ifname)
	if err != nil {
		return nil, err
	}
	defer h.Close()
	present, err := n.addrsOf(link.Attrs().Index)
	if err != nil {
		return nil, err
	}
	var out []netip.Addr
	for a, info := range present {
		if info.proto == Proto {
			out = append(out, a)
		}
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out, nil
}

// open returns a handle on the namespace and the interface.
func (n Namespace) open(ifname string) (*netlink.Handle, netlink.Link, error) {
	h, err := netlink.NewHandleAt(n.ns)
	if err != nil {
		return nil, nil, fmt.Errorf("open netlink handle: %w", err)
	}
	link, err := h.LinkByName(ifname)
	if err != nil {
		h.Close()
		return nil, nil, fmt.Errorf("find balancer interface %s: %w", ifname, err)
	}
	return h, link, nil
}

// addr is an address of the interface as the kernel reports it.
type addr struct {
	ipnet *net.IPNet
	proto uint8
}

// addVIP sends RTM_NEWADDR itself: netlink v1.3.1's AddrAdd cannot set
// IFA_PROTO.
func (n Namespace) addVIP(ifname string, ifindex int, v netip.Addr) error {
	fam, bits, flags := unix.AF_INET, 32, uint32(0)
	if v.Is6() {
		fam, bits, flags = unix.AF_INET6, 128, unix.IFA_F_NODAD
	}
	req := nl.NewNetlinkRequest(unix.RTM_NEWADDR, unix.NLM_F_CREATE|unix.NLM_F_EXCL|unix.NLM_F_ACK)
	msg := nl.NewIfAddrmsg(fam)
	msg.Index = uint32(ifindex)
	msg.Prefixlen = uint8(bits)
	msg.Scope = unix.RT_SCOPE_UNIVERSE
	req.AddData(msg)
	ip := v.AsSlice()
	req.AddData(nl.NewRtAttr(unix.IFA_LOCAL, ip))
	req.AddData(nl.NewRtAttr(unix.IFA_ADDRESS, ip))
	req.AddData(nl.NewRtAttr(unix.IFA_FLAGS, nl.Uint32Attr(flags)))
	req.AddData(nl.NewRtAttr(ifaProto, nl.Uint8Attr(Proto)))
	if v.Is6() {
		// Deprecated (preferred_lft 0, valid forever): still answered by
		// ND and accepted as a destination, but never chosen as a source.
		// Otherwise the kernel could pick the VIP as the source of health
		// checks to backends in the same prefix, and each backend, which
		// holds the VIP on lo, would answer itself.
		ci := nl.IfaCacheInfo{IfaCacheinfo: unix.IfaCacheinfo{Prefered: 0, Valid: 0xffffffff}}
		req.AddData(nl.NewRtAttr(unix.IFA_CACHEINFO, ci.Serialize()))
	}
	if label := ifname + LabelSuffix; v.Is4() && len(label) < unix.IFNAMSIZ {
		req.AddData(nl.NewRtAttr(unix.IFA_LABEL, nl.ZeroTerminated(label)))
	}
	return n.execute(req, 0, nil)
}

func orDiscard(log *slog.Logger) *slog.Logger {
	if log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return log
}
