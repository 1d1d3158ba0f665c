package vip

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/dsrlb/dsrlb/internal/netorder"
	"github.com/dsrlb/dsrlb/internal/nettest"
)

var (
	vip4  = netip.MustParseAddr("192.0.2.10")
	vip6  = netip.MustParseAddr("2001:db8::10")
	lbMAC = "02:00:00:00:01:01"
)

func mustBalancer(t *testing.T) nettest.Pair {
	t.Helper()
	p := nettest.NewPair(t)
	p.LB.Run(t, "ip", "link", "set", "lb0", "address", lbMAC)
	return p
}

func mustOwned(t *testing.T, ns Namespace, want ...netip.Addr) {
	t.Helper()
	got, err := ns.Owned("lb0")
	if err != nil {
		t.Fatalf("owned: %v", err)
	}
	slices.SortFunc(want, netip.Addr.Compare)
	if !slices.Equal(got, want) {
		t.Fatalf("owned %v, want %v", got, want)
	}
}

func TestTakeReleaseOwned(t *testing.T) {
	nettest.Require(t)
	p := mustBalancer(t)
	ns := In(p.LB.Handle)
	// Addresses lbd must never claim nor remove: an unrelated one, and a
	// VIP an operator put there by hand.
	p.LB.Run(t, "ip", "addr", "add", "192.0.2.50/32", "dev", "lb0")
	p.LB.Run(t, "ip", "addr", "add", "192.0.2.60/32", "dev", "lb0")
	byHand := netip.MustParseAddr("192.0.2.60")

	for i := range 2 { // the second Take changes nothing
		if err := ns.Take("lb0", []netip.Addr{vip4, vip6, byHand}, nil); err != nil {
			t.Fatalf("take #%d: %v", i+1, err)
		}
		mustOwned(t, ns, vip4, vip6)
	}
	out := p.LB.Run(t, "ip", "addr", "show", "dev", "lb0")
	for _, want := range []string{"192.0.2.10/32", "2001:db8::10/128", "192.0.2.50/32", "192.0.2.60/32"} {
		if !strings.Contains(out, want) {
			t.Errorf("ip addr show lacks %s:\n%s", want, out)
		}
	}
	// Operators see which IPv4 addresses are lbd's by their label.
	if !strings.Contains(out, "192.0.2.10/32 scope global lb0:lbd") || strings.Contains(out, "192.0.2.50/32 scope global lb0:lbd") {
		t.Errorf("want the label lb0:lbd on lbd's IPv4 VIP only:\n%s", out)
	}
	if strings.Contains(out, "2001:db8::10/128") && strings.Contains(out, "tentative") {
		t.Errorf("IPv6 VIP is tentative (DAD not disabled):\n%s", out)
	}

	for i := range 2 {
		err := ns.Release("lb0", []netip.Addr{vip4, vip6, byHand, netip.MustParseAddr("192.0.2.50")}, nil)
		if err != nil {
			t.Fatalf("release #%d: %v", i+1, err)
		}
		mustOwned(t, ns)
	}
	out = p.LB.Run(t, "ip", "addr", "show", "dev", "lb0")
	for _, want := range []string{"192.0.2.50/32", "192.0.2.60/32"} {
		if !strings.Contains(out, want) {
			t.Errorf("Release removed %s, which lbd did not add:\n%s", want, out)
		}
	}
	if strings.Contains(out, "192.0.2.10/") || strings.Contains(out, "2001:db8::10/") {
		t.Errorf("VIPs still present after Release:\n%s", out)
	}
}

func TestTakeMissingInterface(t *testing.T) {
	nettest.Require(t)
	p := mustBalancer(t)
	err := In(p.LB.Handle).Take("nosuch0", []netip.Addr{vip4}, nil)
	if err == nil || !strings.Contains(err.Error(), "find balancer interface nosuch0") {
		t.Errorf("take on a missing interface: %v", err)
	}
}

// capture reads every frame arriving on the peer's interface.
type capture struct {
	fd     int
	frames chan []byte
}

