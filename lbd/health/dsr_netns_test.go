package health

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"github.com/dsrlb/dsrlb/internal/nettest"
	"github.com/dsrlb/dsrlb/shared/config"
)

// dsrLab is a balancer namespace and a backend namespace on a veth
// (nettest.NewPair), prepared as lbd and hostprep leave them: the VIPs on
// the balancer's interface, the VIPs on the backend's lo with
// arp_ignore/arp_announce set.
type dsrLab struct {
	p          nettest.Pair
	vip4, vip6 netip.Addr
	backendMAC net.HardwareAddr
	path       *dsrPath
}

func newDSRLab(t testing.TB) *dsrLab {
	t.Helper()
	nettest.Require(t)
	l := &dsrLab{p: nettest.NewPair(t), vip4: netip.MustParseAddr("198.51.100.10"), vip6: netip.MustParseAddr("2001:db8:1::10")}
	l.p.LB.Run(t, "ip", "addr", "add", "198.51.100.10/32", "dev", "lb0")
	l.p.LB.Run(t, "ip", "addr", "add", "2001:db8:1::10/128", "dev", "lb0", "nodad")
	l.p.Peer.Run(t, "ip", "addr", "add", "198.51.100.10/32", "dev", "lo")
	l.p.Peer.Run(t, "ip", "addr", "add", "2001:db8:1::10/128", "dev", "lo")
	l.p.Peer.Run(t, "sysctl", "-qw", "net.ipv4.conf.all.arp_ignore=1", "net.ipv4.conf.all.arp_announce=2")
	link, err := l.p.Peer.H.LinkByName("peer0")
	if err != nil {
		t.Fatal(err)
	}
	l.backendMAC = link.Attrs().HardwareAddr
	ns := l.p.LB.Handle
	l.path = newDSRPath(DSROptions{Interface: "lb0", Netns: &ns,
		Neighbor: func(a netip.Addr) net.HardwareAddr {
			if a == netip.MustParseAddr("192.0.2.2") || a == netip.MustParseAddr("2001:db8::2") {
				return l.backendMAC
			}
			return nil
		}})
	l.path.setVIPs(map[netip.Addr]bool{l.vip4: true, l.vip6: true})
	t.Cleanup(l.path.close)
	return l
}

