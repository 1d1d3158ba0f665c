package integration

import (
	"context"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dsrlb/dsrlb/integration/topo"
)

// needTools skips (outside CI) or fails (CI=true) when a program the
// scenario drives is missing.
func (s *scenario) needTools(names ...string) {
	s.t.Helper()
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			why := n + " not found (scripts/setup-debian.sh installs it)"
			s.skip("%s", why)
		}
	}
}

// VIP of the scenario's second service, which loses its only backend.
var soloVIP = netip.MustParseAddr("192.0.2.20")

// ecmpEnv is two balancers announcing the VIPs over BGP to a BIRD router
// that spreads the client's flows over them by ECMP (L4 hash).
type ecmpEnv struct {
	t    *testing.T
	tp   *topo.Topology
	cfg  topo.Config
	lbds map[string]*topo.Proc // by balancer role
}

func ecmpConfig(tp *topo.Topology) topo.Config {
	web := tp.WebService("web", topo.VIP4, "maglev", tp.Backends...)
	solo := tp.WebService("solo", soloVIP, "maglev", tp.Backends[2])
	return topo.Config{
		Services: []topo.Service{web, solo},
		BGP: &topo.BGP{ASN: topo.BalancerASN, WithdrawWait: 2 * time.Second, Peers: []topo.BGPPeer{
			{Address: tp.Router.IPv4, ASN: topo.RouterASN, HoldTime: 3 * time.Second},
		}},
	}
}

func (e *ecmpEnv) startLbd(lb *topo.Host) {
	e.t.Helper()
	p, err := e.tp.StartLbdOn(lb)
	if err != nil {
		e.t.Fatal(err)
	}
	logOnFailure(e.t, p)
	e.lbds[lb.Role] = p
	if err := p.WaitOutput(context.Background(), "lbd ready", 20*time.Second); err != nil {
		e.t.Fatal(err)
	}
}

func startECMP(t *testing.T, s *scenario) *ecmpEnv {
	t.Helper()
	s.needRoot()
	s.needTools("bird", "birdc", "nsenter")
	tp := mustTopology(t, topo.Options{Routed: true, Balancers: 2})
	e := &ecmpEnv{t: t, tp: tp, cfg: ecmpConfig(tp), lbds: map[string]*topo.Proc{}}
	ctx := ctxFor(t, 60*time.Second)
	if _, err := tp.WriteConfig(e.cfg); err != nil {
		t.Fatal(err)
	}
	if out, err := tp.Lbd(ctx, "validate"); err != nil {
		t.Fatalf("harness wrote a configuration lbd refuses:\n%s\n%s", tp.Render(e.cfg), out)
	}
	serveBackends(t, ctx, tp)
	bird, err := tp.StartBird(ctx, 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	logOnFailure(t, bird)
	for _, lb := range tp.Balancers {
		e.startLbd(lb)
	}
	for _, vip := range []netip.Addr{topo.VIP4, soloVIP} {
		if err := tp.WaitNextHops(ctx, vip, tp.Balancers, 20*time.Second); err != nil {
			out, _ := tp.Birdc(ctx, "show", "protocols", "all")
			t.Fatalf("%v\n%s", err, out)
		}
	}
	client := tp.Client.HTTPClient(false, netip.Addr{})
	if err := topo.WaitServing(ctx, client, topo.URL(topo.VIP4, "/"), []string{"b1", "b2", "b3"}, 20*time.Second); err != nil {
		t.Fatalf("VIP not served through the balancers: %v", err)
	}
	return e
}

// newFlows is the new-flow counter of service web in lb's pinned data
// plane (lbd status --json reads the maps, lbd running or not).
func (e *ecmpEnv) newFlows(lb *topo.Host) uint64 {
	e.t.Helper()
	return serviceCounters(e.t, e.tp, lb, "web").NewFlows
}

// poker sends a request on every long-lived connection every 100ms and
// records any that fails or reaches another backend. Every check waits for
// rounds that began after it was called, so a phase with no request cannot
// pass.
type poker struct {
	ks     []keepAlive
	url    string
	mu     sync.Mutex
	broken []string
	rounds int           // rounds completed
	tick   chan struct{} // closed and replaced when a round completes
	stop   chan struct{}
	done   chan struct{}
	once   sync.Once
}

func startPoking(ks []keepAlive, url string) *poker {
	p := &poker{ks: ks, url: url, tick: make(chan struct{}), stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		for {
			broken := p.round()
			p.mu.Lock()
			p.broken = append(p.broken, broken...)
			p.rounds++
			close(p.tick)
			p.tick = make(chan struct{})
			p.mu.Unlock()
			select {
			case <-p.stop:
				return
			case <-time.After(100 * time.Millisecond): // pacing: a round every 100ms
			}
		}
	}()
	return p
}

// round sends one request on every connection at once and describes the
// ones that failed or reached another backend.
func (p *poker) round() []string {
	var mu sync.Mutex
	var broken []string
	var wg sync.WaitGroup
	for i, k := range p.ks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			if a := topo.Get(ctx, k.c, p.url); a.Err != nil || a.Backend != k.backend {
				mu.Lock()
				broken = append(broken, time.Now().Format("15:04:05.000")+" conn "+strconv.Itoa(i)+" on "+k.backend+": "+describe(a))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return broken
}

// check waits until n rounds that began after the call have completed
// (a round takes at most the 3s request timeout plus the pacing), then
// fails the test if any request so far failed.
func (p *poker) check(t *testing.T, when string, n int) {
	t.Helper()
	p.mu.Lock()
	want := p.rounds + 1 + n // the round under way may have begun before the call
	p.mu.Unlock()
	deadline := time.After(time.Duration(n+1) * 4 * time.Second)
	for {
		p.mu.Lock()
		got, tick := p.rounds, p.tick
		p.mu.Unlock()
		if got >= want {
			break
		}
		select {
		case <-tick:
		case <-p.done:
			t.Fatalf("%s: the poker stopped after %d rounds, before %d more", when, got, n)
		case <-deadline:
			t.Fatalf("%s: only %d of %d poking rounds completed within %v", when, got, want, time.Duration(n+1)*4*time.Second)
		}
	}
	p.failed(t, when)
}

func (p *poker) failed(t *testing.T, when string) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.broken) > 0 {
		t.Fatalf("%s: %d failed requests on long-lived connections, first: %s", when, len(p.broken), strings.Join(p.broken[:min(5, len(p.broken))], "; "))
	}
}