func mustCapture(t *testing.T, p nettest.Pair) *capture {
	t.Helper()
	c := &capture{frames: make(chan []byte, 1000)}
	err := In(p.Peer.Handle).do(func() error {
		ifi, err := net.InterfaceByName("peer0")
		if err != nil {
			return err
		}
		c.fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(netorder.Htons(unix.ETH_P_ALL)))
		if err != nil {
			return err
		}
		return unix.Bind(c.fd, &unix.SockaddrLinklayer{Protocol: netorder.Htons(unix.ETH_P_ALL), Ifindex: ifi.Index})
	})
	if err != nil {
		t.Fatalf("open capture in peer: %v", err)
	}
	tv := unix.NsecToTimeval(int64(100 * time.Millisecond))
	if err := unix.SetsockoptTimeval(c.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			select {
			case <-stop:
				return
			default:
			}
			n, _, err := unix.Recvfrom(c.fd, buf, 0)
			if err == nil {
				c.frames <- bytes.Clone(buf[:n])
			}
		}
	}()
	t.Cleanup(func() {
		close(stop)
		<-done
		_ = unix.Close(c.fd)
	})
	return c
}

// collect gathers frames until each filter has matched n of them or time
// runs out, and returns the matches of each filter.
func (c *capture) collect(n int, filters ...func([]byte) bool) [][][]byte {
	out := make([][][]byte, len(filters))
	done := func() bool {
		for _, m := range out {
			if len(m) < n {
				return false
			}
		}
		return true
	}
	deadline := time.After(10 * time.Second)
	for !done() {
		select {
		case f := <-c.frames:
			for i, keep := range filters {
				if keep(f) {
					out[i] = append(out[i], f)
				}
			}
		case <-deadline:
			return out
		}
	}
	return out
}

func isARP(f []byte) bool { return len(f) >= 42 && binary.BigEndian.Uint16(f[12:]) == unix.ETH_P_ARP }
func isNA(f []byte) bool {
	return len(f) >= 86 && binary.BigEndian.Uint16(f[12:]) == unix.ETH_P_IPV6 && f[20] == unix.IPPROTO_ICMPV6 && f[54] == 136
}

func TestTakeAnnounces(t *testing.T) {
	nettest.Require(t)
	p := mustBalancer(t)
	// The peer believes the VIPs are elsewhere (a previous balancer).
	p.Peer.Run(t, "ip", "neigh", "replace", vip4.String(), "lladdr", "02:00:00:00:09:09", "dev", "peer0", "nud", "stale")
	p.Peer.Run(t, "ip", "neigh", "replace", vip6.String(), "lladdr", "02:00:00:00:09:09", "dev", "peer0", "nud", "stale")
	c := mustCapture(t, p)

	if err := In(p.LB.Handle).Take("lb0", []netip.Addr{vip4, vip6}, nil); err != nil {
		t.Fatalf("take: %v", err)
	}
	mac, _ := net.ParseMAC(lbMAC)
	v4, v6 := vip4.As4(), vip6.As16()

	got := c.collect(AnnounceCount,
		func(f []byte) bool { return isARP(f) && bytes.Equal(f[28:32], v4[:]) },
		func(f []byte) bool { return isNA(f) && bytes.Equal(f[62:78], v6[:]) })
	garps, nas := got[0], got[1]
	if len(garps) != AnnounceCount {
		t.Fatalf("saw %d gratuitous ARPs, want %d", len(garps), AnnounceCount)
	}
	f := garps[0]
	checks := []struct {
		what      string
		got, want []byte
	}{
		{"eth dst", f[0:6], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}},
		{"eth src", f[6:12], mac},
		{"htype/ptype/hlen/plen/op", f[14:22], []byte{0, 1, 8, 0, 6, 4, 0, 1}},
		{"sender MAC", f[22:28], mac},
		{"sender IP", f[28:32], v4[:]},
		{"target IP", f[38:42], v4[:]},
	}
	if len(nas) != AnnounceCount {
		t.Fatalf("saw %d unsolicited NAs, want %d", len(nas), AnnounceCount)
	}
	g := nas[0]
	allNodes := netip.MustParseAddr("ff02::1").As16()
	checks = append(checks, []struct {
		what      string
		got, want []byte
	}{
		{"NA eth dst", g[0:6], []byte{0x33, 0x33, 0, 0, 0, 1}},
		{"NA eth src", g[6:12], mac},
		{"NA hop limit", g[21:22], []byte{255}},
		{"NA IPv6 src", g[22:38], v6[:]},
		{"NA IPv6 dst", g[38:54], allNodes[:]},
		{"NA type/code", g[54:56], []byte{136, 0}},
		{"NA flags (Override only)", g[58:62], []byte{0x20, 0, 0, 0}},
		{"NA option TLLA", g[78:80], []byte{2, 1}},
		{"NA option MAC", g[80:86], mac},
	}...)
	for _, c := range checks {
		if !bytes.Equal(c.got, c.want) {
			t.Errorf("%s: % x, want % x", c.what, c.got, c.want)
		}
	}

	// The peer's kernel accepted them (so the checksum is right too):
	// its entries now point at the balancer.
	for _, v := range []netip.Addr{vip4, vip6} {
		waitNeigh(t, p.Peer, v, lbMAC)
	}
}

