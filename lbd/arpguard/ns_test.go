package arpguard

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dsrlb/dsrlb/internal/nettest"
	"github.com/dsrlb/dsrlb/lbd/vip"
)

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// waitFor polls cond until it holds or d passes.
func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, d)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestGuardFindsBackendAnswering: over a real veth pair, a "backend"
// holding the IPv4 VIP on lo with arp_ignore=0 answers the guard's who-has,
// and one holding the IPv6 VIP on its interface answers its solicitation:
// both are reported, named as the backend their MAC belongs to, and
// cleared once the backend stops answering.
func TestGuardFindsBackendAnswering(t *testing.T) {
	nettest.Require(t)
	p := nettest.NewPair(t)
	v6 := netip.MustParseAddr("2001:db8::10")
	p.Peer.Run(t, "ip", "addr", "add", vip4.String()+"/32", "dev", "lo")
	p.Peer.Run(t, "ip", "addr", "add", v6.String()+"/128", "dev", "peer0", "nodad")
	p.Peer.Run(t, "sysctl", "-qw", "net.ipv4.conf.all.arp_ignore=0", "net.ipv4.conf.peer0.arp_ignore=0")
	peer, err := net.ParseMAC(strings.TrimSpace(p.Peer.Run(t, "cat", "/sys/class/net/peer0/address")))
	if err != nil {
		t.Fatal(err)
	}
	be := Backend{Service: "web", Name: "web1", Addr: netip.MustParseAddr("192.0.2.2")}
	var logs syncBuf
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	g, err := Start(ctx, Options{
		Interface: "lb0", Namespace: vip.In(p.LB.Handle), Interval: 300 * time.Millisecond, Hold: 2,
		Logger: slog.New(slog.NewTextHandler(&logs, nil)),
		Targets: func() Targets {
			return Targets{VIPs: []netip.Addr{vip4, v6}, Policy: Policy{Mode: OwnerLBD, Backends: map[string][]Backend{peer.String(): {be}}}}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	waitFor(t, "both VIPs reported", 5*time.Second, func() bool { return len(g.Conflicts()) == 2 })
	for i, c := range g.Conflicts() {
		want := []netip.Addr{vip4, v6}[i]
		if c.VIP != want || c.MAC.String() != peer.String() || BackendsText(c.Backends) != be.String() {
			t.Errorf("conflict %d: %+v, want %s answered by %s = %s", i, c, want, peer, be)
		}
	}
	if c := g.Conflicts()[0]; c.Kind != vip.ARPReply {
		t.Errorf("IPv4 seen as %s, want an ARP reply", c.Kind)
	}
	// A conflict is recorded before it is logged: wait for both lines.
	waitFor(t, "both conflicts logged", 5*time.Second, func() bool { return strings.Count(logs.String(), "level=ERROR") >= 2 })
	for _, want := range []string{"level=ERROR", "VIP 192.0.2.10 answered by " + peer.String() + " = backend web/web1 (192.0.2.2)", "VIP 2001:db8::10 answered by"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, logs.String())
		}
	}
	if n := strings.Count(logs.String(), "level=ERROR"); n != 2 {
		t.Errorf("%d ERROR lines, want one per conflict (rate-limited):\n%s", n, logs.String())
	}

	// hostprep's settings back: the backend stops answering.
	p.Peer.Run(t, "sysctl", "-qw", "net.ipv4.conf.all.arp_ignore=1", "net.ipv4.conf.all.arp_announce=2")
	p.Peer.Run(t, "ip", "addr", "del", v6.String()+"/128", "dev", "peer0")
	waitFor(t, "conflicts cleared", 5*time.Second, func() bool { return len(g.Conflicts()) == 0 })
	if n := strings.Count(logs.String(), "ARP conflict cleared"); n != 2 {
		t.Errorf("%d cleared lines, want 2:\n%s", n, logs.String())
	}
}

// TestGuardExternalOwnerIgnoresPeer: with an external VIP owner, another
// balancer (not a backend) answering is legitimate and not reported, while
// a backend's MAC is; the same frames feed both guards.
func TestGuardExternalOwnerIgnoresPeer(t *testing.T) {
	nettest.Require(t)
	p := nettest.NewPair(t)
	p.Peer.Run(t, "ip", "addr", "add", vip4.String()+"/32", "dev", "peer0")
	peer, err := net.ParseMAC(strings.TrimSpace(p.Peer.Run(t, "cat", "/sys/class/net/peer0/address")))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	start := func(bs map[string][]Backend) *Guard {
		g, err := Start(ctx, Options{Interface: "lb0", Namespace: vip.In(p.LB.Handle), Interval: 200 * time.Millisecond,
			Targets: func() Targets {
				return Targets{VIPs: []netip.Addr{vip4}, Policy: Policy{Mode: OwnerExternal, Backends: bs}}
			}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(g.Close)
		return g
	}
	asPeer := start(nil)
	asBackend := start(map[string][]Backend{peer.String(): {{Service: "web", Name: "web1", Addr: netip.MustParseAddr("192.0.2.2")}}})
	waitFor(t, "backend MAC reported with an external owner", 5*time.Second, func() bool { return len(asBackend.Conflicts()) == 1 })
	// The backend guard saw answers, so the other one had them too.
	if cs := asPeer.Conflicts(); len(cs) != 0 {
		t.Errorf("peer balancer reported with an external owner: %+v", cs)
	}
}
