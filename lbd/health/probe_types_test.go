package health

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/dsrlb/dsrlb/internal/nettest"
	"github.com/dsrlb/dsrlb/shared/config"
)

// probeCheck runs one check of c against addr, as a checker would.
func probeCheck(t *testing.T, addr netip.AddrPort, c config.Check) error {
	t.Helper()
	if c.Timeout == 0 {
		c.Timeout = time.Second
	}
	tg := Target{Key: "web/w1", Addr: addr, VIP: netip.MustParseAddr("192.0.2.10"), Check: c}
	p, err := newProber(tg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.Timeout)
	defer cancel()
	return p.probe(ctx)
}

func wantErr(t *testing.T, err error, frag string) {
	t.Helper()
	switch {
	case frag == "" && err != nil:
		t.Fatalf("check failed: %v", err)
	case frag != "" && err == nil:
		t.Fatalf("check passed, want a failure saying %q", frag)
	case frag != "" && !strings.Contains(err.Error(), frag):
		t.Fatalf("check failed with %q, want it to say %q", err, frag)
	}
}

// testPKI is a CA and a server certificate it signed for 127.0.0.1 and
// www.example.com, as an operator's internal CA would issue.
type testPKI struct {
	caFile string
	server tls.Certificate
}

func newTestPKI(t *testing.T) testPKI {
	t.Helper()
	p := nettest.NewPKI(t, "www.example.com", net.IPv4(127, 0, 0, 1))
	path := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(path, p.CAPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	return testPKI{caFile: path, server: tls.Certificate{Certificate: [][]byte{p.Leaf}, PrivateKey: p.Key}}
}

// seen records what the test server was asked.
type seen struct {
	mu                 sync.Mutex
	method, host, name string // name: the SNI of the last handshake
}

func (s *seen) get() (string, string, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.method, s.host, s.name
}

func TestHTTPSCheck(t *testing.T) {
	pki := newTestPKI(t)
	var got seen
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.mu.Lock()
		got.method, got.host = r.Method, r.Host
		got.mu.Unlock()
		if r.URL.Path == "/down" {
			http.Error(w, "maintenance", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, `{"status": "ok"}`)
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{pki.server},
		GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
			got.mu.Lock()
			got.name = h.ServerName
			got.mu.Unlock()
			return nil, nil
		}}
	srv.StartTLS()
	defer srv.Close()
	addr := netip.MustParseAddrPort(srv.Listener.Addr().String())
	plain := httptest.NewServer(http.NotFoundHandler())
	defer plain.Close()
	plainAddr := netip.MustParseAddrPort(plain.Listener.Addr().String())

	base := config.Check{Type: config.CheckHTTPS, Path: "/", ExpectStatus: 200, Method: "GET"}
	with := func(f func(*config.Check)) config.Check { c := base; f(&c); return c }
	for _, tc := range []struct {
		name  string
		addr  netip.AddrPort
		check config.Check
		want  string
	}{
		{"system roots refuse a private CA", addr, base, "is not signed by a CA in the system's roots"},
		{"ca_file, verified for the IP", addr, with(func(c *config.Check) { c.CAFile = pki.caFile }), ""},
		{"sni the certificate carries", addr, with(func(c *config.Check) { c.CAFile, c.SNI = pki.caFile, "www.example.com" }), ""},
		{"sni it does not carry", addr, with(func(c *config.Check) { c.CAFile, c.SNI = pki.caFile, "api.example.com" }), "is not valid for api.example.com"},
		{"insecure_skip_verify", addr, with(func(c *config.Check) { c.InsecureSkipVerify = true }), ""},
		{"status", addr, with(func(c *config.Check) { c.InsecureSkipVerify, c.Path = true, "/down" }), "status 503, want 200"},
		{"expect_body found", addr, with(func(c *config.Check) { c.InsecureSkipVerify, c.ExpectBody = true, `"ok"` }), ""},
		{"expect_body missing", addr, with(func(c *config.Check) { c.InsecureSkipVerify, c.ExpectBody = true, "ready" }), `lacks "ready"`},
		{"not TLS", plainAddr, with(func(c *config.Check) { c.InsecureSkipVerify = true }), "does the port speak TLS?"},
		{"missing ca_file", addr, with(func(c *config.Check) { c.CAFile = "/nonexistent/ca.pem" }), "cannot verify certificates: read CA file"},
	} {
		t.Run(tc.name, func(t *testing.T) { wantErr(t, probeCheck(t, tc.addr, tc.check), tc.want) })
	}

	// Host header, method and the SNI that goes with them.
	c := with(func(c *config.Check) {
		c.CAFile, c.Host, c.SNI, c.Method = pki.caFile, "www.example.com:8443", "www.example.com", "HEAD"
	})
	wantErr(t, probeCheck(t, addr, c), "")
	if m, h, n := got.get(); m != "HEAD" || h != "www.example.com:8443" || n != "www.example.com" {
		t.Errorf("server saw method %q Host %q SNI %q; want HEAD, www.example.com:8443, www.example.com", m, h, n)
	}
	// Without sni, no SNI is sent (an IP address is never sent as one).
	wantErr(t, probeCheck(t, addr, with(func(c *config.Check) { c.CAFile = pki.caFile })), "")
	if _, h, n := got.get(); n != "" || h != addr.String() {
		t.Errorf("server saw SNI %q Host %q; want none and %s", n, h, addr)
	}
}