func waitNeigh(t *testing.T, ns *nettest.NS, a netip.Addr, mac string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		out := ns.Run(t, "ip", "neigh", "show", a.String(), "dev", "peer0")
		if strings.Contains(out, mac) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("peer's entry for %s: %q, want lladdr %s", a, out, mac)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestTakenVIPAnswersARPAndND(t *testing.T) {
	nettest.Require(t)
	p := mustBalancer(t)
	if err := In(p.LB.Handle).Take("lb0", []netip.Addr{vip4, vip6}, nil); err != nil {
		t.Fatalf("take: %v", err)
	}
	p.Peer.Run(t, "ip", "neigh", "flush", "dev", "peer0")
	p.Peer.Run(t, "ping", "-c", "1", "-W", "2", vip4.String())
	p.Peer.Run(t, "ping", "-6", "-c", "1", "-W", "2", vip6.String())
	waitNeigh(t, p.Peer, vip4, lbMAC)
	waitNeigh(t, p.Peer, vip6, lbMAC)
}

func TestFrameChecksum(t *testing.T) {
	mac := net.HardwareAddr{2, 0, 0, 0, 1, 1}
	f := unsolicitedNA(mac, vip6)
	// Summing the message with its checksum in place gives 0xffff, i.e. a
	// recomputation over it yields 0.
	src, dst := vip6.As16(), netip.MustParseAddr("ff02::1").As16()
	if got := checksum6(src, dst, f[54:]); got != 0 {
		t.Errorf("checksum over the finished NA = %#04x, want 0", got)
	}
	if len(garp(mac, vip4)) != 42 || len(f) != 86 {
		t.Errorf("frame lengths %d, %d; want 42, 86", len(garp(mac, vip4)), len(f))
	}
}

// TestPreparedSplit: Split parts the missing VIPs and their conflicts,
// nothing lost or doubled.
func TestPreparedSplit(t *testing.T) {
	v1, v2, v3 := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2"), netip.MustParseAddr("2001:db8::3")
	p := Prepared{ifname: "eth0", missing: []netip.Addr{v1, v2, v3}, conflicts: []Conflict{{VIP: v2}, {VIP: v3}}}
	a, b := p.Split(func(v netip.Addr) bool { return v == v2 })
	if !slices.Equal(a.Missing(), []netip.Addr{v2}) || len(a.conflicts) != 1 || a.conflicts[0].VIP != v2 || a.ifname != "eth0" {
		t.Errorf("first half %+v, want %v missing and its conflict", a, v2)
	}
	if !slices.Equal(b.Missing(), []netip.Addr{v1, v3}) || len(b.conflicts) != 1 || b.conflicts[0].VIP != v3 || b.ifname != "eth0" {
		t.Errorf("second half %+v, want %v and %v missing, %v's conflict", b, v1, v3, v3)
	}
}
