// Package topo builds dsrlb's integration topology in network namespaces:
// a client, a balancer and backends on one bridge (the bridge in its own
// namespace, so the host is untouched), optionally with the client on
// another subnet behind a router, optionally on a VLAN-tagged segment.
//
// Everything carries RunID in its name and is removed by Topology.Close,
// which tests register with t.Cleanup and TestMain calls through CloseAll
// on SIGINT/SIGTERM. Only documentation ranges are used: 192.0.2.0/24 and
// 2001:db8::/64 for the segment, 198.51.100.0/24 and 2001:db8:1::/64 for
// the routed client, 00:00:5e:00:53:xx (RFC 7042) for MACs.
package topo

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/dsrlb/dsrlb/internal/bpffs"
)

// The addressing plan.
var (
	VIP4 = netip.MustParseAddr("192.0.2.10")
	VIP6 = netip.MustParseAddr("2001:db8::10")

	segment4 = netip.MustParsePrefix("192.0.2.0/24")
	segment6 = netip.MustParsePrefix("2001:db8::/64")
	routed4  = netip.MustParsePrefix("198.51.100.0/24")
	routed6  = netip.MustParsePrefix("2001:db8:1::/64")
)

const bpffsRoot = bpffs.Root

// Options shape a topology.
type Options struct {
	// Backends is the number of backends, b1..bN (default 3, at most 9).
	Backends int
	// Routed puts the client on 198.51.100.0/24 (2001:db8:1::/64) behind a
	// router namespace, as in production; backends and balancer route to
	// it through the router's segment address.
	Routed bool
	// VLAN, when non-zero, makes the segment this VLAN id: every frame on
	// the bridge is tagged; each host's eth0 tags and untags in BPF (see
	// vlan.go: this kernel has no 8021q), so lbd sees tagged frames.
	VLAN int
	// ClientAliases adds this many extra addresses to the client
	// (192.0.2.21.., or 198.51.100.21.. when routed) to act as other
	// clients.
	ClientAliases int
	// Balancers is the number of balancers, lb (192.0.2.2) then lb2, lb3
	// (192.0.2.3, .4); default 1. With more than one, each lbd gets its
	// own pin path and configuration file (ConfigPathFor).
	Balancers int
	// Logf receives progress lines (t.Logf); nil discards them.
	Logf func(format string, args ...any)
}

// Host is one namespace on the segment (or behind the router).
type Host struct {
	Role string // client, lb, router, b1..bN
	NS   *NS
	Dev  string // the interface holding the addresses (eth0)
	Link string // the physical interface: eth0
	IPv4 netip.Addr
	IPv6 netip.Addr
	MAC  net.HardwareAddr
	// Aliases are extra IPv4 addresses (client only).
	Aliases []netip.Addr
}

// Topology is a running set of namespaces and processes.
type Topology struct {
	ID       string // RunID-<n>, prefix of every name below
	Opts     Options
	Bins     *Bins
	Dir      string // temp dir: configs, hostprep roots, logs
	PinPath  string // unique bpffs directory for lbd (removed by Close)
	Bridge   *NS
	Client   *Host
	Balancer *Host
	// Balancers are every balancer, Balancer first.
	Balancers []*Host
	Router    *Host // nil unless Options.Routed
	Backends  []*Host

	mu        sync.Mutex
	nss       []*NS
	procs     []*Proc
	config    string // path of the current dsrlb.yaml
	cfg       Config // what it holds
	vlanPush  *ebpf.Program
	vlanPop   *ebpf.Program
	closeOnce sync.Once
	closeErr  error
}

var topoSeq atomic.Int32

