package integration

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dsrlb/dsrlb/integration/topo"
)

// lbEnv is a topology with backends prepared by hostprep, test servers
// running and lbd serving the configuration.
type lbEnv struct {
	t       *testing.T
	tp      *topo.Topology
	cfg     topo.Config
	lbd     *topo.Proc
	servers map[string]*topo.Proc
	client  *http.Client // new connection per request
}

// startLB builds the topology, writes and validates the configuration,
// prepares the backends with hostprep, starts the servers and checks the
// direct path (client -> each backend's own address); then, once `lbd
// run` exists, starts lbd and waits until every server with a weight
// answers on the first HTTP service's VIP.
func startLB(t *testing.T, s *scenario, opts topo.Options, build func(*topo.Topology) topo.Config) *lbEnv {
	t.Helper()
	s.needRoot()
	tp := mustTopology(t, opts)
	e := &lbEnv{t: t, tp: tp, cfg: build(tp), client: tp.Client.HTTPClient(false, netip.Addr{})}
	ctx := ctxFor(t, 60*time.Second)
	if _, err := tp.WriteConfig(e.cfg); err != nil {
		t.Fatal(err)
	}
	if out, err := tp.Lbd(ctx, "validate"); err != nil {
		t.Fatalf("harness wrote a configuration lbd refuses:\n%s\n%s", tp.Render(e.cfg), out)
	}
	e.servers = serveBackends(t, ctx, tp)
	for _, b := range tp.Backends {
		addr := b.IPv4
		if svc := e.cfg.Services[0]; svc.VIP.Is6() {
			addr = b.IPv6
		}
		if a := topo.Get(ctx, e.client, topo.URL(addr, "/")); a.Err != nil || a.Backend != b.Role {
			t.Fatalf("direct path client -> %s (%s) broken before lbd: %+v", b.Role, addr, a)
		}
	}
	var err error
	if e.lbd, err = tp.StartLbd(); err != nil {
		t.Fatal(err)
	}
	logOnFailure(t, e.lbd)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { // an lbd that exits ends the wait at once
		_ = e.lbd.Wait(time.Minute)
		cancel()
	}()
	for _, svc := range e.cfg.Services {
		if svc.Protocol == "udp" {
			continue
		}
		want := weighted(svc)
		if svc.Balance == "source" {
			want = nil // one client address reaches one backend only
		}
		if err := topo.WaitServing(ctx, e.client, topo.URL(svc.VIP, "/"), want, 20*time.Second); err != nil {
			t.Fatalf("lbd not serving: %v", err)
		}
		if want == nil { // every server must pass its rise checks before measuring
			e.waitInRotation(ctx, svc)
		}
		break
	}
	return e
}

// waitInRotation waits for lbd to log each weighted server of svc back in
// rotation: lbd starts with every backend out until its checks rise.
func (e *lbEnv) waitInRotation(ctx context.Context, svc topo.Service) {
	e.t.Helper()
	d := svc.Check.Interval*time.Duration(svc.Check.Rise) + svc.Check.Timeout + 10*time.Second
	for _, name := range weighted(svc) {
		if err := e.lbd.WaitOutput(ctx, `msg="backend in rotation" backend=`+svc.Name+"/"+name, d); err != nil {
			e.t.Fatal(err)
		}
	}
}

// weighted is the servers of svc that take new flows.
func weighted(svc topo.Service) []string {
	var names []string
	for _, sv := range svc.Servers {
		if sv.Weight != 0 {
			names = append(names, sv.Name)
		}
	}
	return names
}

func web(tp *topo.Topology, balance string) topo.Config {
	return topo.Config{Services: []topo.Service{tp.WebService("web", topo.VIP4, balance, tp.Backends...)}}
}

// newConns makes n requests, each on a new connection, concurrency at a
// time, within d.
func (e *lbEnv) newConns(c *http.Client, url string, n, concurrency int, d time.Duration) []topo.Answer {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return topo.Load(ctx, n, concurrency, func(ctx context.Context, _ int) topo.Answer { return topo.Get(ctx, c, url) })
}

func mustNoFailures(t *testing.T, what string, as []topo.Answer) {
	t.Helper()
	for _, a := range as {
		if a.Err != nil {
			t.Fatalf("%s: %s; first failure: %v", what, topo.FormatTally(topo.Tally(as)), a.Err)
		}
	}
}

