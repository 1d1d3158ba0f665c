package integration

import (
	"context"
	"fmt"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/dsrlb/dsrlb/integration/topo"
	"github.com/vishvananda/netlink"
)

// onlyBalancerAnswers is the ARP detector: nil when exactly the balancer's
// MAC answered for the VIP.
func onlyBalancerAnswers(tp *topo.Topology, macs []net.HardwareAddr) error {
	if len(macs) == 1 && macs[0].String() == tp.Balancer.MAC.String() {
		return nil
	}
	who := map[string]string{tp.Balancer.MAC.String(): "balancer"}
	for _, h := range tp.Hosts() {
		if _, ok := who[h.MAC.String()]; !ok {
			who[h.MAC.String()] = h.Role
		}
	}
	var named []string
	for _, m := range macs {
		named = append(named, fmt.Sprintf("%s (%s)", m, who[m.String()]))
	}
	return fmt.Errorf("ARP for the VIP answered by %d MAC(s) %v, want only the balancer's %s", len(macs), named, tp.Balancer.MAC)
}

// prepareARP writes a web service on VIP4 over every backend, runs hostprep
// on the backends except withheld (which gets the VIP on lo without the
// sysctls), and puts the VIP on the balancer by hand, as lbd will.
func prepareARP(t *testing.T, tp *topo.Topology, withheld *topo.Host) {
	t.Helper()
	ctx := ctxFor(t, 30*time.Second)
	cfg := topo.Config{Services: []topo.Service{tp.WebService("web", topo.VIP4, "", tp.Backends...)}}
	if _, err := tp.WriteConfig(cfg); err != nil {
		t.Fatal(err)
	}
	var skip []*topo.Host
	if withheld != nil {
		skip = append(skip, withheld)
		if err := tp.WithholdHostprep(withheld, topo.VIP4); err != nil {
			t.Fatal(err)
		}
	}
	outs, err := tp.PrepareBackends(ctx, skip...)
	if err != nil {
		t.Fatal(err)
	}
	for b, out := range outs {
		t.Logf("hostprep apply on %s:\n%s", b, out)
	}
	// The property is only meaningful if every backend holds the VIP.
	for _, b := range tp.Backends {
		mustHoldOnLo(t, b, topo.VIP4.String())
	}
	if err := tp.TakeVIPByHand(topo.VIP4); err != nil {
		t.Fatal(err)
	}
}

func mustHoldOnLo(t *testing.T, b *topo.Host, vip string) {
	t.Helper()
	lo, err := b.NS.Netlink().LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	addrs, err := b.NS.Netlink().AddrList(lo, netlink.FAMILY_ALL)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(addrs, func(a netlink.Addr) bool { return a.IP.String() == vip }) {
		t.Fatalf("%s: VIP %s not on lo (addresses %v)", b.Role, vip, addrs)
	}
}

func probe(t *testing.T, from *topo.Host) []net.HardwareAddr {
	t.Helper()
	macs, err := topo.ARPProbe(from, topo.VIP4, 400*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("who-has %s from %s: answered by %v", topo.VIP4, from.Role, macs)
	return macs
}

func TestARPOnlyBalancerAnswers(t *testing.T) {
	s := begin(t, "arp-only-balancer-answers")
	s.needRoot()
	tp := mustTopology(t, topo.Options{})
	prepareARP(t, tp, nil)
	if err := onlyBalancerAnswers(tp, probe(t, tp.Client)); err != nil {
		t.Fatal(err)
	}
}

// TestARPConflictDetected proves the ARP scenario can fail: one backend
// gets the VIP on lo without hostprep's sysctls and must be caught
// answering, and hostprep check must report its drift.
func TestARPConflictDetected(t *testing.T) {
	s := begin(t, "arp-conflict-detected-without-hostprep")
	s.needRoot()
	tp := mustTopology(t, topo.Options{})
	bad := tp.Backends[2]
	prepareARP(t, tp, bad)
	macs := probe(t, tp.Client)
	err := onlyBalancerAnswers(tp, macs)
	if err == nil {
		t.Fatalf("detector did not fire: %s answers ARP for the VIP (arp_ignore=0) yet only the balancer was seen", bad.Role)
	}
	t.Logf("detector fired as it must: %v", err)
	want := []string{tp.Balancer.MAC.String(), bad.MAC.String()}
	var got []string
	for _, m := range macs {
		got = append(got, m.String())
	}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("answerers %v, want exactly the balancer and %s: %v", got, bad.Role, want)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := tp.Hostprep(ctx, bad, "check")
	if err == nil {
		t.Errorf("hostprep check on %s exited 0 although its ARP sysctls are not set:\n%s", bad.Role, out)
	} else {
		t.Logf("hostprep check on %s reports the drift:\n%s", bad.Role, out)
	}
}

func TestARPOnlyBalancerAnswersVLAN(t *testing.T) {
	s := begin(t, "arp-only-balancer-answers-vlan")
	s.needRoot()
	tp := mustTopology(t, topo.Options{VLAN: 100})
	prepareARP(t, tp, nil)
	if err := onlyBalancerAnswers(tp, probe(t, tp.Client)); err != nil {
		t.Fatal(err)
	}
}

// TestARPRoutedRouterSeesBalancer: in the routed variant the router is the
// one resolving the VIP on the segment.
func TestARPRoutedRouterSeesBalancer(t *testing.T) {
	s := begin(t, "arp-routed-router-sees-balancer")
	s.needRoot()
	tp := mustTopology(t, topo.Options{Routed: true})
	prepareARP(t, tp, nil)
	if err := onlyBalancerAnswers(tp, probe(t, tp.Router)); err != nil {
		t.Fatal(err)
	}
}
