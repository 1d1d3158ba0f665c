package neigh

import (
	"context"
	"errors"
	"github.com/dsrlb/dsrlb/internal/nettest"
	"net/netip"
	"strings"
	"testing"
	"time"
)

const waitLimit = 20 * time.Second // ARP gives up after ~3 s; be generous

func TestOnLink(t *testing.T) {
	nettest.Require(t)
	p := nettest.NewPair(t)
	// A second interface with another subnet (this kernel has no dummy).
	p.LB.Run(t, "ip", "link", "add", "name", "lb1", "type", "veth", "peer", "name", "peer1", "netns", p.Peer.Name)
	p.LB.Run(t, "ip", "addr", "add", "198.51.100.1/24", "dev", "lb1")
	p.LB.Run(t, "ip", "link", "set", "lb1", "up")
	p.LB.Run(t, "ip", "route", "add", "203.0.113.0/24", "via", "192.0.2.2")

	tests := []struct {
		addr string
		want string // "" = on-link
	}{
		{"192.0.2.2", ""},
		{"192.0.2.200", ""}, // on the subnet, whether or not it answers
		{"2001:db8::2", ""},
		{"203.0.113.5", "backend 203.0.113.5 is routed via 192.0.2.2 on lb0: DSR rewrites only the MAC"},
		{"198.51.100.7", "backend 198.51.100.7 leaves by lb1, not lb0"},
		{"192.0.2.1", "is an address of this host"},
	}
	for _, tt := range tests {
		err := OnLinkAt(p.LB.H, "lb0", netip.MustParseAddr(tt.addr))
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("OnLink(%s): %v, want on-link", tt.addr, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want) || !errors.Is(err, ErrNotOnLink)):
			t.Errorf("OnLink(%s): %v, want an ErrNotOnLink containing %q", tt.addr, err, tt.want)
		}
	}
	if err := OnLinkAt(p.LB.H, "nosuch0", netip.MustParseAddr("192.0.2.2")); err == nil {
		t.Error("OnLink on a missing interface succeeded")
	}
}

// events collects OnChange calls. wait consumes the latest event of an
// address that matches, whether it arrived before or during the wait.
type events struct {
	ch   chan Neighbor
	last map[netip.Addr]Neighbor
}

func (e *events) wait(t *testing.T, addr string, ok func(Neighbor) bool, what string) Neighbor {
	t.Helper()
	a := netip.MustParseAddr(addr)
	deadline := time.After(waitLimit)
	for {
		if n, seen := e.last[a]; seen && ok(n) {
			delete(e.last, a)
			return n
		}
		select {
		case n := <-e.ch:
			e.last[n.Addr] = n
		case <-deadline:
			t.Fatalf("no event for %s (%s) within %s; last: %v", addr, what, waitLimit, e.last[a])
		}
	}
}

func macIs(mac string) func(Neighbor) bool {
	return func(n Neighbor) bool { return n.MAC.String() == mac }
}

func mustResolver(t *testing.T, p nettest.Pair) (*Resolver, *events) {
	t.Helper()
	ev := &events{ch: make(chan Neighbor, 100), last: map[netip.Addr]Neighbor{}}
	r, err := New(context.Background(), Options{
		Interface: "lb0", Netns: &p.LB.Handle, Refresh: 500 * time.Millisecond,
		OnChange: func(n Neighbor) { ev.ch <- n },
	})
	if err != nil {
		t.Fatalf("new resolver: %v", err)
	}
	t.Cleanup(r.Close)
	return r, ev
}

func TestResolverFindsMACsAndFailures(t *testing.T) {
	nettest.Require(t)
	p := nettest.NewPair(t)
	p.Peer.Run(t, "ip", "link", "set", "peer0", "address", "02:00:00:00:02:02")
	r, ev := mustResolver(t, p)
	r.SetAddrs([]netip.Addr{
		netip.MustParseAddr("192.0.2.2"),
		netip.MustParseAddr("2001:db8::2"),
		netip.MustParseAddr("192.0.2.99"), // nobody
	})
	// Nothing sends to these addresses: only the Resolver's own
	// resolution can fill the table.
	for _, a := range []string{"192.0.2.2", "2001:db8::2"} {
		ev.wait(t, a, macIs("02:00:00:00:02:02"), "the peer's MAC")
	}
	ev.wait(t, "192.0.2.99", func(n Neighbor) bool { return n.MAC == nil && n.StateName() == "FAILED" }, "FAILED, no MAC")
	if n, ok := r.Lookup(netip.MustParseAddr("192.0.2.2")); !ok || n.MAC.String() != "02:00:00:00:02:02" {
		t.Errorf("Lookup(192.0.2.2) = %v %v", n, ok)
	}
	if _, ok := r.Lookup(netip.MustParseAddr("192.0.2.3")); ok {
		t.Error("Lookup of an unwatched address succeeded")
	}
}

func TestResolverFollowsMACChange(t *testing.T) {
	nettest.Require(t)
	p := nettest.NewPair(t)
	p.Peer.Run(t, "ip", "link", "set", "peer0", "address", "02:00:00:00:02:02")
	r, ev := mustResolver(t, p)
	r.SetAddrs([]netip.Addr{netip.MustParseAddr("192.0.2.2")})
	ev.wait(t, "192.0.2.2", macIs("02:00:00:00:02:02"), "first MAC")

	// The backend's NIC is replaced: it announces itself when it next
	// talks to the balancer (its ARP request carries its new MAC).
	p.Peer.Run(t, "ip", "link", "set", "peer0", "address", "02:00:00:00:02:03")
	p.Peer.Run(t, "ip", "neigh", "flush", "dev", "peer0")
	p.Peer.Run(t, "ping", "-c", "1", "-W", "2", "192.0.2.1")
	ev.wait(t, "192.0.2.2", macIs("02:00:00:00:02:03"), "new MAC")

	// An operator deletes the entry (`ip neigh del` reports it FAILED
	// first): the Resolver resolves it again and reports the MAC back.
	p.LB.Run(t, "ip", "neigh", "del", "192.0.2.2", "dev", "lb0")
	ev.wait(t, "192.0.2.2", macIs("02:00:00:00:02:03"), "MAC after deletion")
	if n, _ := r.Lookup(netip.MustParseAddr("192.0.2.2")); n.MAC.String() != "02:00:00:00:02:03" {
		t.Errorf("after re-resolution: %v", n)
	}
}

func TestSetAddrsSeesResolvedEntriesAtOnce(t *testing.T) {
	nettest.Require(t)
	p := nettest.NewPair(t)
	p.Peer.Run(t, "ip", "link", "set", "peer0", "address", "02:00:00:00:02:02")
	p.LB.Run(t, "ping", "-c", "1", "-W", "2", "192.0.2.2") // the kernel resolves it first
	r, ev := mustResolver(t, p)
	a := netip.MustParseAddr("192.0.2.2")
	r.SetAddrs([]netip.Addr{a})
	if n, ok := r.Lookup(a); !ok || n.MAC.String() != "02:00:00:00:02:02" {
		t.Errorf("Lookup right after SetAddrs = %v %v, want the MAC the kernel has", n, ok)
	}
	ev.wait(t, "192.0.2.2", macIs("02:00:00:00:02:02"), "report of the known MAC")
}

func TestResolverCloseEndsGoroutine(t *testing.T) {
	nettest.Require(t)
	p := nettest.NewPair(t)
	r, _ := mustResolver(t, p)
	r.SetAddrs([]netip.Addr{netip.MustParseAddr("192.0.2.2")})
	done := make(chan struct{})
	go func() { r.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(waitLimit):
		t.Fatal("Close did not return")
	}
}