func TestBackendSeesClientAddress(t *testing.T) {
	s := begin(t, "backend-sees-client-address")
	e := startLB(t, s, topo.Options{}, func(tp *topo.Topology) topo.Config { return web(tp, "") })
	as := e.newConns(e.client, topo.URL(topo.VIP4, "/"), 60, 4, 30*time.Second)
	mustNoFailures(t, "requests to the VIP", as)
	for _, a := range as {
		if a.ClientIP() != e.tp.Client.IPv4 {
			t.Fatalf("%s saw client %s, want the real client address %s", a.Backend, a.Client, e.tp.Client.IPv4)
		}
	}
	// With lbd holding the VIP, ARP must still be answered by it alone.
	if err := onlyBalancerAnswers(e.tp, probe(t, e.tp.Client)); err != nil {
		t.Fatal(err)
	}
}

func TestRepliesBypassBalancer(t *testing.T) {
	s := begin(t, "replies-bypass-balancer")
	e := startLB(t, s, topo.Options{}, func(tp *topo.Topology) topo.Config { return web(tp, "") })
	// Replies to clients; the balancer's health checks (to the VIP, by
	// default) get theirs, and those are not counted.
	replies := topo.ClientReplies(topo.VIP4, topo.HTTPPort, e.tp.Balancer)
	atLB, err := topo.CountFrames(e.tp.Balancer, e.tp.Balancer.Link, replies)
	if err != nil {
		t.Fatal(err)
	}
	defer atLB.Stop()
	atClient, err := topo.CountFrames(e.tp.Client, e.tp.Client.Link, replies)
	if err != nil {
		t.Fatal(err)
	}
	defer atClient.Stop()
	const n = 200
	mustNoFailures(t, "requests", e.newConns(e.client, topo.URL(topo.VIP4, "/"), n, 4, 30*time.Second))
	// The replies reached the client's stack; wait for its counter to read
	// them from its socket too (the balancer's would have them as early).
	atClient.WaitCount(n, 5*time.Second)
	lb, cl := atLB.Stop(), atClient.Stop()
	t.Logf("frames from %s:%d: %d at the client, %d at the balancer", topo.VIP4, topo.HTTPPort, cl, lb)
	if cl < n {
		t.Fatalf("the client saw only %d reply frames for %d requests: the counter is broken", cl, n)
	}
	if lb != 0 {
		t.Fatalf("%d reply frames (source %s:%d) reached the balancer: replies must go straight to the client", lb, topo.VIP4, topo.HTTPPort)
	}
}

func TestWeights(t *testing.T) {
	s := begin(t, "weights-3-1")
	e := startLB(t, s, topo.Options{}, func(tp *topo.Topology) topo.Config {
		svc := tp.WebService("web", topo.VIP4, "", tp.Backends[0], tp.Backends[1])
		svc.Servers[0].Weight, svc.Servers[1].Weight = 3, 1
		return topo.Config{Services: []topo.Service{svc}}
	})
	const n = 2000
	as := e.newConns(e.client, topo.URL(topo.VIP4, "/"), n, 8, 120*time.Second)
	mustNoFailures(t, "2,000 new connections", as)
	tally := topo.Tally(as)
	share := float64(tally["b1"]) / n
	t.Logf("weights 3:1 over %d new connections: %s (b1 %.1f%%)", n, topo.FormatTally(tally), 100*share)
	if share < 0.70 || share > 0.80 || tally["b1"]+tally["b2"] != n {
		t.Fatalf("b1 (weight 3) got %.1f%% of new connections, want 75%% ± 5%%: %s", 100*share, topo.FormatTally(tally))
	}
}

func TestSourcePins(t *testing.T) {
	s := begin(t, "source-pins-client")
	e := startLB(t, s, topo.Options{ClientAliases: 4}, func(tp *topo.Topology) topo.Config { return web(tp, "source") })
	for _, src := range append([]netip.Addr{e.tp.Client.IPv4}, e.tp.Client.Aliases...) {
		c := e.tp.Client.HTTPClient(false, src)
		as := e.newConns(c, topo.URL(topo.VIP4, "/"), 30, 3, 30*time.Second)
		mustNoFailures(t, "requests from "+src.String(), as)
		tally := topo.Tally(as)
		if len(tally) != 1 {
			t.Fatalf("client %s spread over several backends with balance source: %s", src, topo.FormatTally(tally))
		}
		if as[0].ClientIP() != src {
			t.Fatalf("backend saw %s, want %s", as[0].Client, src)
		}
		t.Logf("client %s -> %s", src, as[0].Backend)
	}
}

