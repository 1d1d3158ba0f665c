package health

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dsrlb/dsrlb/shared/config"
)

// Short intervals keep the tests fast; waits are generous so a loaded
// machine only makes them slower, never flaky.
const (
	testInterval = 30 * time.Millisecond
	testTimeout  = 200 * time.Millisecond
	waitLimit    = 10 * time.Second
)

type event struct {
	key    string
	state  State
	reason string
}

// recorder collects OnChange calls.
type recorder struct{ ch chan event }

func newRecorder() *recorder { return &recorder{ch: make(chan event, 1000)} }

func (r *recorder) onChange(t Target, s State, reason string) {
	r.ch <- event{t.Key, s, reason}
}

// wait returns the next event, failing the test if none comes in time or
// it is not the one expected.
func (r *recorder) wait(t *testing.T, key string, want State) event {
	t.Helper()
	select {
	case e := <-r.ch:
		if e.key != key || e.state != want {
			t.Fatalf("got event %s %s (%s), want %s %s", e.key, e.state, e.reason, key, want)
		}
		return e
	case <-time.After(waitLimit):
		t.Fatalf("no event %s %s within %s", key, want, waitLimit)
	}
	return event{}
}

func (r *recorder) none(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case e := <-r.ch:
		t.Fatalf("unexpected event %s %s (%s)", e.key, e.state, e.reason)
	case <-time.After(d):
	}
}

func check(typ config.CheckType, rise, fall int) config.Check {
	return config.Check{Type: typ, Interval: testInterval, Timeout: testTimeout, Rise: rise, Fall: fall,
		Path: "/health", ExpectStatus: 200}
}

func mustManager(t *testing.T, opts Options) *Manager {
	t.Helper()
	m := New(context.Background(), opts)
	t.Cleanup(m.Close)
	return m
}

func mustUpdate(t *testing.T, m *Manager, ts ...Target) {
	t.Helper()
	if err := m.Update(ts); err != nil {
		t.Fatalf("update: %v", err)
	}
}

// tcpServer accepts and closes connections until stopped.
type tcpServer struct {
	ln   net.Listener
	done chan struct{}
}

func mustTCPServer(t *testing.T, addr string) *tcpServer {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen %s: %v", addr, err)
	}
	s := &tcpServer{ln: ln, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.Close()
		}
	}()
	t.Cleanup(s.stop)
	return s
}

func (s *tcpServer) stop() {
	_ = s.ln.Close()
	<-s.done
}

func (s *tcpServer) addrPort() netip.AddrPort {
	return s.ln.Addr().(*net.TCPAddr).AddrPort()
}

func TestCounterRiseFall(t *testing.T) {
	tests := []struct {
		name       string
		start      State
		rise, fall int
		results    string // o = success, x = failure
		want       string // state after each result
	}{
		{"down needs rise successes", Down, 2, 3, "ooo", "DUU"},
		{"up needs fall failures", Up, 2, 3, "xxxx", "UUDD"},
		{"a success resets the failure run", Up, 2, 3, "xxoxxx", "UUUUUD"},
		{"a failure resets the success run", Down, 3, 1, "ooxooo", "DDDDDU"},
		{"rise 1 fall 1 follows every result", Down, 1, 1, "oxox", "UDUD"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := counter{state: tt.start}
			var got strings.Builder
			for _, r := range tt.results {
				c.observe(r == 'o', tt.rise, tt.fall)
				got.WriteByte(strings.ToUpper(c.state.String())[0])
			}
			if got.String() != tt.want {
				t.Errorf("states %s, want %s", got.String(), tt.want)
			}
		})
	}
}

func TestJitterBounds(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	const iv = time.Second
	var minFirst, maxFirst = iv, time.Duration(0)
	for range 10000 {
		f := firstDelay(iv, r)
		if f < 0 || f >= iv {
			t.Fatalf("first delay %s outside [0, %s)", f, iv)
		}
		minFirst, maxFirst = min(minFirst, f), max(maxFirst, f)
		n := nextDelay(iv, r)
		if n < iv-iv/jitterDivisor || n > iv+iv/jitterDivisor {
			t.Fatalf("next delay %s outside %s ± %s", n, iv, iv/jitterDivisor)
		}
	}
	// The first checks must really be spread over the interval.
	if minFirst > iv/10 || maxFirst < iv*9/10 {
		t.Errorf("first delays span [%s, %s], want most of [0, %s)", minFirst, maxFirst, iv)
	}
}

