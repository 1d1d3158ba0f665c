package integration

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dsrlb/dsrlb/integration/topo"
	"github.com/dsrlb/dsrlb/internal/nettest"
	"github.com/dsrlb/dsrlb/lbd/health"
)

// VIPs of the check-type scenario, one per kind of server.
var (
	dnsVIP    = netip.MustParseAddr("192.0.2.20")
	echoVIP   = netip.MustParseAddr("192.0.2.30")
	scriptVIP = netip.MustParseAddr("192.0.2.40")
)

// typeCheck is the rhythm of every check of the scenario, as FastCheck.
func typeCheck(typ string, port int, extra ...string) topo.Check {
	c := topo.FastCheck(port)
	c.Type, c.Extra = typ, extra
	return c
}

// TestHealthCheckTypes: each check type goes down and comes back against
// the real server it checks: Debian's nginx over TLS (https, with SNI,
// a private CA and a body match), Debian's unbound (dns over UDP and
// over TCP), the test server's UDP echo (udp; stopped, the backend
// answers ICMP port unreachable) and a script (exec, with the target in
// its environment and a per-server check_port). The down reason lbd logs
// is the prober's own, naming what failed.
func TestHealthCheckTypes(t *testing.T) {
	s := begin(t, "health-check-types")
	s.needRoot()
	s.needTools("nginx", "unbound")
	tp := mustTopology(t, topo.Options{})
	b1, b2, b3 := tp.Backends[0], tp.Backends[1], tp.Backends[2]
	dir := tp.Dir
	caFile := writeTLSFiles(t, dir, b1.IPv4)
	script := writeScript(t, dir, b1.IPv4)
	flag := filepath.Join(dir, "flags", "b1.ok")
	if err := os.WriteFile(flag, nil, 0o644); err != nil {
		t.Fatal(err)
	}

	cfg := topo.Config{Services: []topo.Service{
		{Name: "tls", VIP: topo.VIP4, Protocol: "tcp", Ports: []int{443},
			Check:   typeCheck("https", 443, "sni: www.dsrlb.test", "ca_file: "+caFile, "path: /health", "expect_body: nginx-b1"),
			Servers: []topo.Server{{Name: "b1", Address: b1.IPv4, Weight: 1}}},
		{Name: "dns", VIP: dnsVIP, Protocol: "udp", Ports: []int{53},
			Check:   typeCheck("dns", 53, "query: health.dsrlb.test", "query_type: A"),
			Servers: []topo.Server{{Name: "b2", Address: b2.IPv4, Weight: 1}}},
		{Name: "dnstcp", VIP: dnsVIP, Protocol: "tcp", Ports: []int{53},
			Check:   typeCheck("dns", 53, "query: health.dsrlb.test", "query_type: A"),
			Servers: []topo.Server{{Name: "b2", Address: b2.IPv4, Weight: 1}}},
		{Name: "echo", VIP: echoVIP, Protocol: "udp", Ports: []int{topo.UDPPort},
			Check:   typeCheck("udp", topo.UDPPort, `send: 'ping\n'`, "expect: backend=b3"),
			Servers: []topo.Server{{Name: "b3", Address: b3.IPv4, Weight: 1}}},
		{Name: "script", VIP: scriptVIP, Protocol: "tcp", Ports: []int{topo.HTTPPort},
			Check:   typeCheck("exec", topo.HTTPPort, "command: "+script, "args: ["+filepath.Dir(flag)+"]"),
			Servers: []topo.Server{{Name: "b1", Address: b1.IPv4, Weight: 1, CheckPort: 8080}}},
	}}
	ctx := ctxFor(t, 3*time.Minute)
	if _, err := tp.WriteConfig(cfg); err != nil {
		t.Fatal(err)
	}
	if out, err := tp.Lbd(ctx, "validate"); err != nil {
		t.Fatalf("lbd validate refuses the scenario's configuration:\n%s\n%s", tp.Render(cfg), out)
	}
	if _, err := tp.PrepareBackends(ctx); err != nil {
		t.Fatal(err)
	}
	nginx := startNginx(t, tp, b1, dir)
	unbound := startUnbound(t, tp, b2, dir)
	echo, err := tp.StartServer(ctx, b3)
	if err != nil {
		t.Fatal(err)
	}
	logOnFailure(t, echo)
	lbd, err := tp.StartLbd()
	if err != nil {
		t.Fatal(err)
	}
	logOnFailure(t, lbd)

	// rotations counts the "in rotation" lines each backend must have
	// printed by now: lbd logs one at start and one after every repair.
	rotations := map[string]int{}
	inRotation := func(t *testing.T, keys ...string) {
		t.Helper()
		for _, k := range keys {
			rotations[k]++
			if err := lbd.WaitOutputN(ctx, `msg="backend in rotation" backend=`+k, rotations[k], 20*time.Second); err != nil {
				t.Fatal(err)
			}
			waitState(t, tp, k, "up", 5*time.Second)
		}
	}
	downs := map[string]int{}
	down := func(t *testing.T, key string, why ...string) {
		t.Helper()
		downs[key]++
		if err := waitLine(lbd, downs[key], 20*time.Second, append([]string{`msg="backend down" backend=` + key + " "}, why...)...); err != nil {
			t.Fatal(err)
		}
		waitState(t, tp, key, "down", 5*time.Second)
	}
	inRotation(t, "tls/b1", "dns/b2", "dnstcp/b2", "echo/b3", "script/b1")
	// lbd logs at most one transition per backend per LogEvery: the first
	// "backend down", whose reason the subtests read, must come after the
	// start's "backend up" by that much, or it is folded into a later
	// "backend flapping" line without its reason.
	time.Sleep(health.DefaultLogEvery)

	t.Run("https", func(t *testing.T) {
		if err := nginx.Stop(5 * time.Second); err != nil {
			t.Fatal(err)
		}
		down(t, "tls/b1", "failed https checks", "https://"+b1.IPv4.String()+":443/health")
		nginx = startNginx(t, tp, b1, dir)
		inRotation(t, "tls/b1")
	})
	t.Run("dns", func(t *testing.T) {
		if err := unbound.Stop(5 * time.Second); err != nil {
			t.Fatal(err)
		}
		down(t, "dns/b2", "ICMP port unreachable: no DNS server listens there")
		down(t, "dnstcp/b2", "failed dns checks, last: dns tcp "+b2.IPv4.String()+":53")
		unbound = startUnbound(t, tp, b2, dir)
		inRotation(t, "dns/b2", "dnstcp/b2")
	})
	t.Run("udp", func(t *testing.T) {
		if err := echo.Stop(5 * time.Second); err != nil {
			t.Fatal(err)
		}
		down(t, "echo/b3", "ICMP port unreachable: nothing listens on that port")
		if echo, err = tp.StartServer(ctx, b3); err != nil {
			t.Fatal(err)
		}
		logOnFailure(t, echo)
		inRotation(t, "echo/b3")
	})
	t.Run("exec", func(t *testing.T) {
		if err := os.Remove(flag); err != nil {
			t.Fatal(err)
		}
		down(t, "script/b1", "exited with status 1: maintenance flag", "b1.ok missing")
		if err := os.WriteFile(flag, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		inRotation(t, "script/b1")
	})
	if out := lbd.Output(); strings.Contains(out, "unexpected target") {
		t.Errorf("the exec check saw another target than configured:\n%s", out)
	}
}

// waitLine waits until p has printed n lines containing every fragment.
func waitLine(p *topo.Proc, n int, d time.Duration, frags ...string) error {
	deadline := time.Now().Add(d)
	for {
		count := 0
		for _, l := range strings.Split(p.Output(), "\n") {
			all := true
			for _, f := range frags {
				all = all && strings.Contains(l+"\n", f)
			}
			if all {
				count++
			}
		}
		if count >= n {
			return nil
		}
		if ok, err := p.Exited(); ok {
			return fmt.Errorf("%s exited (%v) before printing a line with %q", p.Name, err, frags)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s printed %d of %d lines with %q within %s; output:\n%s", p.Name, count, n, frags, d, p.Output())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitState waits until `lbd status --json` shows backend key
// (service/server) in state want: the data plane follows a check's
// verdict on the daemon's next loop step.
func waitState(t *testing.T, tp *topo.Topology, key, want string, d time.Duration) {
	t.Helper()
	svc, srv, _ := strings.Cut(key, "/")
	deadline := time.Now().Add(d)
	for {
		state, reason := "missing", ""
		for _, s := range lbdStatus(t, tp, tp.Balancer).Services {
			for _, b := range s.Backends {
				if s.Name == svc && b.Name == srv {
					state, reason = b.State, b.StateReason
				}
			}
		}
		if state == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("lbd status: %s is %s (%s) after %s, want %s", key, state, reason, d, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// writeTLSFiles writes a private CA and, signed by it, nginx's certificate
// for www.dsrlb.test (and the backend's own address) into dir; it returns
// the CA's file, which the check's ca_file names.
func writeTLSFiles(t *testing.T, dir string, addr netip.Addr) string {
	t.Helper()
	p := nettest.NewPKI(t, "www.dsrlb.test", addr.AsSlice())
	for name, text := range map[string][]byte{"ca.pem": p.CAPEM(), "server.pem": p.LeafPEM(), "server.key": p.KeyPEM(t)} {
		if err := os.WriteFile(filepath.Join(dir, name), text, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(dir, "ca.pem")
}

// startNginx runs Debian's nginx on b as one process (no master, no
// daemon: its PID is the server), TLS on 443 of every address of b.
func startNginx(t *testing.T, tp *topo.Topology, b *topo.Host, dir string) *topo.Proc {
	t.Helper()
	run := filepath.Join(dir, "nginx")
	if err := os.MkdirAll(run, 0o700); err != nil {
		t.Fatal(err)
	}
	conf := fmt.Sprintf(`daemon off;
master_process off;
pid %[1]s/nginx.pid;
error_log stderr notice;
events { worker_connections 64; }
http {
	access_log off;
	client_body_temp_path %[1]s/body;
	proxy_temp_path %[1]s/proxy;
	fastcgi_temp_path %[1]s/fastcgi;
	uwsgi_temp_path %[1]s/uwsgi;
	scgi_temp_path %[1]s/scgi;
	server {
		listen 443 ssl;
		server_name www.dsrlb.test;
		ssl_certificate %[2]s/server.pem;
		ssl_certificate_key %[2]s/server.key;
		location = /health { return 200 "nginx-%[3]s\n"; }
	}
}
`, run, dir, b.Role)
	path := filepath.Join(run, "nginx.conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	p, err := tp.Start(b, "nginx "+b.Role, "nginx", "-p", run, "-c", path, "-e", "stderr")
	if err != nil {
		t.Fatal(err)
	}
	logOnFailure(t, p)
	return p
}

// startUnbound runs Debian's unbound on b in the foreground, serving the
// zone dsrlb.test (health.dsrlb.test A 192.0.2.99) over UDP and TCP on
// every address of b, the VIPs on lo included.
func startUnbound(t *testing.T, tp *topo.Topology, b *topo.Host, dir string) *topo.Proc {
	t.Helper()
	conf := fmt.Sprintf(`server:
	interface: 0.0.0.0
	interface-automatic: yes
	port: 53
	do-ip6: no
	do-daemonize: no
	use-syslog: no
	logfile: ""
	verbosity: 1
	chroot: ""
	username: ""
	directory: "%[1]s"
	pidfile: "%[1]s/unbound-%[2]s.pid"
	access-control: 0.0.0.0/0 allow
	local-zone: "dsrlb.test." static
	local-data: "health.dsrlb.test. 60 IN A 192.0.2.99"
remote-control:
	control-enable: no
`, dir, b.Role)
	path := filepath.Join(dir, "unbound-"+b.Role+".conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	p, err := tp.Start(b, "unbound "+b.Role, "unbound", "-d", "-c", path)
	if err != nil {
		t.Fatal(err)
	}
	logOnFailure(t, p)
	return p
}

// writeScript writes the exec check's script: up while the flag file
// of the server exists in the directory given as its argument, and only
// for the target the scenario configured (environment and check_port).
func writeScript(t *testing.T, dir string, addr netip.Addr) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(dir, "flags"), 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "check-flag.sh")
	body := `#!/bin/sh
target="$DSRLB_SERVICE $DSRLB_SERVER $DSRLB_VIP $DSRLB_ADDRESS $DSRLB_PORT"
[ "$target" = "script b1 ` + scriptVIP.String() + ` ` + addr.String() + ` 8080" ] || { echo "unexpected target: $target"; exit 2; }
[ -e "$1/$DSRLB_SERVER.ok" ] || { echo "maintenance flag: $1/$DSRLB_SERVER.ok missing"; exit 1; }
`
	if err := os.WriteFile(path, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}