func TestHTTPMethodHostBody(t *testing.T) {
	var got seen
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.mu.Lock()
		got.method, got.host = r.Method, r.Host
		got.mu.Unlock()
		fmt.Fprint(w, strings.Repeat("x", 2*maxBody)+"late")
	}))
	defer srv.Close()
	addr := netip.MustParseAddrPort(srv.Listener.Addr().String())
	c := config.Check{Type: config.CheckHTTP, Path: "/", ExpectStatus: 200, Method: "POST", Host: "app.example.com"}
	wantErr(t, probeCheck(t, addr, c), "")
	if m, h, _ := got.get(); m != "POST" || h != "app.example.com" {
		t.Errorf("server saw %s with Host %q, want POST with app.example.com", m, h)
	}
	// The body is read up to maxBody only: text past it is not found.
	c.ExpectBody = "late"
	wantErr(t, probeCheck(t, addr, c), fmt.Sprintf("body (first %d bytes read) lacks \"late\"", maxBody))
}

func TestUDPCheck(t *testing.T) {
	echo := listenUDP(t, func(b []byte) []byte {
		if string(b) == "ping\n" {
			return []byte("pong from backend")
		}
		return []byte("unknown command")
	})
	silent := listenUDP(t, func([]byte) []byte { return nil })
	closed := closedUDPPort(t)
	c := config.Check{Type: config.CheckUDP, Send: "ping\n", Timeout: 300 * time.Millisecond}
	wantErr(t, probeCheck(t, echo, c), "")
	c.Expect = "pong"
	wantErr(t, probeCheck(t, echo, c), "")
	c.Send = "hello"
	wantErr(t, probeCheck(t, echo, c), `answered "unknown command", which lacks "pong"`)
	wantErr(t, probeCheck(t, silent, c), "no answer to the 5-byte datagram within the timeout")
	start := time.Now()
	wantErr(t, probeCheck(t, closed, c), "ICMP port unreachable: nothing listens on that port")
	// Refused at once, not by the timeout: the ICMP error ends the wait.
	if d := time.Since(start); d >= c.Timeout {
		t.Errorf("port unreachable took %s, the whole timeout", d)
	}
}

// listenUDP serves answer(datagram) (nil: no answer) on 127.0.0.1.
func listenUDP(t *testing.T, answer func([]byte) []byte) netip.AddrPort {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if a := answer(buf[:n]); a != nil {
				_, _ = pc.WriteTo(a, from)
			}
		}
	}()
	return netip.MustParseAddrPort(pc.LocalAddr().String())
}

// closedUDPPort is a port nothing listens on (it was bound, then closed).
func closedUDPPort(t *testing.T) netip.AddrPort {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := netip.MustParseAddrPort(pc.LocalAddr().String())
	pc.Close()
	return a
}