func TestLogLimiter(t *testing.T) {
	l := logLimiter{every: 10 * time.Second}
	t0 := time.Unix(1000, 0)
	if ok, n := l.allow(t0); !ok || n != 0 {
		t.Fatalf("first transition: allow=%v suppressed=%d, want true 0", ok, n)
	}
	for i := 1; i <= 3; i++ {
		if ok, _ := l.allow(t0.Add(time.Duration(i) * time.Second)); ok {
			t.Fatalf("transition %d within the window was logged", i)
		}
	}
	if _, ok := l.flush(t0.Add(5 * time.Second)); ok {
		t.Fatal("flush within the window")
	}
	if n, ok := l.flush(t0.Add(11 * time.Second)); !ok || n != 3 {
		t.Fatalf("flush after the window: %d %v, want 3 true", n, ok)
	}
	if ok, n := l.allow(t0.Add(22 * time.Second)); !ok || n != 0 {
		t.Fatalf("after flush: allow=%v suppressed=%d, want true 0", ok, n)
	}
}

func TestTCPDownAndBackUp(t *testing.T) {
	srv := mustTCPServer(t, "127.0.0.1:0")
	addr := srv.addrPort()
	rec := newRecorder()
	m := mustManager(t, Options{OnChange: rec.onChange})
	mustUpdate(t, m, Target{Key: "svc/a", Addr: addr, Check: check(config.CheckTCP, 2, 3)})

	rec.wait(t, "svc/a", Up)
	srv.stop()
	e := rec.wait(t, "svc/a", Down)
	if !strings.Contains(e.reason, "3 consecutive failed tcp checks") || !strings.Contains(e.reason, "refused") {
		t.Errorf("down reason %q, want the failure count and the dial error", e.reason)
	}
	mustTCPServer(t, addr.String())
	e = rec.wait(t, "svc/a", Up)
	if !strings.Contains(e.reason, "2 consecutive successful") {
		t.Errorf("up reason %q, want the success count", e.reason)
	}
	st := m.Status()[0]
	if st.State != Up || st.Transitions != 3 || !st.Last.OK() || st.Last.Duration <= 0 || st.Failures < 3 {
		t.Errorf("status %+v: want up after 3 transitions, a successful last check with a duration, ≥3 failures", st)
	}
}

func TestInitialUpStaysUpUntilFall(t *testing.T) {
	srv := mustTCPServer(t, "127.0.0.1:0")
	rec := newRecorder()
	m := mustManager(t, Options{OnChange: rec.onChange})
	mustUpdate(t, m, Target{Key: "svc/a", Addr: srv.addrPort(), Check: check(config.CheckTCP, 2, 3), Initial: Up})
	// An adopted backend that is healthy produces no event at all.
	rec.none(t, 10*testInterval)
	if s, _ := m.State("svc/a"); s != Up {
		t.Fatalf("state %s, want up", s)
	}
}

func TestHTTPCheck(t *testing.T) {
	var status atomic.Int32
	status.Store(http.StatusOK)
	var gotHost, gotPath atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotHost.Store(r.Host)
		gotPath.Store(r.URL.Path)
		if r.Header.Get("Connection") != "close" {
			w.WriteHeader(http.StatusTeapot) // keep-alive must be off
			return
		}
		w.WriteHeader(int(status.Load()))
		_, _ = w.Write(bytes.Repeat([]byte("x"), 1<<20)) // only a few KiB are read
	}))
	t.Cleanup(srv.Close)
	addr := netip.MustParseAddrPort(srv.Listener.Addr().String())
	rec := newRecorder()
	m := mustManager(t, Options{OnChange: rec.onChange})
	mustUpdate(t, m, Target{Key: "web/a", Addr: addr, Check: check(config.CheckHTTP, 1, 2)})

	rec.wait(t, "web/a", Up)
	if gotHost.Load() != addr.String() || gotPath.Load() != "/health" {
		t.Errorf("request Host %v path %v, want %s /health", gotHost.Load(), gotPath.Load(), addr)
	}
	status.Store(http.StatusServiceUnavailable)
	e := rec.wait(t, "web/a", Down)
	if !strings.Contains(e.reason, "status 503, want 200") {
		t.Errorf("reason %q, want the wrong status", e.reason)
	}
}