// listenIn opens a TCP listener inside ns and serves h on it.
func listenIn(t testing.TB, ns netns.NsHandle, addr string, h http.Handler) {
	t.Helper()
	var ln net.Listener
	err := nettest.Do(ns, func() (err error) {
		ln, err = net.Listen("tcp", addr)
		return err
	})
	if err != nil {
		t.Fatalf("listen on %s in the backend namespace: %v", addr, err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
}

// target is a DSR-path check of backend through vip on the lab's path.
func (l *dsrLab) target(typ config.CheckType, backend, vip netip.Addr, port uint16) Target {
	return Target{Key: "web/b1", Addr: netip.AddrPortFrom(backend, port), VIP: vip, dsr: l.path,
		Check: config.Check{Type: typ, Via: config.ViaVIP, Interval: 2 * time.Second, Timeout: time.Second, Rise: 1, Fall: 1,
			Path: "/healthz", ExpectStatus: 200}}
}

func probeOnce(t *testing.T, tg Target) error {
	t.Helper()
	p, err := newProber(tg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), tg.Check.Timeout)
	defer cancel()
	return p.probe(ctx)
}

// TestDSRPathChecks runs tcp and http checks through the DSR path against
// a real backend namespace, IPv4 and IPv6: up while the service listens
// on the VIP; down with the reason an operator needs when it listens only
// on its own address (RST), when the VIP is gone from lo (no answer) and
// when the backend has no MAC.
func TestDSRPathChecks(t *testing.T) {
	l := newDSRLab(t)
	big := strings.Repeat("x", 64<<10) // several segments, more than one window of ACKs
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "ok from %s to %s", r.RemoteAddr, r.Host)
	})
	mux.HandleFunc("/big", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte(big)) })
	mux.HandleFunc("/down", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusServiceUnavailable) })
	for _, a := range []string{"198.51.100.10:80", "[2001:db8:1::10]:80"} {
		listenIn(t, l.p.Peer.Handle, a, mux)
	}
	// Listening on the backend's own address only: the service a VIP
	// check must catch.
	for _, a := range []string{"192.0.2.2:81", "[2001:db8::2]:81"} {
		listenIn(t, l.p.Peer.Handle, a, mux)
	}
	for _, fam := range []struct {
		name         string
		backend, vip netip.Addr
	}{{"IPv4", netip.MustParseAddr("192.0.2.2"), l.vip4}, {"IPv6", netip.MustParseAddr("2001:db8::2"), l.vip6}} {
		t.Run(fam.name, func(t *testing.T) {
			for _, typ := range []config.CheckType{config.CheckTCP, config.CheckHTTP} {
				if err := probeOnce(t, l.target(typ, fam.backend, fam.vip, 80)); err != nil {
					t.Errorf("%s check through the DSR path of a healthy backend: %v", typ, err)
				}
			}
			big := l.target(config.CheckHTTP, fam.backend, fam.vip, 80)
			big.Check.Path = "/big"
			if err := probeOnce(t, big); err != nil {
				t.Errorf("http check with a 64 KiB answer: %v", err)
			}
			down := l.target(config.CheckHTTP, fam.backend, fam.vip, 80)
			down.Check.Path = "/down"
			if err := probeOnce(t, down); err == nil || !strings.Contains(err.Error(), "status 503") {
				t.Errorf("http check of /down: %v, want status 503", err)
			}
			for _, typ := range []config.CheckType{config.CheckTCP, config.CheckHTTP} {
				err := probeOnce(t, l.target(typ, fam.backend, fam.vip, 81))
				if err == nil || !strings.Contains(err.Error(), "refused by "+fam.backend.String()+" through the DSR path") {
					t.Errorf("%s check of a service listening only on the backend's address: %v, want refused through the DSR path", typ, err)
				}
			}
			nomac := l.target(config.CheckTCP, netip.MustParseAddr(strings.Replace(fam.backend.String(), "2", "3", 1)), fam.vip, 80)
			if err := probeOnce(t, nomac); err == nil || !strings.Contains(err.Error(), "no MAC for") {
				t.Errorf("check of a backend without a MAC: %v, want no MAC", err)
			}
		})
	}
	// Nothing is left in flight, and a finished check left no connection
	// on the backend (each ended with a RST). An http check's connection
	// is closed by net/http's own goroutine, after the check has returned:
	// wait for it, within a deadline.
	deadline := time.Now().Add(5 * time.Second)
	for {
		l.path.mu.Lock()
		inflight := len(l.path.flows)
		l.path.mu.Unlock()
		if inflight == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d DSR-path connections still registered 5 s after the checks", inflight)
		}
		time.Sleep(20 * time.Millisecond)
	}
	waitNoConns(t, l)

	// The VIP leaves the backend's lo: nobody answers, and the reason says
	// what to look at.
	l.p.Peer.Run(t, "ip", "addr", "del", "198.51.100.10/32", "dev", "lo")
	l.p.Peer.Run(t, "ip", "addr", "del", "2001:db8:1::10/128", "dev", "lo")
	for _, tg := range []Target{
		l.target(config.CheckTCP, netip.MustParseAddr("192.0.2.2"), l.vip4, 80),
		l.target(config.CheckHTTP, netip.MustParseAddr("2001:db8::2"), l.vip6, 80),
	} {
		err := probeOnce(t, tg)
		if err == nil || !strings.Contains(err.Error(), "not answered by "+tg.Addr.Addr().String()+" through the DSR path") ||
			!strings.Contains(err.Error(), "is hostprep applied (VIP on lo)?") {
			t.Errorf("%s check with the VIP gone from lo: %v, want not answered ... is hostprep applied", tg.Check.Type, err)
		}
	}
}