func TestRoundRobin(t *testing.T) {
	s := begin(t, "roundrobin-cycles")
	e := startLB(t, s, topo.Options{}, func(tp *topo.Topology) topo.Config { return web(tp, "roundrobin") })
	const n = 60
	as := e.newConns(e.client, topo.URL(topo.VIP4, "/"), n, 1, 30*time.Second)
	mustNoFailures(t, "requests", as)
	tally := topo.Tally(as)
	t.Logf("roundrobin over %d sequential new connections: %s", n, topo.FormatTally(tally))
	for _, b := range e.tp.Backends {
		// Strict rotation gives 20 each; allow per-CPU rotation counters.
		if got := tally[b.Role]; got < 15 || got > 25 {
			t.Fatalf("%s got %d of %d new connections, want about %d: %s", b.Role, got, n, n/3, topo.FormatTally(tally))
		}
	}
}

// timed is an answer with the times its request started and ended.
type timed struct {
	at, end time.Time
	topo.Answer
}

// background issues new-connection requests with concurrency workers until
// stop is called, at most max requests and d (bounded load).
type background struct {
	mu   sync.Mutex
	as   []timed
	stop context.CancelFunc
	wg   sync.WaitGroup
}

func startBackground(c *http.Client, url string, concurrency, max int, d time.Duration) *background {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	b := &background{stop: cancel}
	var sent sync.Mutex
	count := 0
	for w := 0; w < concurrency; w++ {
		b.wg.Add(1)
		go func() {
			defer b.wg.Done()
			for ctx.Err() == nil {
				sent.Lock()
				count++
				over := count > max
				sent.Unlock()
				if over {
					return
				}
				at := time.Now()
				rctx, rcancel := context.WithTimeout(context.Background(), 2*time.Second)
				a := topo.Get(rctx, c, url)
				rcancel()
				b.mu.Lock()
				b.as = append(b.as, timed{at, time.Now(), a})
				b.mu.Unlock()
				time.Sleep(5 * time.Millisecond) // pacing: bounded load, not a flood
			}
		}()
	}
	return b
}

// waitAnswers waits until n more requests than now have been answered (or
// failed): load did run through the phase that follows.
func (b *background) waitAnswers(t *testing.T, what string, n int, d time.Duration) {
	t.Helper()
	b.mu.Lock()
	want := len(b.as) + n
	b.mu.Unlock()
	for deadline := time.Now().Add(d); ; time.Sleep(10 * time.Millisecond) {
		b.mu.Lock()
		got := len(b.as)
		b.mu.Unlock()
		if got >= want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d of %d background requests done within %v", what, got-(want-n), n, d)
		}
	}
}

func (b *background) finish() []timed {
	b.stop()
	b.wg.Wait()
	return b.as
}

// keepAlive is one established connection, pinned to a backend.
type keepAlive struct {
	c       *http.Client
	backend string
}

// openKeepAlives opens n persistent connections to url and notes the
// backend of each.
// serveBackends runs hostprep on every backend and starts its test
// servers, whose output is logged if the test fails.
func serveBackends(t *testing.T, ctx context.Context, tp *topo.Topology) map[string]*topo.Proc {
	t.Helper()
	if _, err := tp.PrepareBackends(ctx); err != nil {
		t.Fatal(err)
	}
	servers, err := tp.StartServers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range servers {
		logOnFailure(t, p)
	}
	return servers
}

func openKeepAlives(t *testing.T, h *topo.Host, url string, n int) []keepAlive {
	t.Helper()
	var ks []keepAlive
	for i := 0; i < n; i++ {
		c := h.HTTPClient(true, netip.Addr{})
		c.Transport.(*http.Transport).MaxConnsPerHost = 1
		a := topo.Get(context.Background(), c, url)
		if a.Err != nil {
			t.Fatalf("open keep-alive connection: %v", a.Err)
		}
		ks = append(ks, keepAlive{c, a.Backend})
		t.Cleanup(c.CloseIdleConnections)
	}
	return ks
}