func TestHTTPRedirectIsNotFollowed(t *testing.T) {
	var followed atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/elsewhere" {
			followed.Store(true)
			return
		}
		http.Redirect(w, r, "/elsewhere", http.StatusFound)
	}))
	t.Cleanup(srv.Close)
	rec := newRecorder()
	m := mustManager(t, Options{OnChange: rec.onChange})
	mustUpdate(t, m, Target{Key: "web/a", Addr: netip.MustParseAddrPort(srv.Listener.Addr().String()),
		Check: check(config.CheckHTTP, 1, 1), Initial: Up})
	e := rec.wait(t, "web/a", Down)
	if !strings.Contains(e.reason, "status 302") || followed.Load() {
		t.Errorf("reason %q followed=%v, want status 302 and no request to the target", e.reason, followed.Load())
	}
}

func TestTimeoutIsFailure(t *testing.T) {
	ln := silentListener(t)
	rec := newRecorder()
	m := mustManager(t, Options{OnChange: rec.onChange})
	c := check(config.CheckHTTP, 1, 2)
	c.Timeout = 50 * time.Millisecond
	mustUpdate(t, m, Target{Key: "web/a", Addr: ln.Addr().(*net.TCPAddr).AddrPort(), Check: c, Initial: Up})
	e := rec.wait(t, "web/a", Down)
	if !strings.Contains(e.reason, "deadline exceeded") && !strings.Contains(e.reason, "Timeout") {
		t.Errorf("reason %q, want a timeout", e.reason)
	}
}

// silentListener accepts connections and never reads or answers them
// (a hung application whose kernel still accepts); all closed at the end.
func silentListener(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	})
	return ln
}

func TestCheckNoneIsAlwaysUp(t *testing.T) {
	rec := newRecorder()
	m := mustManager(t, Options{OnChange: rec.onChange})
	// Port 1 on loopback: nothing listens, and nothing may probe it.
	mustUpdate(t, m, Target{Key: "svc/a", Addr: netip.MustParseAddrPort("127.0.0.1:1"),
		Check: config.Check{Type: config.CheckNone}})
	e := rec.wait(t, "svc/a", Up) // the caller said Down (zero Initial)
	if !strings.Contains(e.reason, "always up") {
		t.Errorf("reason %q", e.reason)
	}
	rec.none(t, 5*testInterval)
	if s, ok := m.State("svc/a"); !ok || s != Up {
		t.Errorf("state %s %v, want up", s, ok)
	}
}

// fakeProber returns whatever its function says.
type fakeProber func() error

func (f fakeProber) probe(context.Context) error { return f() }

func TestFlappingEventsAllDeliveredLogsLimited(t *testing.T) {
	var logs bytes.Buffer
	var logMu sync.Mutex
	log := slog.New(slog.NewTextHandler(&lockedWriter{w: &logs, mu: &logMu}, nil))
	rec := newRecorder()
	m := mustManager(t, Options{OnChange: rec.onChange, Logger: log, LogEvery: time.Hour})
	var n atomic.Int64
	tg := Target{Key: "svc/flap", Addr: netip.MustParseAddrPort("127.0.0.1:1"), Check: check(config.CheckTCP, 1, 1)}
	// Install a checker whose probe alternates success and failure.
	e := &entry{t: tg, since: time.Now()}
	e.c = newChecker(tg, Down, fakeProber(func() error {
		if n.Add(1)%2 == 1 {
			return nil
		}
		return errors.New("refused")
	}), m.log, m.logEvery, m.deliver)
	m.entries[tg.Key] = e
	e.c.start(m.ctx, &m.wg)

	for i := range 6 {
		want := Up
		if i%2 == 1 {
			want = Down
		}
		rec.wait(t, "svc/flap", want)
	}
	logMu.Lock()
	defer logMu.Unlock()
	if got := strings.Count(logs.String(), "msg=\"backend "); got != 1 {
		t.Errorf("%d transition log lines, want 1 within the window:\n%s", got, logs.String())
	}
}