// waitNoConns waits until the backend holds no TCP connection to the
// balancer's addresses (what the RSTs must achieve).
func waitNoConns(t *testing.T, l *dsrLab) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		out := l.p.Peer.Run(t, "ss", "-Htn", "state", "all", "( dport >= 61000 )")
		if strings.TrimSpace(out) == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("backend still holds check connections:\n%s", out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestDSRPathManager: a Manager with DSR options checks many backends
// through one shared socket: every target comes up, and the checks of a
// VIP the backend lost go down with the hostprep reason.
func TestDSRPathManager(t *testing.T) {
	l := newDSRLab(t)
	listenIn(t, l.p.Peer.Handle, "198.51.100.10:80", http.NotFoundHandler())
	ns := l.p.LB.Handle
	changes := make(chan string, 1024)
	m := New(context.Background(), Options{
		DSR: DSROptions{Interface: "lb0", Netns: &ns, Neighbor: func(netip.Addr) net.HardwareAddr { return l.backendMAC }},
		OnChange: func(tg Target, s State, reason string) {
			changes <- tg.Key + " " + s.String() + " " + reason
		},
	})
	t.Cleanup(m.Close)
	// 200 targets: the same backend under 200 services, as a scale case
	// for the shared socket and its port table.
	const n = 200
	chk := config.Check{Type: config.CheckTCP, Via: config.ViaVIP, Interval: 500 * time.Millisecond, Timeout: 400 * time.Millisecond, Rise: 1, Fall: 1}
	ts := make([]Target, n)
	for i := range ts {
		ts[i] = Target{Key: Key(fmt.Sprintf("s%d", i), "b1"), Addr: netip.MustParseAddrPort("192.0.2.2:80"), VIP: l.vip4, Check: chk}
	}
	if err := m.Update(ts); err != nil {
		t.Fatal(err)
	}
	waitStates := func(want string, n int) {
		t.Helper()
		seen := map[string]bool{}
		deadline := time.After(20 * time.Second)
		for len(seen) < n {
			select {
			case c := <-changes:
				if strings.Contains(c, want) {
					seen[strings.Fields(c)[0]] = true
				}
			case <-deadline:
				t.Fatalf("%d of %d targets reported %q", len(seen), n, want)
			}
		}
	}
	waitStates(" up ", n)
	l.p.Peer.Run(t, "ip", "addr", "del", "198.51.100.10/32", "dev", "lo")
	waitStates("is hostprep applied (VIP on lo)?", n)
	for _, st := range m.Status() {
		if st.State != Down || st.Last.Err == nil {
			t.Fatalf("%s: state %s, last %v after the VIP left lo", st.Target.Key, st.State, st.Last.Err)
		}
	}
}

// BenchmarkDSRPathCheck measures one check through the DSR path against a
// backend namespace on a veth, from the SYN to the RST: tcp (SYN, SYN-ACK,
// RST) and http (GET /healthz, a short answer). Run as root:
// go test -run '^$' -bench BenchmarkDSRPathCheck -benchtime 2000x ./lbd/health/
func BenchmarkDSRPathCheck(b *testing.B) {
	for _, typ := range []config.CheckType{config.CheckTCP, config.CheckHTTP} {
		b.Run(string(typ), func(b *testing.B) {
			l := newDSRLab(b)
			listenIn(b, l.p.Peer.Handle, "198.51.100.10:80", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				_, _ = w.Write([]byte("ok"))
			}))
			tg := l.target(typ, netip.MustParseAddr("192.0.2.2"), l.vip4, 80)
			p, err := newProber(tg)
			if err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for b.Loop() {
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				err := p.probe(ctx)
				cancel()
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestDSRPathIPv6LinkLocal: a balancer with no global IPv6 address of its
// own on the interface (only the VIP and its link-local address) checks
// IPv6 backends from the link-local address.
func TestDSRPathIPv6LinkLocal(t *testing.T) {
	l := newDSRLab(t)
	l.p.LB.Run(t, "ip", "addr", "del", "2001:db8::1/64", "dev", "lb0")
	listenIn(t, l.p.Peer.Handle, "[2001:db8:1::10]:80", http.NotFoundHandler())
	for _, typ := range []config.CheckType{config.CheckTCP, config.CheckHTTP} {
		tg := l.target(typ, netip.MustParseAddr("2001:db8::2"), l.vip6, 80)
		tg.Check.ExpectStatus = http.StatusNotFound
		if err := probeOnce(t, tg); err != nil {
			t.Errorf("%s check from the link-local address: %v", typ, err)
		}
	}
	l.path.mu.Lock()
	own := l.path.own
	l.path.mu.Unlock()
	if len(own) != 2 || !own[1].Addr().IsLinkLocalUnicast() {
		t.Errorf("own addresses %v, want 192.0.2.1 and the link-local one", own)
	}
}

// TestDSRPathSecondSubnet: the balancer's interface holds two subnets per
// family and the backend is only on the second, with a default route
// through a gateway that does not answer. The check must come from the
// balancer's address on the backend's subnet, which the backend answers
// on the segment; from the first address (the one the kernel lists
// first) its answer would go to the gateway and be lost, which the test
// shows by taking the on-link address away.
func TestDSRPathSecondSubnet(t *testing.T) {
	l := newDSRLab(t)
	// IPv6 lists the newest global address first: re-adding 2001:db8::1
	// after 2001:db8:2::1 keeps the off-link one first in both families.
	l.p.LB.Sh(t,
		"ip addr add 203.0.113.1/24 dev lb0",
		"ip addr add 2001:db8:2::1/64 dev lb0 nodad",
		"ip addr del 2001:db8::1/64 dev lb0",
		"ip addr add 2001:db8::1/64 dev lb0 nodad")
	l.p.Peer.Sh(t,
		"ip addr del 192.0.2.2/24 dev peer0",
		"ip addr del 2001:db8::2/64 dev peer0",
		"ip addr add 203.0.113.2/24 dev peer0",
		"ip addr add 2001:db8:2::2/64 dev peer0 nodad",
		"ip route add default via 203.0.113.254 dev peer0",
		"ip -6 route add default via 2001:db8:2::fe dev peer0")
	for _, a := range []string{"198.51.100.10:80", "[2001:db8:1::10]:80"} {
		listenIn(t, l.p.Peer.Handle, a, http.NotFoundHandler())
	}
	fams := []struct {
		backend, vip, onLink, first netip.Addr
		onLinkPfx                   string
	}{
		{netip.MustParseAddr("203.0.113.2"), l.vip4, netip.MustParseAddr("203.0.113.1"), netip.MustParseAddr("192.0.2.1"), "203.0.113.1/24"},
		{netip.MustParseAddr("2001:db8:2::2"), l.vip6, netip.MustParseAddr("2001:db8:2::1"), netip.MustParseAddr("2001:db8::1"), "2001:db8:2::1/64"},
	}
	target := func(typ config.CheckType, backend, vip netip.Addr) Target {
		tg := l.target(typ, backend, vip, 80)
		tg.MAC = [6]byte(l.backendMAC)
		tg.Check.ExpectStatus = http.StatusNotFound
		return tg
	}
	for _, f := range fams {
		for _, typ := range []config.CheckType{config.CheckTCP, config.CheckHTTP} {
			if err := probeOnce(t, target(typ, f.backend, f.vip)); err != nil {
				t.Errorf("%s check of %s on the second subnet: %v", typ, f.backend, err)
			}
		}
	}
	// The test means something only if the first address of each family
	// (what the checks came from before) is the off-link one.
	l.path.mu.Lock()
	own := l.path.own
	l.path.mu.Unlock()
	for _, f := range fams {
		for _, p := range own {
			if p.Addr().Is4() == f.backend.Is4() {
				if p.Addr() != f.first {
					t.Fatalf("own addresses %v: the first of %s's family is %s, want %s", own, f.backend, p.Addr(), f.first)
				}
				break
			}
		}
	}

	// Without its address on the backend's subnet the balancer checks from
	// the first one, off-link: the answer is lost and the reason says why.
	for _, f := range fams {
		l.p.LB.Run(t, "ip", "addr", "del", f.onLinkPfx, "dev", "lb0")
	}
	l.path.mu.Lock()
	l.path.ownAt = time.Time{} // re-read the addresses now, not in addrRefresh
	l.path.mu.Unlock()
	for _, f := range fams {
		err := probeOnce(t, target(config.CheckTCP, f.backend, f.vip))
		want := "? Or its answer to " + f.first.String() + " goes by its routes: no address of the balancer on lb0 is on " + f.backend.String() + "'s subnet; add one there"
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("check of %s from an off-link address: %v, want %q", f.backend, err, want)
		}
	}
}
