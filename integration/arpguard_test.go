package integration

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/ndp"

	"github.com/dsrlb/dsrlb/integration/topo"
	"github.com/dsrlb/dsrlb/lbd/arpguard"
	"github.com/dsrlb/dsrlb/lbd/statusjson"
)

// arpReportWithin bounds the wait for the guard's report: one probe round
// (arpguard.DefaultInterval) and slack for a loaded machine.
const arpReportWithin = arpguard.DefaultInterval + 10*time.Second

// arpClearWithin bounds the wait for a conflict to clear: DefaultHold
// rounds unseen, the round in progress, and slack.
const arpClearWithin = (arpguard.DefaultHold+2)*arpguard.DefaultInterval + 10*time.Second

// TestArpGuardNamesBackend is issue 15's ARP scenario: with lbd running,
// a backend whose arp_ignore/arp_announce are reset starts answering ARP
// for the VIP; lbd reports it by name (log, metric, lbd status text and
// JSON) within a probe round, and clears it after hostprep is re-applied.
// Then the same backend sends a gratuitous ARP for the VIP: heard at
// once, reported as such, cleared after the hold time.
func TestArpGuardNamesBackend(t *testing.T) {
	s := begin(t, "arp-guard-names-backend")
	e := startLB(t, s, topo.Options{}, func(tp *topo.Topology) topo.Config {
		c := web(tp, "")
		c.MetricsListen = metricsAddr
		return c
	})
	tp, bad := e.tp, e.tp.Backends[1]
	ctx := ctxFor(t, 3*time.Minute)
	if err := e.lbd.WaitOutput(ctx, `msg="ARP guard watching"`, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	mustNoARPConflict(t, tp)

	// The drift: bad answers ARP for the VIP it holds on lo.
	if err := tp.WithholdHostprep(bad); err != nil {
		t.Fatal(err)
	}
	reset := time.Now()
	line := fmt.Sprintf("VIP %s answered by %s = backend web/%s (%s)", topo.VIP4, bad.MAC, bad.Role, bad.IPv4)
	if err := e.lbd.WaitOutput(ctx, line, arpReportWithin); err != nil {
		t.Fatal(err)
	}
	t.Logf("reported %s after the sysctls were reset", time.Since(reset).Round(100*time.Millisecond))
	mustARPConflict(t, tp, bad, "ARP reply")

	// The fix the log line names.
	if out, err := tp.Hostprep(ctx, bad, "apply"); err != nil {
		t.Fatalf("hostprep apply on %s: %v\n%s", bad.Role, err, out)
	}
	if err := e.lbd.WaitOutput(ctx, "ARP conflict cleared", arpClearWithin); err != nil {
		t.Fatal(err)
	}
	mustNoARPConflict(t, tp)

	// A gratuitous ARP is heard without a probe.
	if _, err := topo.SendFrames(bad, bad.Link, 1, time.Second, func(_ int, buf []byte) []byte { return gratuitousARP(t, bad.MAC) }); err != nil {
		t.Fatal(err)
	}
	if err := e.lbd.WaitOutputN(ctx, line, 2, arpReportWithin); err != nil {
		t.Fatal(err)
	}
	mustARPConflict(t, tp, bad, "gratuitous ARP")
	if err := e.lbd.WaitOutputN(ctx, "ARP conflict cleared", 2, arpClearWithin); err != nil {
		t.Fatal(err)
	}
	mustNoARPConflict(t, tp)
	if n := strings.Count(e.lbd.Output(), line); n != 2 {
		t.Errorf("the conflict was logged %d times, want once per episode (2):\n%s", n, e.lbd.Output())
	}
}

// TestArpGuardIPv6NA: a backend sending an unsolicited neighbour
// advertisement for the IPv6 VIP (what a host adding the VIP to its NIC
// does) is reported by name at once, and cleared after the hold time.
func TestArpGuardIPv6NA(t *testing.T) {
	s := begin(t, "arp-guard-ipv6-na")
	e := startLB(t, s, topo.Options{}, func(tp *topo.Topology) topo.Config {
		c := topo.Config{Services: []topo.Service{tp.WebService("web6", topo.VIP6, "", tp.Backends...)}}
		c.MetricsListen = metricsAddr
		return c
	})
	tp, bad := e.tp, e.tp.Backends[0]
	ctx := ctxFor(t, 2*time.Minute)
	if err := e.lbd.WaitOutput(ctx, `msg="ARP guard watching"`, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	mustNoARPConflict(t, tp)
	if _, err := topo.SendFrames(bad, bad.Link, 1, time.Second, func(_ int, buf []byte) []byte { return unsolicitedNA(t, bad) }); err != nil {
		t.Fatal(err)
	}
	line := fmt.Sprintf("VIP %s answered by %s = backend web6/%s (%s)", topo.VIP6, bad.MAC, bad.Role, bad.IPv6)
	if err := e.lbd.WaitOutput(ctx, line, arpReportWithin); err != nil {
		t.Fatal(err)
	}
	mustConflictOf(t, tp, topo.VIP6, "web6", bad, bad.IPv6, "neighbour advertisement")
	if err := e.lbd.WaitOutput(ctx, "ARP conflict cleared", arpClearWithin); err != nil {
		t.Fatal(err)
	}
	mustNoARPConflict(t, tp)
}

// unsolicitedNA is an override NA for VIP6 from h to all nodes.
func unsolicitedNA(t *testing.T, h *topo.Host) []byte {
	all := netip.MustParseAddr("ff02::1")
	na := &ndp.NeighborAdvertisement{Override: true, TargetAddress: topo.VIP6,
		Options: []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Target, Addr: h.MAC}}}
	icmp, err := ndp.MarshalMessageChecksum(na, h.IPv6, all)
	if err != nil {
		t.Fatal(err)
	}
	b := append([]byte{0x33, 0x33, 0, 0, 0, 1}, h.MAC...)
	b = append(b, 0x86, 0xdd, 0x60, 0, 0, 0, byte(len(icmp)>>8), byte(len(icmp)), 58, 255)
	src, dst := h.IPv6.As16(), all.As16()
	b = append(append(append(b, src[:]...), dst[:]...), icmp...)
	return b
}

