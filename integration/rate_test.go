package integration

import (
	"fmt"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/dsrlb/dsrlb/integration/pktgen"
	"github.com/dsrlb/dsrlb/integration/topo"
)

// TestForwardingAtRate: lbd forwards what a packet generator sends as fast
// as the path takes it (integration/pktgen: XDP live frames out of the
// client's veth, 4,096 established flows from 203.0.113.0/24 in bursts of
// 4, about a second) to the backends Maglev picks, all of them, and counts
// every frame: each backend's drop program (which keeps the frames from
// its stack) counts exactly what lbd's counters say it was sent.
func TestForwardingAtRate(t *testing.T) {
	s := begin(t, "forwarding-at-rate")
	e := startLB(t, s, topo.Options{}, func(tp *topo.Topology) topo.Config {
		return topo.Config{Services: []topo.Service{tp.WebService("web", topo.VIP4, "maglev", tp.Backends...)}}
	})
	tp := e.tp
	sources := pktgen.Sources
	drops := map[string]*pktgen.Drop{}
	for _, b := range tp.Backends {
		ifindex := linkIndex(t, b.NS.Netlink(), b.Link)
		var d *pktgen.Drop
		if err := b.NS.Do(func() (err error) { d, err = pktgen.AttachDrop(ifindex, sources); return err }); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { d.Close() })
		drops[b.Role] = d
	}
	port := linkIndex(t, tp.Bridge.Netlink(), tp.Client.Role)
	var pass *pktgen.Pass
	if err := tp.Bridge.Do(func() (err error) { pass, err = pktgen.AttachPass(port); return err }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pass.Close() })
	gen, err := pktgen.Load(pktgen.Config{Mix: pktgen.Established, Flows: 4096, Burst: 4, Sources: sources,
		VIP: topo.VIP4, Port: topo.HTTPPort, Dst: tp.Balancer.MAC, Src: tp.Client.MAC})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gen.Close() })

	before := backendPackets(t, tp)
	client := linkIndex(t, tp.Client.NS.Netlink(), tp.Client.Link)
	opened, err := gen.Open(tp.Client.NS.Do, client, 0)
	if err != nil {
		t.Fatal(err)
	}
	sent, err := gen.Run(ctxFor(t, 30*time.Second), tp.Client.NS.Do, client, 0, 1<<16, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	sent += opened
	got := map[string]uint64{}
	var delivered uint64
	for deadline := time.Now().Add(5 * time.Second); delivered < sent && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		delivered = 0
		for role, d := range drops {
			n, err := d.Dropped()
			if err != nil {
				t.Fatal(err)
			}
			got[role], delivered = n, delivered+n
		}
	}
	s.note = fmt.Sprintf("%d frames in ~1 s", sent)
	// A veth ring of 256 frames may overflow under a burst: a frame or
	// two in ten thousand, never more.
	if delivered > sent || delivered < sent-sent/1000 {
		t.Fatalf("backends received %d of %d frames sent through lbd", delivered, sent)
	}
	after := backendPackets(t, tp)
	for _, b := range tp.Backends {
		counted := after[b.Role] - before[b.Role]
		if got[b.Role] < sent/10 {
			t.Errorf("%s received %d of %d frames: Maglev should spread 4,096 flows over every backend", b.Role, got[b.Role], sent)
		}
		if counted != got[b.Role] {
			t.Errorf("lbd counted %d packets to %s, its drop program received %d", counted, b.Role, got[b.Role])
		}
	}
	t.Logf("sent %d frames (%d to open the flows), received %v", sent, opened, got)
}

// linkIndex is the index of the link named name in h's namespace.
func linkIndex(t *testing.T, h *netlink.Handle, name string) int {
	t.Helper()
	l, err := h.LinkByName(name)
	if err != nil {
		t.Fatalf("find %s: %v", name, err)
	}
	return l.Attrs().Index
}

// backendPackets is each backend's packet counter in `lbd status --json`.
func backendPackets(t *testing.T, tp *topo.Topology) map[string]uint64 {
	t.Helper()
	n := map[string]uint64{}
	for _, s := range lbdStatus(t, tp, tp.Balancer).Services {
		for _, b := range s.Backends {
			n[b.Name] += b.Counters.Packets
		}
	}
	return n
}