// halt ends the poking loop (deferred: also on failure).
func (p *poker) halt() {
	p.once.Do(func() { close(p.stop) })
	<-p.done
}

// finish stops the loop, then sends a last round whose every request must
// reach its backend, and returns the rounds done.
func (p *poker) finish(t *testing.T) int {
	t.Helper()
	p.halt()
	if broken := p.round(); len(broken) > 0 {
		t.Fatalf("final round: %d of %d long-lived connections failed, first: %s", len(broken), len(p.ks), strings.Join(broken[:min(5, len(broken))], "; "))
	}
	p.failed(t, "at the end")
	return p.rounds + 1
}

func describe(a topo.Answer) string {
	if a.Err != nil {
		return a.Err.Error()
	}
	return "answered by " + a.Backend
}

// TestECMPBalancerFailover: two balancers behind a BIRD router doing ECMP
// with L4 hashing; many long-lived connections spread over both. Killing
// one lbd (SIGKILL) drops its BGP session, BIRD withdraws its routes, and
// every connection it carried continues through the other balancer to the
// same backend (identical Maglev tables). Then: the balancer rejoins; a
// service that loses its backends withdraws its VIP; a gracefully stopped
// lbd withdraws first, while still forwarding.
func TestECMPBalancerFailover(t *testing.T) {
	s := begin(t, "ecmp-bgp-balancer-failover")
	e := startECMP(t, s)
	tp := e.tp
	lb1, lb2 := tp.Balancers[0], tp.Balancers[1]
	url := topo.URL(topo.VIP4, "/")
	ctx := ctxFor(t, 3*time.Minute)

	before1, before2 := e.newFlows(lb1), e.newFlows(lb2)
	const n = 40
	ks := openKeepAlives(t, tp.Client, url, n)
	via1, via2 := e.newFlows(lb1)-before1, e.newFlows(lb2)-before2
	t.Logf("%d long-lived connections: %d new flows through %s, %d through %s", n, via1, lb1.Role, via2, lb2.Role)
	if via1 == 0 || via2 == 0 {
		t.Fatalf("ECMP did not spread the connections over both balancers (%s %d, %s %d)", lb1.Role, via1, lb2.Role, via2)
	}
	p := startPoking(ks, url)
	defer p.halt()

	// 1. Kill lbd on lb (SIGKILL: no shutdown code runs).
	killed := time.Now()
	e.lbds[lb1.Role].Kill()
	if err := tp.WaitNextHops(ctx, topo.VIP4, []*topo.Host{lb2}, 3*time.Second+3*time.Second); err != nil {
		t.Fatal(err)
	}
	t.Logf("%s killed: route to %s through %s only after %v", lb1.Role, topo.VIP4, lb2.Role, time.Since(killed).Round(time.Millisecond))
	p.check(t, "after "+lb1.Role+"'s lbd was killed", 5) // through lb2 alone
	if out, err := tp.LbdOn(ctx, lb1, "status"); err != nil || !strings.Contains(out, "is gone") {
		t.Errorf("lbd status on %s after the kill should say lbd is gone: %v\n%s", lb1.Role, err, out)
	}

	// 2. It comes back: adopts its data plane, peers again, rejoins ECMP.
	e.startLbd(lb1)
	if err := tp.WaitNextHops(ctx, topo.VIP4, tp.Balancers, 15*time.Second); err != nil {
		t.Fatal(err)
	}
	p.check(t, "after "+lb1.Role+" rejoined", 5)
	out, err := tp.LbdOn(ctx, lb1, "status")
	if err != nil || !strings.Contains(out, "established") || !strings.Contains(out, "announced VIPs: "+topo.VIP4.String()) {
		t.Errorf("lbd status on %s should show the session established and the VIPs announced: %v\n%s", lb1.Role, err, out)
	}
	t.Logf("lbd status on %s:\n%s", lb1.Role, out[strings.Index(out, "BGP"):])

	// 3. Service solo loses its only backend (its check now probes a port
	// nobody serves): both balancers withdraw its VIP, web stays.
	e.cfg.Services[1].Check.Port = 81
	if _, err := tp.WriteConfig(e.cfg); err != nil {
		t.Fatal(err)
	}
	for _, lb := range tp.Balancers {
		if out, err := tp.LbdOn(ctx, lb, "reload"); err != nil {
			t.Fatalf("lbd reload on %s: %v\n%s", lb.Role, err, out)
		}
	}
	if err := tp.WaitNextHops(ctx, soloVIP, nil, 10*time.Second); err != nil {
		t.Fatalf("service solo lost its backend: %v", err)
	}
	if hops, _ := tp.NextHops(topo.VIP4); len(hops) != 2 {
		t.Fatalf("route to %s changed when only solo lost its backend: %v", topo.VIP4, hops)
	}
	p.check(t, "after solo was withdrawn", 3)

	// 4. lbd on lb2 stopped gracefully: the route leaves lb2 while that
	// lbd still runs (withdraw, wait, then stop).
	stopped := time.Now()
	if err := e.lbds[lb2.Role].Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := tp.WaitNextHops(ctx, topo.VIP4, []*topo.Host{lb1}, 2*time.Second); err != nil {
		t.Fatalf("graceful stop of %s: %v", lb2.Role, err)
	}
	withdrawn := time.Since(stopped)
	if ok, _ := e.lbds[lb2.Role].Exited(); ok {
		t.Fatalf("lbd on %s exited before its route was withdrawn", lb2.Role)
	}
	if err := e.lbds[lb2.Role].Wait(10 * time.Second); err != nil {
		t.Fatalf("lbd on %s did not stop cleanly: %v", lb2.Role, err)
	}
	t.Logf("%s stopped: route withdrawn after %v, lbd exited after %v", lb2.Role, withdrawn.Round(time.Millisecond), time.Since(stopped).Round(time.Millisecond))
	p.check(t, "after "+lb2.Role+" stopped gracefully", 5)
	rounds := p.finish(t)
	t.Logf("%d long-lived connections, %d requests each across kill, rejoin, withdrawal and graceful stop: none broken", n, rounds)
}
