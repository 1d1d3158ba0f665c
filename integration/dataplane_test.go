package integration

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/dsrlb/dsrlb/integration/topo"
	"github.com/dsrlb/dsrlb/lbd/statusjson"
)

// dpStatus is `lbd status --json` (lbd/statusjson's schema).
type dpStatus struct{ statusjson.Status }

func readStatus(t *testing.T, e *lbEnv) dpStatus {
	t.Helper()
	return dpStatus{lbdStatus(t, e.tp, e.tp.Balancer)}
}

// flows sums active and inactive flows over service's backends.
func (st dpStatus) flows(service string) (active, inactive uint64) {
	for _, s := range st.Services {
		if s.Name == service {
			for _, b := range s.Backends {
				active += b.ActiveFlows
				inactive += b.InactiveFlows
			}
		}
	}
	return
}

// waitFlows polls lbd status until ok holds for service's flow counts, or
// fails after d.
func waitFlows(t *testing.T, e *lbEnv, service string, d time.Duration, what string, ok func(active, inactive uint64) bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		a, i := readStatus(t, e).flows(service)
		if ok(a, i) {
			t.Logf("%s: active %d, inactive %d", what, a, i)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v (active %d, inactive %d)", what, d, a, i)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestClosedConnectionsLeaveActive: the client's FIN ends a connection's
// "active" count at once (as IPVS-DR from the client's half): 30 open
// keep-alive connections count 30 active; once the client closes them,
// active falls to 0 within seconds and they show as inactive (closing).
func TestClosedConnectionsLeaveActive(t *testing.T) {
	s := begin(t, "closed-connections-leave-active")
	e := startLB(t, s, topo.Options{}, func(tp *topo.Topology) topo.Config { return web(tp, "") })
	const n = 30
	ks := openKeepAlives(t, e.tp.Client, topo.URL(topo.VIP4, "/"), n)
	waitFlows(t, e, "web", 5*time.Second, fmt.Sprintf("%d open connections", n),
		func(a, _ uint64) bool { return a == n })
	for _, k := range ks {
		k.c.CloseIdleConnections()
	}
	waitFlows(t, e, "web", 5*time.Second, "after the client closed them",
		func(a, i uint64) bool { return a == 0 && i >= n })
	if out, err := e.tp.Lbd(context.Background(), "status"); err != nil || !strings.Contains(out, "INACTIVE") {
		t.Fatalf("lbd status shows no INACTIVE column: %v\n%s", err, out)
	}
}

// askBig sends datagrams of the given sizes on one new socket (one flow;
// the client's stack fragments those above the MTU) and returns the
// backend that answered each.
func askBig(ctx context.Context, h *topo.Host, to netip.AddrPort, sizes []int) ([]string, error) {
	c, err := h.NS.DialContext(ctx, "udp", to.String())
	if err != nil {
		return nil, err
	}
	defer c.Close()
	var got []string
	buf := make([]byte, 512)
	for _, size := range sizes {
		payload := make([]byte, size)
		var a topo.Answer
		for try := 0; try < 5; try++ { // a lost fragment loses the datagram: resend
			if _, err := c.Write(payload); err != nil {
				return nil, err
			}
			_ = c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
			n, err := c.Read(buf)
			if err == nil {
				a = topo.ParseAnswer(string(buf[:n]))
				break
			}
		}
		if a.Backend == "" {
			return nil, fmt.Errorf("no answer to a %d-byte datagram to %s", size, to)
		}
		got = append(got, a.Backend)
	}
	return got, nil
}

// TestFragmentedUDPToPortService: datagrams larger than the MTU, IPv4 and
// IPv6, to UDP services with an explicit port are answered, each by one
// backend (every fragment followed the first), and the small datagrams of
// the same flow reach that same backend.
func TestFragmentedUDPToPortService(t *testing.T) {
	s := begin(t, "fragmented-udp-port-service")
	e := startLB(t, s, topo.Options{}, func(tp *topo.Topology) topo.Config {
		var svcs []topo.Service
		for _, vip := range []netip.Addr{topo.VIP4, topo.VIP6} {
			svc := tp.WebService("echo"+map[bool]string{true: "4", false: "6"}[vip.Is4()], vip, "", tp.Backends...)
			svc.Protocol, svc.Ports, svc.Check = "udp", []int{topo.UDPPort}, topo.Check{Type: "none"}
			svcs = append(svcs, svc)
		}
		return topo.Config{Services: svcs}
	})
	ctx := ctxFor(t, 90*time.Second)
	for _, vip := range []netip.Addr{topo.VIP4, topo.VIP6} {
		to := netip.AddrPortFrom(vip, topo.UDPPort)
		for deadline := time.Now().Add(20 * time.Second); ; { // ready (bounded)
			if a := e.tp.Client.UDPAsk(ctx, to, 500*time.Millisecond); a.Err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("UDP service %s not answering 20s after lbd started", to)
			}
		}
	}
	before := readStatus(t, e).Verdicts["redirect_fragment"]
	for _, vip := range []netip.Addr{topo.VIP4, topo.VIP6} {
		to := netip.AddrPortFrom(vip, topo.UDPPort)
		tally := map[string]int{}
		for i := 0; i < 30; i++ {
			// small, large (3 fragments), small again: one flow, one backend.
			got, err := askBig(ctx, e.tp.Client, to, []int{100, 4000, 100})
			if err != nil {
				t.Fatalf("flow %d to %s: %v", i, to, err)
			}
			if got[0] != got[1] || got[1] != got[2] {
				t.Fatalf("flow %d to %s: small, fragmented, small datagrams answered by %v: want one backend", i, to, got)
			}
			tally[got[1]]++
		}
		t.Logf("%s: 30 flows with a 4000-byte datagram each: %s", to, topo.FormatTally(tally))
		if len(tally) < 2 {
			t.Fatalf("30 flows to %s all reached %s: not balanced", to, topo.FormatTally(tally))
		}
	}
	st := readStatus(t, e)
	got := st.Verdicts["redirect_fragment"] - before
	t.Logf("fragments redirected: %d; later fragments passed (first not seen): %d", got, st.Verdicts["pass_fragment"])
	if got < 60*2 { // 60 fragmented datagrams of at least 2 fragments each
		t.Fatalf("only %d fragments redirected for 120 fragmented datagrams", got)
	}
}

// TestEstablishedSurviveSYNFlood: 12 keep-alive connections, idle between
// requests, stay on their backends through a flood from spoofed sources in
// 203.0.113.0/24 (bounded: 300,000 frames paced over about 15 s, 40 s at
// most) while a backend joins the service (b3's weight goes from 0 to 1:
// the Maglev table changes). The first half are SYNs: lbd tracks a maglev
// flow from its handshake's ACK, so they must insert nothing. The second
// half are ACKs of unknown flows, which are tracked (their consistent
// choice) and fill the 4,096-entry table many times over: the kernel LRU
// must keep the entries in use. Inserted and evicted counts come from lbd
// status.
func TestEstablishedSurviveSYNFlood(t *testing.T) {
	s := begin(t, "established-survive-syn-flood")
	e := startLB(t, s, topo.Options{}, func(tp *topo.Topology) topo.Config {
		c := web(tp, "")
		c.Services[0].Servers[2].Weight = 0 // b3 joins during the flood
		c.ConntrackSize = 4096
		return c
	})
	url := topo.URL(topo.VIP4, "/")
	ks := openKeepAlives(t, e.tp.Client, url, 12)
	poke := func(when string) {
		t.Helper()
		for i, k := range ks {
			if a := topo.Get(context.Background(), k.c, url); a.Err != nil || a.Backend != k.backend {
				t.Fatalf("%s: connection %d (on %s) got %+v", when, i, k.backend, a)
			}
		}
	}
	st0 := readStatus(t, e)

	const frames = 300_000
	// synsDone: the SYNs are sent; acks: their counts are read, true: send
	// the ACKs (false: the test failed, stop).
	synsDone, acks, done := make(chan struct{}), make(chan bool, 1), make(chan struct{})
	defer func() {
		acks <- false // buffered: never blocks, read only if the sender still waits
		<-done
	}()
	var sent [2]int
	var sendErr [2]error
	go func() {
		defer close(done)
		rng := rand.New(rand.NewPCG(16, 16))
		dst := netip.AddrPortFrom(topo.VIP4, topo.HTTPPort)
		start := time.Now()
		for half, flags := range []byte{topo.FlagSYN, topo.FlagACK} {
			sent[half], sendErr[half] = topo.SendFrames(e.tp.Client, e.tp.Client.Link, frames/2, 20*time.Second, func(i int, buf []byte) []byte {
				if i%1000 == 0 { // pace at 20,000 frames/s, so the flood spans the change
					time.Sleep(time.Until(start.Add(time.Duration(half*frames/2+i) * time.Second / 20000)))
				}
				src := netip.AddrPortFrom(netip.AddrFrom4([4]byte{203, 0, 113, byte(rng.IntN(256))}), uint16(1024+rng.IntN(64000)))
				return topo.TCP4(buf, e.tp.Client.MAC, e.tp.Balancer.MAC, src, dst, flags)
			})
			if half == 0 {
				close(synsDone)
				if !<-acks {
					return
				}
				start = time.Now().Add(-frames / 2 * time.Second / 20000)
			}
		}
	}()
	// During the flood: idle pauses, then requests; a backend joins.
	time.Sleep(2 * time.Second)
	poke("2s into the SYN flood")
	e.cfg.Services[0].Servers[2].Weight = 1
	if _, err := e.tp.WriteConfig(e.cfg); err != nil {
		t.Fatal(err)
	}
	if out, err := e.tp.Lbd(context.Background(), "reload"); err != nil {
		t.Fatalf("lbd reload: %v\n%s", err, out)
	}
	<-synsDone
	poke("after the SYN flood, b3 joined")
	st1 := readStatus(t, e)
	acks <- true
	for i := 0; i < 2; i++ {
		time.Sleep(3 * time.Second)
		poke(fmt.Sprintf("%ds into the ACK flood", 3+3*i))
	}
	<-done
	for _, err := range sendErr {
		if err != nil {
			t.Fatal(err)
		}
	}
	poke("after the flood")
	st := readStatus(t, e)
	synIns, synEv := st1.Conntrack.Inserted-st0.Conntrack.Inserted, st1.Conntrack.Evicted-st0.Conntrack.Evicted
	ins, ev := st.Conntrack.Inserted-st1.Conntrack.Inserted, st.Conntrack.Evicted-st1.Conntrack.Evicted
	t.Logf("spoofed SYNs sent: %d (inserted %d, evicted %d); spoofed ACKs sent: %d (inserted %d, evicted %d); table entries %d of 4096",
		sent[0], synIns, synEv, sent[1], ins, ev, st.Conntrack.Entries)
	s.note = fmt.Sprintf("%d SYNs: %d inserted; %d ACKs: %d inserted, %d evicted; 12/12 connections intact", sent[0], synIns, sent[1], ins, ev)
	if synIns > 100 || synEv > 100 {
		t.Fatalf("%d spoofed SYNs inserted %d entries and evicted %d: a maglev SYN must leave no entry", sent[0], synIns, synEv)
	}
	if ev < 4096 {
		t.Fatalf("the ACK flood evicted only %d entries: the table was never under pressure, the test proves nothing", ev)
	}
}