// gratuitousARP is "who-has VIP tell VIP" from mac, broadcast.
func gratuitousARP(t *testing.T, mac net.HardwareAddr) []byte {
	p, err := arp.NewPacket(arp.OperationRequest, mac, topo.VIP4, ethernet.Broadcast, topo.VIP4)
	if err != nil {
		t.Fatal(err)
	}
	pb, _ := p.MarshalBinary()
	fb, _ := (&ethernet.Frame{Destination: ethernet.Broadcast, Source: mac, EtherType: ethernet.EtherTypeARP, Payload: pb}).MarshalBinary()
	return fb
}

// mustARPConflict checks every place an operator looks: the metric, lbd
// status and lbd status --json name bad's MAC and backend.
func mustARPConflict(t *testing.T, tp *topo.Topology, bad *topo.Host, seenAs string) {
	t.Helper()
	mustConflictOf(t, tp, topo.VIP4, "web", bad, bad.IPv4, seenAs)
}

// mustConflictOf is mustARPConflict for any VIP, service and backend address.
func mustConflictOf(t *testing.T, tp *topo.Topology, vip netip.Addr, service string, bad *topo.Host, addr netip.Addr, seenAs string) {
	t.Helper()
	backend := service + "/" + bad.Role
	if v, ok := sample(scrape(t, tp), "dsrlb_arp_conflict", `vip="`+vip.String()+`"`, `mac="`+bad.MAC.String()+`"`, `backend="`+backend+`"`); !ok || v != 1 {
		t.Errorf("dsrlb_arp_conflict for %s by %s (%s): %v %v, want 1", vip, bad.MAC, backend, v, ok)
	}
	out, err := tp.Lbd(context.Background(), "status")
	want := fmt.Sprintf("VIP %s ANSWERED BY %s = backend %s (%s)", vip, bad.MAC, backend, addr)
	if err != nil || !strings.Contains(out, want) {
		t.Errorf("lbd status lacks %q (%v):\n%s", want, err, out)
	}
	g := lbdStatus(t, tp, tp.Balancer).ARPGuard
	if g == nil || !g.Running || g.Mode != "lbd" || len(g.Conflicts) != 1 {
		t.Fatalf("lbd status --json arp_guard %+v, want one conflict", g)
	}
	c := g.Conflicts[0]
	if c.VIP != vip.String() || c.MAC != bad.MAC.String() || len(c.Backends) != 1 ||
		c.Backends[0] != (statusjson.ARPBackend{Service: service, Name: bad.Role, Address: addr.String()}) || c.SeenAs != seenAs {
		t.Errorf("conflict %+v, want %s by %s = %s seen as %s", c, vip, bad.MAC, backend, seenAs)
	}
}

func mustNoARPConflict(t *testing.T, tp *topo.Topology) {
	t.Helper()
	if _, ok := sample(scrape(t, tp), "dsrlb_arp_conflict"); ok {
		t.Errorf("dsrlb_arp_conflict present with no conflict")
	}
	if v, ok := sample(scrape(t, tp), "dsrlb_arp_guard_up"); !ok || v != 1 {
		t.Errorf("dsrlb_arp_guard_up %v %v, want 1", v, ok)
	}
	out, err := tp.Lbd(context.Background(), "status")
	if err != nil || !strings.Contains(out, "ARP guard (vip_owner lbd): no other MAC answers for a VIP") || strings.Contains(out, "ANSWERED BY") {
		t.Errorf("lbd status does not say the guard sees no conflict (%v):\n%s", err, out)
	}
}