// New builds a topology. On error everything created so far is removed.
func New(ctx context.Context, bins *Bins, opts Options) (_ *Topology, err error) {
	if opts.Backends == 0 {
		opts.Backends = 3
	}
	if opts.Balancers == 0 {
		opts.Balancers = 1
	}
	if opts.Balancers > 3 {
		return nil, fmt.Errorf("new topology: at most 3 balancers, not %d", opts.Balancers)
	}
	if opts.Backends > 9 {
		return nil, fmt.Errorf("new topology: at most 9 backends, not %d", opts.Backends)
	}
	if opts.Logf == nil {
		opts.Logf = func(string, ...any) {}
	}
	// A machine booted without systemd has no bpffs for lbd's pins.
	if _, err := bpffs.Mount(); err != nil {
		return nil, fmt.Errorf("new topology: %w", err)
	}
	id := fmt.Sprintf("%s-%d", RunID, topoSeq.Add(1))
	dir, err := os.MkdirTemp("", id+"-")
	if err != nil {
		return nil, fmt.Errorf("new topology: %w", err)
	}
	t := &Topology{ID: id, Opts: opts, Bins: bins, Dir: dir, PinPath: filepath.Join(bpffsRoot, id)}
	liveMu.Lock()
	live[t] = struct{}{}
	liveMu.Unlock()
	defer func() {
		if err != nil {
			if cerr := t.Close(); cerr != nil {
				err = errors.Join(err, cerr)
			}
			err = fmt.Errorf("new topology %s: %w", id, err)
		}
	}()
	start := time.Now()
	if err := t.build(ctx); err != nil {
		return nil, err
	}
	opts.Logf("topology %s up in %v (routed=%v vlan=%d backends=%d)", id, time.Since(start).Round(time.Millisecond), opts.Routed, opts.VLAN, opts.Backends)
	return t, nil
}

func (t *Topology) ns(ctx context.Context, role string) (*NS, error) {
	n, err := newNS(t.ID + "-" + role)
	t.mu.Lock()
	if n != nil {
		t.nss = append(t.nss, n)
	}
	t.mu.Unlock()
	if err != nil {
		return nil, err
	}
	// New namespaces inherit the host's IPv4 conf/all values: set what the
	// topology relies on instead of assuming it.
	for _, kv := range [][2]string{
		{"net/ipv4/conf/all/rp_filter", "0"}, {"net/ipv4/conf/default/rp_filter", "0"},
		{"net/ipv4/conf/all/arp_ignore", "0"}, {"net/ipv4/conf/default/arp_ignore", "0"},
		{"net/ipv4/conf/all/arp_announce", "0"}, {"net/ipv4/conf/default/arp_announce", "0"},
		{"net/ipv4/ip_forward", "0"},
		{"net/ipv6/conf/all/accept_dad", "0"}, {"net/ipv6/conf/default/accept_dad", "0"},
		{"net/ipv6/conf/all/accept_ra", "0"}, {"net/ipv6/conf/default/accept_ra", "0"},
		{"net/ipv6/conf/all/forwarding", "0"},
	} {
		if err := n.SetSysctl(kv[0], kv[1]); err != nil {
			return nil, err
		}
	}
	lo, err := n.handle.LinkByName("lo")
	if err == nil {
		err = n.handle.LinkSetUp(lo)
	}
	if err != nil {
		return nil, fmt.Errorf("set lo up in %s: %w", n.Name, err)
	}
	return n, nil
}

func mac(last byte) net.HardwareAddr { return net.HardwareAddr{0x00, 0x00, 0x5e, 0x00, 0x53, last} }

