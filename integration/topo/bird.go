package topo

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
)

// The BGP plan of the ECMP scenarios: documentation ASNs (RFC 5398).
const (
	RouterASN   = 64496
	BalancerASN = 64497
)

// StartBird starts BIRD 2 on the router (foreground, by PID: Close kills
// it) peering over eBGP with every balancer, installing the VIP routes
// as one ECMP route (merge paths) and hashing flows on L4
// (fib_multipath_hash_policy=1), as a datacentre ToR would. hold is the
// sessions' hold time.
func (t *Topology) StartBird(ctx context.Context, hold time.Duration) (*Proc, error) {
	if t.Router == nil {
		return nil, fmt.Errorf("start bird: the topology has no router (Options.Routed)")
	}
	if err := t.Router.NS.SetSysctl("net/ipv4/fib_multipath_hash_policy", "1"); err != nil {
		return nil, err
	}
	var b strings.Builder
	fmt.Fprintf(&b, `# written by the dsrlb integration harness for %s
router id %s;
log stderr all;
protocol device { scan time 1; }
protocol kernel {
	ipv4 { import none; export all; };
	merge paths on;		# one ECMP route from the balancers' equal paths
}
template bgp balancer {
	local %s as %d;
	hold time %d;
	keepalive time 1;
	connect delay time 1;
	connect retry time 1;
	error wait time 1, 2;	# a returning balancer is taken back at once
	ipv4 { import all; export none; };
}
`, t.ID, t.Router.IPv4, t.Router.IPv4, RouterASN, int(hold.Seconds()))
	for _, lb := range t.Balancers {
		fmt.Fprintf(&b, "protocol bgp %s from balancer { neighbor %s as %d; }\n", strings.ReplaceAll(lb.Role, "-", "_"), lb.IPv4, BalancerASN)
	}
	conf := filepath.Join(t.Dir, "bird.conf")
	if err := os.WriteFile(conf, []byte(b.String()), 0o644); err != nil {
		return nil, fmt.Errorf("start bird: %w", err)
	}
	p, err := t.Start(t.Router, "bird", "bird", "-f", "-c", conf, "-s", t.BirdSocket(), "-P", filepath.Join(t.Dir, "bird.pid"))
	if err != nil {
		return nil, err
	}
	// Ready when the control socket answers.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if _, err := t.Birdc(ctx, "show", "status"); err == nil {
			return p, nil
		}
		if ok, _ := p.Exited(); ok || time.Now().After(deadline) {
			return nil, fmt.Errorf("bird not ready within 10s:\n%s", p.Output())
		}
	}
}

// BirdSocket is the control socket of the router's BIRD.
func (t *Topology) BirdSocket() string { return filepath.Join(t.Dir, "bird.ctl") }

// Birdc runs `birdc -s SOCK args...` and returns its output.
func (t *Topology) Birdc(ctx context.Context, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return t.Router.NS.Run(ctx, "birdc", append([]string{"-s", t.BirdSocket()}, args...)...)
}

// NextHops lists the gateways of the router's kernel route to vip/32
// (several for an ECMP route; none when there is no route), sorted.
func (t *Topology) NextHops(vip netip.Addr) ([]netip.Addr, error) {
	bits := 32
	if vip.Is6() {
		bits = 128
	}
	filter := &netlink.Route{Dst: prefixNet(netip.PrefixFrom(vip, bits))}
	fam := netlink.FAMILY_V4
	if vip.Is6() {
		fam = netlink.FAMILY_V6
	}
	rs, err := t.Router.NS.handle.RouteListFiltered(fam, filter, netlink.RT_FILTER_DST)
	if err != nil {
		return nil, fmt.Errorf("list routes to %s on the router: %w", vip, err)
	}
	var out []netip.Addr
	for _, r := range rs {
		if r.Gw != nil {
			a, _ := netip.AddrFromSlice(r.Gw)
			out = append(out, a.Unmap())
		}
		for _, nh := range r.MultiPath {
			a, _ := netip.AddrFromSlice(nh.Gw)
			out = append(out, a.Unmap())
		}
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out, nil
}

// WaitNextHops waits (at most d) until the router's route to vip goes
// through exactly the balancers want (none: no route).
func (t *Topology) WaitNextHops(ctx context.Context, vip netip.Addr, want []*Host, d time.Duration) error {
	var addrs []netip.Addr
	for _, h := range want {
		addrs = append(addrs, h.IPv4)
	}
	slices.SortFunc(addrs, netip.Addr.Compare)
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	for {
		got, err := t.NextHops(vip)
		if err == nil && slices.Equal(got, addrs) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("route to %s on the router: next hops %v, want %v within %v (err %v)", vip, got, addrs, d, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