// checkBound is how long n checks of chk take at most (n = fall: a failing
// backend is out of rotation; n = rise: a repaired one is back), plus one
// timeout and slack for scheduling on a shared machine: a functional
// bound, not a performance figure.
func checkBound(chk topo.Check, n int, slack time.Duration) time.Duration {
	return chk.Interval*time.Duration(n) + chk.Timeout + slack
}

// checkSlack is checkBound's usual slack.
const checkSlack = 1500 * time.Millisecond

func TestBackendKilledUnderLoad(t *testing.T) {
	s := begin(t, "backend-killed-under-load")
	e := startLB(t, s, topo.Options{}, func(tp *topo.Topology) topo.Config { return web(tp, "") })
	chk := e.cfg.Services[0].Check
	url := topo.URL(topo.VIP4, "/")
	leaveBy := checkBound(chk, chk.Fall, checkSlack)
	returnBy := checkBound(chk, chk.Rise, checkSlack)

	ks := openKeepAlives(t, e.tp.Client, url, 12)
	bg := startBackground(e.client, url, 4, 20000, 60*time.Second)
	defer bg.finish()
	bg.waitAnswers(t, "before the kill", 50, 20*time.Second)

	killed := time.Now()
	e.servers["b2"].Kill()
	t.Logf("killed b2's server (pid %d)", e.servers["b2"].PID())
	// Established flows: those on b1/b3 keep working, those on b2 fail.
	for end := time.Now().Add(leaveBy + time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		for _, k := range ks {
			a := topo.Get(context.Background(), k.c, url)
			if k.backend != "b2" && (a.Err != nil || a.Backend != k.backend) {
				t.Fatalf("established flow on %s broke when b2 died: %+v", k.backend, a)
			}
		}
	}
	as := bg.finish()
	var before, window, after []topo.Answer
	for _, a := range as {
		switch {
		case a.end.Before(killed): // requests in flight at the kill belong to the window
			before = append(before, a.Answer)
		case a.at.Before(killed.Add(leaveBy)):
			window = append(window, a.Answer)
		default:
			after = append(after, a.Answer)
		}
	}
	t.Logf("new connections: before kill %s; within %v after %s; later %s", topo.FormatTally(topo.Tally(before)),
		leaveBy, topo.FormatTally(topo.Tally(window)), topo.FormatTally(topo.Tally(after)))
	mustNoFailures(t, "new connections before the kill", before)
	mustNoFailures(t, fmt.Sprintf("new connections later than interval x fall (%v) after the kill", leaveBy), after)
	if len(after) == 0 || topo.Tally(after)["b2"] != 0 {
		t.Fatalf("after the kill: %s; want traffic and none on b2", topo.FormatTally(topo.Tally(after)))
	}

	// It returns after rise successes.
	if _, err := e.tp.StartServer(context.Background(), e.tp.Backend("b2")); err != nil {
		t.Fatal(err)
	}
	if err := topo.WaitServing(context.Background(), e.client, url, []string{"b2"}, returnBy); err != nil {
		t.Fatalf("b2 did not return within interval x rise (%v): %v", returnBy, err)
	}
}

func TestDrainByReload(t *testing.T) {
	s := begin(t, "drain-by-reload")
	e := startLB(t, s, topo.Options{}, func(tp *topo.Topology) topo.Config { return web(tp, "") })
	url := topo.URL(topo.VIP4, "/")
	// An established connection to b3 (Maglev spreads connections, so open
	// until one lands there; bounded).
	onB3 := onBackend(t, e, url, "b3")
	e.cfg.Services[0].Servers[2].Weight = 0
	if _, err := e.tp.WriteConfig(e.cfg); err != nil {
		t.Fatal(err)
	}
	if out, err := e.tp.Lbd(context.Background(), "reload"); err != nil {
		t.Fatalf("lbd reload: %v\n%s", err, out)
	}
	// The reload is asynchronous: wait (bounded) for a run of new
	// connections that avoid b3, then measure.
	e.waitRun(url, 30, 10*time.Second, "new connections avoiding b3 after the reload", func(a topo.Answer) bool { return a.Backend != "b3" })
	e.mustAvoid(url, 300, "new connections after the drain", "b3")
	mustStay(t, onB3, topo.URL(topo.VIP4, "/slow?ms=50"), 20, "drained b3")
}