func (t *Topology) build(ctx context.Context) error {
	var err error
	if t.Bridge, err = t.ns(ctx, "br"); err != nil {
		return err
	}
	// br_netfilter may be loaded on the host: bridged frames must not meet
	// iptables. The files exist only when the module is loaded.
	for _, k := range []string{"bridge-nf-call-iptables", "bridge-nf-call-ip6tables", "bridge-nf-call-arptables"} {
		key := "net/bridge/" + k
		if _, serr := os.Stat("/proc/sys/" + key); serr == nil {
			if err := t.Bridge.SetSysctl(key, "0"); err != nil {
				return err
			}
		}
	}
	// The bridge and its ports need no IPv6: keep their router
	// solicitations and MLD reports off the wire.
	if err := t.Bridge.SetSysctl("net/ipv6/conf/default/disable_ipv6", "1"); err != nil {
		return err
	}
	if t.Opts.VLAN != 0 {
		if t.vlanPush, t.vlanPop, err = vlanPrograms(t.Opts.VLAN); err != nil {
			return err
		}
	}
	// No vlan_filtering: this kernel is built without
	// CONFIG_BRIDGE_VLAN_FILTERING ("operation not supported"). A plain
	// bridge forwards tagged frames unchanged, which is all the VLAN
	// variant needs: every host talks on eth0.<VLAN> only.
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "br0"}}
	if err := t.Bridge.handle.LinkAdd(br); err != nil {
		return fmt.Errorf("add bridge: %w", err)
	}
	if err := t.Bridge.handle.LinkSetUp(br); err != nil {
		return fmt.Errorf("set bridge up: %w", err)
	}

	seg := func(p netip.Prefix, last byte) netip.Addr {
		a := p.Addr().As16()
		if p.Addr().Is4() {
			b := p.Addr().As4()
			b[3] = last
			return netip.AddrFrom4(b)
		}
		// IPv6 hosts reuse the IPv4 last octet's digits: .11 -> ::11.
		v, _ := strconv.ParseUint(strconv.Itoa(int(last)), 16, 16)
		a[14], a[15] = byte(v>>8), byte(v)
		return netip.AddrFrom16(a)
	}
	onSegment := func(role string, last byte) (*Host, error) {
		n, err := t.ns(ctx, role)
		if err != nil {
			return nil, err
		}
		h := &Host{Role: role, NS: n, Link: "eth0", Dev: "eth0", IPv4: seg(segment4, last), IPv6: seg(segment6, last), MAC: mac(last)}
		if err := t.plug(h); err != nil {
			return nil, err
		}
		return h, nil
	}

	if t.Balancer, err = onSegment("lb", 2); err != nil {
		return err
	}
	t.Balancers = []*Host{t.Balancer}
	for i := 2; i <= t.Opts.Balancers; i++ {
		lb, err := onSegment(fmt.Sprintf("lb%d", i), byte(i+1))
		if err != nil {
			return err
		}
		t.Balancers = append(t.Balancers, lb)
	}
	for i := 1; i <= t.Opts.Backends; i++ {
		b, err := onSegment(fmt.Sprintf("b%d", i), byte(10+i))
		if err != nil {
			return err
		}
		t.Backends = append(t.Backends, b)
	}
	if !t.Opts.Routed {
		if t.Client, err = onSegment("client", 1); err != nil {
			return err
		}
	} else {
		if t.Router, err = onSegment("router", 254); err != nil {
			return err
		}
		if err := t.routedClient(ctx, seg); err != nil {
			return err
		}
	}
	for i := 0; i < t.Opts.ClientAliases; i++ {
		a := t.Client.IPv4.As4()
		a[3] = byte(21 + i)
		alias := netip.AddrFrom4(a)
		if err := t.addAddr(t.Client, netip.PrefixFrom(alias, 24)); err != nil {
			return err
		}
		t.Client.Aliases = append(t.Client.Aliases, alias)
	}
	return nil
}

// plug connects h's eth0 to the bridge with a veth (port named after the
// role in the bridge namespace) and configures its addresses.
func (t *Topology) plug(h *Host) error {
	nsFd := netlink.NsFd(int(h.NS.h))
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: h.Role, MTU: 1500}, PeerName: "eth0",
		PeerHardwareAddr: h.MAC, PeerNamespace: nsFd}
	if err := t.Bridge.handle.LinkAdd(veth); err != nil {
		return fmt.Errorf("add veth %s: %w", h.Role, err)
	}
	port, err := t.Bridge.handle.LinkByName(h.Role)
	if err != nil {
		return fmt.Errorf("find port %s: %w", h.Role, err)
	}
	if err := t.Bridge.handle.LinkSetMasterByIndex(port, mustIndex(t.Bridge, "br0")); err != nil {
		return fmt.Errorf("attach %s to br0: %w", h.Role, err)
	}
	if err := t.Bridge.handle.LinkSetUp(port); err != nil {
		return fmt.Errorf("set port %s up: %w", h.Role, err)
	}
	eth0, err := h.NS.handle.LinkByName("eth0")
	if err != nil {
		return fmt.Errorf("find eth0 in %s: %w", h.NS.Name, err)
	}
	if err := h.NS.handle.LinkSetUp(eth0); err != nil {
		return fmt.Errorf("set eth0 up in %s: %w", h.NS.Name, err)
	}
	if t.Opts.VLAN != 0 {
		if err := tagLink(h, t.vlanPush, t.vlanPop); err != nil {
			return err
		}
	}
	if err := t.addAddr(h, netip.PrefixFrom(h.IPv4, 24)); err != nil {
		return err
	}
	if err := t.addAddr(h, netip.PrefixFrom(h.IPv6, 64)); err != nil {
		return err
	}
	if t.Opts.Routed && h.Role != "router" {
		for _, gw := range []string{"192.0.2.254", "2001:db8::254"} {
			if err := t.addDefault(h, netip.MustParseAddr(gw)); err != nil {
				return err
			}
		}
	}
	return nil
}