func TestDNSCheck(t *testing.T) {
	h := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		switch q := r.Question[0]; {
		case q.Name == "ok.test." && q.Qtype == dns.TypeA:
			m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: net.IPv4(192, 0, 2, 99)})
		case q.Name == "broken.test.":
			m.Rcode = dns.RcodeServerFailure
		default:
			m.Rcode = dns.RcodeNameError
		}
		_ = w.WriteMsg(m)
	})
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	udpSrv := &dns.Server{PacketConn: pc, Handler: h}
	tcpSrv := &dns.Server{Listener: ln, Handler: h}
	for _, s := range []*dns.Server{udpSrv, tcpSrv} {
		started := make(chan struct{})
		s.NotifyStartedFunc = func() { close(started) }
		go func() { _ = s.ActivateAndServe() }()
		<-started
		t.Cleanup(func() { _ = s.Shutdown() })
	}
	udpAddr := netip.MustParseAddrPort(pc.LocalAddr().String())
	tcpAddr := netip.MustParseAddrPort(ln.Addr().String())

	c := config.Check{Type: config.CheckDNS, Query: "ok.test.", QueryType: "A", ExpectRcode: "NOERROR", DNSNet: "udp", Timeout: 500 * time.Millisecond}
	wantErr(t, probeCheck(t, udpAddr, c), "")
	c.Query = "broken.test."
	wantErr(t, probeCheck(t, udpAddr, c), "dns udp "+udpAddr.String()+": answered SERVFAIL, want NOERROR")
	c.Query, c.ExpectRcode = "gone.test.", "NXDOMAIN"
	wantErr(t, probeCheck(t, udpAddr, c), "")
	wantErr(t, probeCheck(t, closedUDPPort(t), c), "ICMP port unreachable: no DNS server listens there")
	silent := listenUDP(t, func([]byte) []byte { return nil })
	wantErr(t, probeCheck(t, silent, c), "no answer to A gone.test. within the timeout")

	c.DNSNet, c.Query, c.ExpectRcode = "tcp", "ok.test.", "NOERROR"
	wantErr(t, probeCheck(t, tcpAddr, c), "")
	c.Query = "broken.test."
	wantErr(t, probeCheck(t, tcpAddr, c), "dns tcp "+tcpAddr.String()+": answered SERVFAIL")
	closedTCP := tcpAddr
	_ = tcpSrv.Shutdown()
	wantErr(t, probeCheck(t, closedTCP, c), "connection refused")
}

// TestDNSNamesKnown: every query type and rcode the schema accepts is one
// miekg/dns knows by that name.
func TestDNSNamesKnown(t *testing.T) {
	for _, n := range config.DNSQueryTypes {
		if _, ok := dns.StringToType[n]; !ok {
			t.Errorf("query type %s unknown to miekg/dns", n)
		}
	}
	for _, n := range config.DNSRcodes {
		if _, ok := dns.StringToRcode[n]; !ok {
			t.Errorf("rcode %s unknown to miekg/dns", n)
		}
	}
}

func script(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "check.sh")
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestExecCheck(t *testing.T) {
	addr := netip.MustParseAddrPort("192.0.2.11:8080")
	c := config.Check{Type: config.CheckExec, Timeout: time.Second}

	c.Command = script(t, `[ "$DSRLB_SERVICE/$DSRLB_SERVER $DSRLB_ADDRESS:$DSRLB_PORT $DSRLB_VIP $1|$2" = "web/w1 192.0.2.11:8080 192.0.2.10 --mode|a b" ] || { echo "env: $DSRLB_SERVICE $DSRLB_SERVER $DSRLB_ADDRESS $DSRLB_PORT $DSRLB_VIP args: $*"; exit 1; }`)
	c.Args = config.ArgsOf([]string{"--mode", "a b"})
	wantErr(t, probeCheck(t, addr, c), "")

	c.Args = ""
	c.Command = script(t, `echo "database unreachable" >&2; exit 3`)
	wantErr(t, probeCheck(t, addr, c), "check command "+c.Command+" exited with status 3: database unreachable")

	// lbd's environment stays out of the command's.
	t.Setenv("DSRLB_TEST_SECRET", "x")
	c.Command = script(t, `[ -z "$DSRLB_TEST_SECRET" ] || { echo leaked; exit 1; }`)
	wantErr(t, probeCheck(t, addr, c), "")

	// Megabytes of output are cut, not buffered, and do not block it.
	c.Command = script(t, `head -c 3000000 /dev/zero | tr '\0' y; echo; echo last words; exit 1`)
	wantErr(t, probeCheck(t, addr, c), "exited with status 1: ...yyy")

	c.Command = "/nonexistent/check"
	wantErr(t, probeCheck(t, addr, c), "run check command")
}