func TestRestartAndReloadUnderLoad(t *testing.T) {
	s := begin(t, "lbd-restart-reload-under-load")
	e := startLB(t, s, topo.Options{}, func(tp *topo.Topology) topo.Config { return web(tp, "") })
	ctx := ctxFor(t, 2*time.Minute)
	url := topo.URL(topo.VIP4, "/")
	ks := openKeepAlives(t, e.tp.Client, url, 6)
	bg := startBackground(e.client, url, 4, 20000, 60*time.Second)
	defer bg.finish()
	poke := func() {
		for _, k := range ks {
			if a := topo.Get(context.Background(), k.c, url); a.Err != nil || a.Backend != k.backend {
				t.Errorf("established connection on %s: %+v", k.backend, a)
			}
		}
	}
	bg.waitAnswers(t, "before the restart", 50, 20*time.Second)

	// Restart: the old lbd stops leaving the data plane in place, a new
	// process adopts it.
	old := e.lbd
	if err := old.Stop(10 * time.Second); err != nil {
		t.Fatalf("lbd did not stop cleanly on SIGTERM: %v", err)
	}
	if !strings.Contains(old.Output(), "lbd stopping") {
		t.Errorf("the stopped lbd (pid %d) did not log its stop:\n%s", old.PID(), old.Output())
	}
	poke()
	out, err := e.tp.Lbd(ctx, "status")
	if err != nil || !strings.Contains(out, "web") {
		t.Errorf("lbd status while lbd is down (reads the pinned maps): %v\n%s", err, out)
	}
	bg.waitAnswers(t, "while lbd is down", 50, 20*time.Second)
	e.restartLbd(ctx, old)
	poke()

	// Reload by the control socket: the daemon's verdict comes back.
	out, err = e.tp.Lbd(ctx, "reload")
	if err != nil || !strings.Contains(out, "configuration reloaded") {
		t.Fatalf("lbd reload should print the daemon's verdict: %v\n%s", err, out)
	}
	t.Logf("lbd reload: %s", strings.TrimSpace(out))
	if err := e.lbd.WaitOutputN(ctx, "configuration reloaded", 1, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	bg.waitAnswers(t, "after the reload", 50, 20*time.Second)
	// Reload by SIGHUP (systemctl reload without the CLI): only the log
	// tells, a second "configuration reloaded".
	if err := e.lbd.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if err := e.lbd.WaitOutputN(ctx, "configuration reloaded", 2, 10*time.Second); err != nil {
		t.Fatalf("SIGHUP reload: %v", err)
	}
	bg.waitAnswers(t, "after SIGHUP", 50, 20*time.Second)
	poke()
	as := bg.finish()
	plain := make([]topo.Answer, len(as))
	for i, a := range as {
		plain[i] = a.Answer
	}
	t.Logf("new connections across stop, start, reload, SIGHUP: %s", topo.FormatTally(topo.Tally(plain)))
	mustNoFailures(t, "requests to healthy backends across restart and reloads", plain)
	if ok, err := e.lbd.Exited(); ok {
		t.Fatalf("lbd exited after reload: %v", err)
	}
}

// restartLbd starts lbd again after old stopped, waits until it is ready
// and checks that it is a new process that adopted the data plane.
func (e *lbEnv) restartLbd(ctx context.Context, old *topo.Proc) {
	e.t.Helper()
	var err error
	if e.lbd, err = e.tp.StartLbd(); err != nil {
		e.t.Fatal(err)
	}
	logOnFailure(e.t, e.lbd)
	if err := e.lbd.WaitOutput(ctx, "lbd ready", 20*time.Second); err != nil {
		e.t.Fatal(err)
	}
	mustRestarted(e.t, e.tp, old, e.lbd)
}

// mustRestarted checks that next is another process than old, that it
// wrote its PID to the run file, and that it adopted the pinned data plane
// rather than building a new one.
func mustRestarted(t *testing.T, tp *topo.Topology, old, next *topo.Proc) {
	t.Helper()
	if next.PID() == old.PID() {
		t.Fatalf("restart: the new lbd has the old PID %d", old.PID())
	}
	pf := tp.LbdPIDFile(tp.Balancer)
	b, err := os.ReadFile(pf)
	if err != nil || strings.TrimSpace(string(b)) != strconv.Itoa(next.PID()) {
		t.Fatalf("restart: PID file %s holds %q (%v), want the new lbd's %d", pf, b, err, next.PID())
	}
	if !strings.Contains(next.Output(), "adopted the pinned data plane") {
		t.Fatalf("restart: the new lbd (pid %d) did not adopt the pinned data plane:\n%s", next.PID(), next.Output())
	}
	t.Logf("restarted: lbd pid %d stopped, pid %d adopted the data plane", old.PID(), next.PID())
}

func TestUDPService(t *testing.T) {
	s := begin(t, "udp-service")
	e := startLB(t, s, topo.Options{}, func(tp *topo.Topology) topo.Config {
		svc := tp.WebService("echo", topo.VIP4, "", tp.Backends...)
		svc.Protocol, svc.Ports, svc.Check = "udp", []int{topo.UDPPort}, topo.Check{Type: "none"}
		return topo.Config{Services: []topo.Service{svc}}
	})
	to := netip.AddrPortFrom(topo.VIP4, topo.UDPPort)
	ctx := ctxFor(t, 60*time.Second)
	// Ready when a datagram is answered (bounded).
	for deadline := time.Now().Add(20 * time.Second); ; {
		if a := e.tp.Client.UDPAsk(ctx, to, 500*time.Millisecond); a.Err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("UDP service not answering 20s after lbd started")
		}
	}
	as := topo.Load(ctx, 90, 3, func(ctx context.Context, _ int) topo.Answer { return e.tp.Client.UDPAsk(ctx, to, 2*time.Second) })
	mustNoFailures(t, "UDP flows", as)
	tally := topo.Tally(as)
	t.Logf("UDP over 90 new flows: %s", topo.FormatTally(tally))
	for _, a := range as {
		if a.ClientIP() != e.tp.Client.IPv4 {
			t.Fatalf("%s saw client %s, want %s", a.Backend, a.Client, e.tp.Client.IPv4)
		}
	}
	if len(tally) != 3 {
		t.Fatalf("90 UDP flows reached %d backends, want all 3: %s", len(tally), topo.FormatTally(tally))
	}
}