// routedClient puts the client behind the router: router eth1 <-> client
// eth0, a direct veth off the segment.
func (t *Topology) routedClient(ctx context.Context, seg func(netip.Prefix, byte) netip.Addr) error {
	c, err := t.ns(ctx, "client")
	if err != nil {
		return err
	}
	t.Client = &Host{Role: "client", NS: c, Link: "eth0", Dev: "eth0", IPv4: seg(routed4, 2), IPv6: seg(routed6, 2), MAC: mac(1)}
	r := t.Router
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "eth1", HardwareAddr: mac(253)}, PeerName: "eth0",
		PeerHardwareAddr: t.Client.MAC, PeerNamespace: netlink.NsFd(int(c.h))}
	if err := r.NS.handle.LinkAdd(veth); err != nil {
		return fmt.Errorf("add router-client veth: %w", err)
	}
	for _, h := range []*Host{r, t.Client} {
		name := "eth0"
		if h == r {
			name = "eth1"
		}
		l, err := h.NS.handle.LinkByName(name)
		if err == nil {
			err = h.NS.handle.LinkSetUp(l)
		}
		if err != nil {
			return fmt.Errorf("set %s up in %s: %w", name, h.NS.Name, err)
		}
	}
	rh := &Host{NS: r.NS, Dev: "eth1"}
	for _, p := range []netip.Prefix{netip.PrefixFrom(seg(routed4, 1), 24), netip.PrefixFrom(seg(routed6, 1), 64)} {
		if err := t.addAddr(rh, p); err != nil {
			return err
		}
	}
	for _, p := range []netip.Prefix{netip.PrefixFrom(t.Client.IPv4, 24), netip.PrefixFrom(t.Client.IPv6, 64)} {
		if err := t.addAddr(t.Client, p); err != nil {
			return err
		}
	}
	for _, gw := range []netip.Addr{seg(routed4, 1), seg(routed6, 1)} {
		if err := t.addDefault(t.Client, gw); err != nil {
			return err
		}
	}
	for _, kv := range [][2]string{{"net/ipv4/ip_forward", "1"}, {"net/ipv6/conf/all/forwarding", "1"}} {
		if err := r.NS.SetSysctl(kv[0], kv[1]); err != nil {
			return err
		}
	}
	return nil
}

func mustIndex(n *NS, name string) int {
	l, err := n.handle.LinkByName(name)
	if err != nil {
		return 0
	}
	return l.Attrs().Index
}

// addAddr is `ip addr add P dev h.Dev` (nodad for IPv6: no 1 s wait).
func (t *Topology) addAddr(h *Host, p netip.Prefix) error {
	l, err := h.NS.handle.LinkByName(h.Dev)
	if err != nil {
		return fmt.Errorf("find %s in %s: %w", h.Dev, h.NS.Name, err)
	}
	a := &netlink.Addr{IPNet: prefixNet(p)}
	if p.Addr().Is6() {
		a.Flags = unix.IFA_F_NODAD
	}
	if err := h.NS.handle.AddrAdd(l, a); err != nil {
		return fmt.Errorf("add %s to %s in %s: %w", p, h.Dev, h.NS.Name, err)
	}
	return nil
}

// addDefault is `ip route add default via gw`.
func (t *Topology) addDefault(h *Host, gw netip.Addr) error {
	r := &netlink.Route{Gw: gw.AsSlice()}
	if gw.Is4() {
		r.Dst = &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}
	} else {
		r.Dst = &net.IPNet{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)}
	}
	if err := h.NS.handle.RouteAdd(r); err != nil {
		return fmt.Errorf("add default via %s in %s: %w", gw, h.NS.Name, err)
	}
	return nil
}

func prefixNet(p netip.Prefix) *net.IPNet {
	bits := 32
	if p.Addr().Is6() {
		bits = 128
	}
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), bits)}
}