type lockedWriter struct {
	w  *bytes.Buffer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func TestUpdateKeepsUnchangedCheckers(t *testing.T) {
	srv := mustTCPServer(t, "127.0.0.1:0")
	addr := srv.addrPort()
	rec := newRecorder()
	m := mustManager(t, Options{OnChange: rec.onChange})
	a := Target{Key: "svc/a", Addr: addr, Check: check(config.CheckTCP, 3, 3)}
	b := Target{Key: "svc/b", Addr: addr, Check: check(config.CheckTCP, 3, 3)}
	mustUpdate(t, m, a, b)
	waitChecks(t, m, "svc/a", 1)
	keptA, oldB := m.entries["svc/a"].c, m.entries["svc/b"].c

	// b's check changes, c is new, a is the same (even with another
	// Initial, which only applies to new backends).
	b2 := b
	b2.Check.Fall = 5
	a2 := a
	a2.Initial = Up
	cT := Target{Key: "svc/c", Addr: addr, Check: check(config.CheckTCP, 1, 1)}
	mustUpdate(t, m, a2, b2, cT)
	if m.entries["svc/a"].c != keptA {
		t.Error("unchanged target a got a new checker: its rise/fall counters were reset")
	}
	if m.entries["svc/b"].c == oldB {
		t.Error("target b kept its checker although its check changed")
	}
	select {
	case <-oldB.done:
	default:
		t.Error("b's old checker still runs after Update returned")
	}
	// a's checker goes on counting where it was.
	before := keptA.status().Checks
	waitChecks(t, m, "svc/a", before+1)

	// Removing every target stops every checker before Update returns.
	newB, newC := m.entries["svc/b"].c, m.entries["svc/c"].c
	mustUpdate(t, m)
	for _, c := range []*checker{keptA, newB, newC} {
		select {
		case <-c.done:
		default:
			t.Errorf("checker of %s still runs after its removal", c.t.Key)
		}
	}
	if len(m.Status()) != 0 {
		t.Errorf("status after removing all: %v", m.Status())
	}
}

func TestCheckChangeKeepsState(t *testing.T) {
	srv := mustTCPServer(t, "127.0.0.1:0")
	rec := newRecorder()
	m := mustManager(t, Options{OnChange: rec.onChange})
	a := Target{Key: "svc/a", Addr: srv.addrPort(), Check: check(config.CheckTCP, 1, 3)}
	mustUpdate(t, m, a)
	rec.wait(t, "svc/a", Up)
	a.Check.Rise = 50 // a restart in Down would need 50 checks to come back
	mustUpdate(t, m, a)
	if s, _ := m.State("svc/a"); s != Up {
		t.Errorf("state after a check change %s, want up (carried)", s)
	}
	rec.none(t, 5*testInterval)
}

func waitChecks(t *testing.T, m *Manager, key string, n uint64) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for time.Now().Before(deadline) {
		for _, s := range m.Status() {
			if s.Target.Key == key && s.Checks >= n {
				return
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("%s did not run %d checks within %s", key, n, waitLimit)
}

func TestUpdateRejectsInvalidTargets(t *testing.T) {
	m := mustManager(t, Options{})
	ok := Target{Key: "svc/a", Addr: netip.MustParseAddrPort("127.0.0.1:80"), Check: check(config.CheckTCP, 1, 1)}
	bad := []struct {
		name string
		mod  func(*Target)
	}{
		{"empty key", func(t *Target) { t.Key = "" }},
		{"unknown type", func(t *Target) { t.Check.Type = "icmp" }},
		{"no port", func(t *Target) { t.Addr = netip.AddrPortFrom(t.Addr.Addr(), 0) }},
		{"zero interval", func(t *Target) { t.Check.Interval = 0 }},
		{"zero rise", func(t *Target) { t.Check.Rise = 0 }},
	}
	for _, b := range bad {
		tg := ok
		b.mod(&tg)
		if err := m.Update([]Target{tg}); err == nil {
			t.Errorf("%s: Update accepted %+v", b.name, tg)
		}
	}
	if err := m.Update([]Target{ok, ok}); err == nil || !strings.Contains(err.Error(), "duplicate") {
		t.Errorf("duplicate keys: %v", err)
	}
	if len(m.Status()) != 0 {
		t.Error("a rejected Update changed the set")
	}
}

func TestCloseLeavesNoGoroutines(t *testing.T) {
	srv := mustTCPServer(t, "127.0.0.1:0")
	base := runtime.NumGoroutine()
	m := New(context.Background(), Options{})
	var ts []Target
	for i := range 20 {
		ts = append(ts, Target{Key: fmt.Sprintf("svc/%d", i), Addr: srv.addrPort(), Check: check(config.CheckTCP, 1, 1)})
	}
	mustUpdate(t, m, ts...)
	waitChecks(t, m, "svc/0", 2)
	m.Close()
	if err := m.Update(ts); !errors.Is(err, ErrClosed) {
		t.Errorf("Update after Close: %v, want ErrClosed", err)
	}
	// Close waited for the checkers; give the runtime a moment for
	// goroutines it parks after they return (e.g. net poller helpers).
	deadline := time.Now().Add(waitLimit)
	for runtime.NumGoroutine() > base && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > base {
		buf := make([]byte, 1<<16)
		t.Errorf("%d goroutines after Close, %d before:\n%s", n, base, buf[:runtime.Stack(buf, true)])
	}
}