// allSeenFromClient makes 90 new connections to vip and checks that all
// succeed, all backends serve and each saw want as the client.
func allSeenFromClient(t *testing.T, e *lbEnv, vip, want netip.Addr) {
	t.Helper()
	as := e.newConns(e.client, topo.URL(vip, "/"), 90, 4, 30*time.Second)
	mustNoFailures(t, "requests to "+vip.String(), as)
	tally := topo.Tally(as)
	t.Logf("%s over 90 new connections: %s", vip, topo.FormatTally(tally))
	if len(tally) != len(e.tp.Backends) {
		t.Fatalf("want all %d backends: %s", len(e.tp.Backends), topo.FormatTally(tally))
	}
	for _, a := range as {
		if a.ClientIP() != want {
			t.Fatalf("%s saw client %s, want %s", a.Backend, a.Client, want)
		}
	}
}

func TestIPv6VIP(t *testing.T) {
	s := begin(t, "ipv6-vip")
	e := startLB(t, s, topo.Options{}, func(tp *topo.Topology) topo.Config {
		return topo.Config{Services: []topo.Service{tp.WebService("web6", topo.VIP6, "", tp.Backends...)}}
	})
	allSeenFromClient(t, e, topo.VIP6, e.tp.Client.IPv6)
}

func TestVLANSegment(t *testing.T) {
	s := begin(t, "vlan-segment")
	e := startLB(t, s, topo.Options{VLAN: 100}, func(tp *topo.Topology) topo.Config { return web(tp, "") })
	allSeenFromClient(t, e, topo.VIP4, e.tp.Client.IPv4)
}

func TestRoutedVariant(t *testing.T) {
	s := begin(t, "routed-variant")
	e := startLB(t, s, topo.Options{Routed: true}, func(tp *topo.Topology) topo.Config { return web(tp, "") })
	atLB, err := topo.CountFrames(e.tp.Balancer, e.tp.Balancer.Link, topo.ClientReplies(topo.VIP4, topo.HTTPPort, e.tp.Balancer))
	if err != nil {
		t.Fatal(err)
	}
	defer atLB.Stop()
	allSeenFromClient(t, e, topo.VIP4, e.tp.Client.IPv4)
	if n := atLB.Stop(); n != 0 {
		t.Fatalf("%d reply frames reached the balancer in the routed variant", n)
	}
}