// Hosts are every host namespace: client, router (routed), balancer,
// backends.
func (t *Topology) Hosts() []*Host {
	hs := []*Host{t.Client}
	if t.Router != nil {
		hs = append(hs, t.Router)
	}
	hs = append(hs, t.Balancers...)
	return append(hs, t.Backends...)
}

// Backend returns the backend with that role (b1..), or nil.
func (t *Topology) Backend(role string) *Host {
	for _, b := range t.Backends {
		if b.Role == role {
			return b
		}
	}
	return nil
}

// TakeVIPByHand puts vip on the balancer's segment interface, as lbd does
// when it starts (for ARP scenarios that run without lbd).
func (t *Topology) TakeVIPByHand(vip netip.Addr) error {
	bits := 32
	if vip.Is6() {
		bits = 128
	}
	return t.addAddr(t.Balancer, netip.PrefixFrom(vip, bits))
}

// Start starts a long-running process in h's namespace; Close stops it.
func (t *Topology) Start(h *Host, name string, args ...string) (*Proc, error) {
	p, err := startProc(h.NS, name, args...)
	if err != nil {
		return nil, err
	}
	t.mu.Lock()
	t.procs = append(t.procs, p)
	t.mu.Unlock()
	return p, nil
}

// Close stops every process (SIGTERM, then SIGKILL by PID), removes lbd's
// pins, deletes the namespaces and the temp dir. It is idempotent and
// returns every error met.
func (t *Topology) Close() error {
	t.closeOnce.Do(func() {
		var errs []error
		t.mu.Lock()
		procs := t.procs
		t.mu.Unlock()
		var wg sync.WaitGroup
		for _, p := range procs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_ = p.Stop(3 * time.Second)
			}()
		}
		wg.Wait()
		for _, lb := range t.Balancers {
			pin := t.PinPathFor(lb)
			if _, err := os.Stat(pin); err != nil {
				continue
			}
			if cfg := t.ConfigPathFor(lb); cfg != "" && t.Bins != nil && t.Bins.LbdRunAvailable() {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				if out, err := lb.NS.Run(ctx, t.Bins.Lbd, "detach", "--config", cfg); err != nil {
					errs = append(errs, fmt.Errorf("lbd detach on %s: %w: %s", lb.Role, err, strings.TrimSpace(out)))
				}
				cancel()
			}
			if err := os.RemoveAll(pin); err != nil {
				errs = append(errs, fmt.Errorf("remove pins: %w", err))
			}
		}
		for i := len(t.nss) - 1; i >= 0; i-- {
			if err := t.nss[i].delete(); err != nil {
				errs = append(errs, err)
			}
		}
		for _, p := range []*ebpf.Program{t.vlanPush, t.vlanPop} {
			if p != nil {
				p.Close()
			}
		}
		if err := os.RemoveAll(t.Dir); err != nil {
			errs = append(errs, err)
		}
		liveMu.Lock()
		delete(live, t)
		liveMu.Unlock()
		t.closeErr = errors.Join(errs...)
		if t.closeErr != nil {
			t.closeErr = fmt.Errorf("close topology %s: %w", t.ID, t.closeErr)
		}
	})
	return t.closeErr
}

// PointVIPAt makes from send frames for vip straight to backend b's MAC
// (a permanent neighbour entry): DSR by hand, no balancer, to check the
// backends' half of the path on its own.
func (t *Topology) PointVIPAt(from *Host, vip netip.Addr, b *Host) error {
	l, err := from.NS.handle.LinkByName(from.Dev)
	if err != nil {
		return fmt.Errorf("find %s in %s: %w", from.Dev, from.NS.Name, err)
	}
	n := &netlink.Neigh{LinkIndex: l.Attrs().Index, IP: vip.AsSlice(), HardwareAddr: b.MAC, State: netlink.NUD_PERMANENT}
	if vip.Is6() {
		n.Family = netlink.FAMILY_V6
	} else {
		n.Family = netlink.FAMILY_V4
	}
	if err := from.NS.handle.NeighSet(n); err != nil {
		return fmt.Errorf("point %s at %s in %s: %w", vip, b.Role, from.NS.Name, err)
	}
	return nil
}