// TestExecTimeoutKillsGroup: a command still running at the timeout is
// killed with what it started, and the check returns at once.
func TestExecTimeoutKillsGroup(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "child.pid")
	c := config.Check{Type: config.CheckExec, Timeout: 300 * time.Millisecond,
		Command: script(t, "sleep 60 & echo $! > "+pidFile+"; echo waiting; wait")}
	start := time.Now()
	wantErr(t, probeCheck(t, netip.MustParseAddrPort("192.0.2.11:0"), c), "did not finish within the timeout and was killed with its process group: waiting")
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the check returned after %s", d)
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	deadline := time.Now().Add(5 * time.Second)
	for syscall.Kill(pid, 0) == nil && !zombie(pid) {
		if time.Now().After(deadline) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("the command's child %d outlived the timeout", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// zombie reports whether pid has exited and waits for its parent (init,
// in a container possibly this test) to reap it.
func zombie(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	return len(f) > 0 && f[0] == "Z"
}

// TestExecSlotsBounded: with every slot taken, a check waits at most its
// timeout and says why it did not run.
func TestExecSlotsBounded(t *testing.T) {
	for range maxExecs {
		execSlots <- struct{}{}
	}
	defer func() {
		for range maxExecs {
			<-execSlots
		}
	}()
	c := config.Check{Type: config.CheckExec, Timeout: 100 * time.Millisecond, Command: script(t, "exit 0")}
	wantErr(t, probeCheck(t, netip.MustParseAddrPort("192.0.2.11:0"), c), "lbd runs at most 16 check commands at once and they were all busy")
}

// TestManagerRunsExecChecks: through the Manager, an exec check (which
// needs no port) follows its command: down when it fails, up again when it
// passes, with the command's words in the reason.
func TestManagerRunsExecChecks(t *testing.T) {
	flag := filepath.Join(t.TempDir(), "up")
	if err := os.WriteFile(flag, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := script(t, `[ -e "$1" ] || { echo "flag $1 gone"; exit 1; }`)
	rec := newRecorder()
	m := New(context.Background(), Options{OnChange: rec.onChange})
	defer m.Close()
	tg := Target{Key: "app/a1", Addr: netip.MustParseAddrPort("192.0.2.11:0"), Check: config.Check{
		Type: config.CheckExec, Interval: testInterval, Timeout: testTimeout, Rise: 1, Fall: 1,
		Command: cmd, Args: config.ArgsOf([]string{flag}),
	}}
	if err := m.Update([]Target{tg}); err != nil {
		t.Fatal(err)
	}
	rec.wait(t, "app/a1", Up)
	if err := os.Remove(flag); err != nil {
		t.Fatal(err)
	}
	if e := rec.wait(t, "app/a1", Down); !strings.Contains(e.reason, "exited with status 1: flag "+flag+" gone") {
		t.Errorf("down reason %q lacks the command's output", e.reason)
	}
	if err := os.WriteFile(flag, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	rec.wait(t, "app/a1", Up)
}

// TestHTTPSCAFileRenewed: a checker notices a rewritten ca_file at its next
// check, without a reload (a new prober).
func TestHTTPSCAFileRenewed(t *testing.T) {
	pki, other := newTestPKI(t), newTestPKI(t)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{pki.server}}
	srv.StartTLS()
	defer srv.Close()
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	copyFile(t, other.caFile, caFile) // the wrong CA first
	tg := Target{Key: "web/w1", Addr: netip.MustParseAddrPort(srv.Listener.Addr().String()),
		Check: config.Check{Type: config.CheckHTTPS, Path: "/", ExpectStatus: 200, CAFile: caFile, Timeout: time.Second}}
	p, err := newProber(tg)
	if err != nil {
		t.Fatal(err)
	}
	run := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		return p.probe(ctx)
	}
	wantErr(t, run(), "is not signed by a CA in "+caFile)
	copyFile(t, pki.caFile, caFile)
	wantErr(t, run(), "")
	if err := os.Remove(caFile); err != nil {
		t.Fatal(err)
	}
	wantErr(t, run(), "cannot verify certificates: read CA file")
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	// A new file each time (rename), as a configuration tool writes it.
	tmp := to + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, to); err != nil {
		t.Fatal(err)
	}
}

// TestExecLeftoverChildIsNotAFailure: a command that exits 0 but leaves a
// child holding its output is up: the check does not wait for the child
// (which outlives the timeout, so waiting would fail the check), its pipes
// are closed after execWaitDelay.
func TestExecLeftoverChildIsNotAFailure(t *testing.T) {
	c := config.Check{Type: config.CheckExec, Timeout: time.Second, Command: script(t, "sleep 3 & exit 0")}
	wantErr(t, probeCheck(t, netip.MustParseAddrPort("192.0.2.11:0"), c), "")
}

// TestHTTPSHungBackendLeaksNothing: a backend whose kernel accepts but
// whose TLS server never answers fails each check, and the handshakes of
// those checks end with them (http.Transport dials with a context that is
// never cancelled: without the check's own bound every check would leave a
// goroutine stuck in the handshake, and through the DSR path a source port).
func TestHTTPSHungBackendLeaksNothing(t *testing.T) {
	ln := silentListener(t)
	addr := netip.MustParseAddrPort(ln.Addr().String())
	c := config.Check{Type: config.CheckHTTPS, Timeout: 200 * time.Millisecond, Path: "/", ExpectStatus: 200,
		Method: "GET", InsecureSkipVerify: true}
	before := runtime.NumGoroutine()
	const checks = 5
	for range checks {
		if err := probeCheck(t, addr, c); err == nil {
			t.Fatal("the check of a TLS server that never answers passed")
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before+2 {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("%d goroutines after %d failed checks, %d before:\n%s", runtime.NumGoroutine(), checks, before, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(20 * time.Millisecond)
	}
}
