package integration

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf/link"

	"github.com/dsrlb/dsrlb/integration/topo"
)

// linkProgramID is the id of the program on lbd's pinned tcx link.
func linkProgramID(t *testing.T, tp *topo.Topology) uint32 {
	t.Helper()
	l, err := link.LoadPinnedLink(filepath.Join(tp.PinPath, "link"), nil)
	if err != nil {
		t.Fatalf("load lbd's pinned tcx link: %v", err)
	}
	defer l.Close()
	info, err := l.Info()
	if err != nil {
		t.Fatalf("read tcx link info: %v", err)
	}
	return uint32(info.Program)
}

// TestSecondRunRefused: a second `lbd run` on the same pin path exits at
// once naming the running lbd, and changes nothing: same PID file, same
// program on the tcx link, forwarding on; `lbd detach` refuses too.
func TestSecondRunRefused(t *testing.T) {
	s := begin(t, "second-run-and-detach-refused")
	e := startLB(t, s, topo.Options{}, func(tp *topo.Topology) topo.Config { return web(tp, "") })
	pidFile := e.tp.LbdPIDFile(e.tp.Balancer)
	pidBefore, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	progBefore := linkProgramID(t, e.tp)

	second, err := e.tp.StartLbd()
	if err != nil {
		t.Fatal(err)
	}
	if err := second.Wait(20 * time.Second); err == nil {
		t.Fatalf("second lbd run exited 0:\n%s", second.Output())
	}
	want := fmt.Sprintf("lbd is already running (pid %d)", e.lbd.PID())
	if !strings.Contains(second.Output(), want) {
		t.Errorf("second lbd run does not say %q:\n%s", want, second.Output())
	}
	if ok, _ := e.lbd.Exited(); ok {
		t.Fatalf("the first lbd exited:\n%s", e.lbd.Output())
	}
	if b, err := os.ReadFile(pidFile); err != nil || string(b) != string(pidBefore) {
		t.Errorf("PID file %s changed: %q (%v), was %q", pidFile, b, err, pidBefore)
	}
	if got := linkProgramID(t, e.tp); got != progBefore {
		t.Errorf("program on the tcx link changed from %d to %d", progBefore, got)
	}
	out, err := e.tp.Lbd(context.Background(), "detach")
	if err == nil || !strings.Contains(out, "lbd is already running") {
		t.Errorf("lbd detach while lbd runs: %v\n%s", err, out)
	}
	if got := linkProgramID(t, e.tp); got != progBefore {
		t.Errorf("refused detach changed the tcx link's program from %d to %d", progBefore, got)
	}
	mustNoFailures(t, "requests after the refused run and detach", e.newConns(e.client, topo.URL(topo.VIP4, "/"), 30, 4, 30*time.Second))
	if out, err := e.tp.Lbd(context.Background(), "status"); err != nil || !strings.Contains(out, fmt.Sprintf("lbd is running (pid %d)", e.lbd.PID())) || strings.Contains(out, "NOT ATTACHED") {
		t.Errorf("lbd status does not name the running lbd: %v\n%s", err, out)
	}
	out, err = e.tp.Lbd(context.Background(), "detach", "--force")
	if err != nil || !strings.Contains(out, "detaching anyway") {
		t.Errorf("lbd detach --force: %v\n%s", err, out)
	}
	if _, err := os.Stat(e.tp.PinPath); err == nil {
		t.Error("lbd detach --force left the pin directory")
	}
}

// dumpMaps dumps every map pinned under pin with bpftool.
func dumpMaps(t *testing.T, pin string) string {
	t.Helper()
	ents, err := os.ReadDir(pin)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), "lb_") {
			continue // the link and program pins
		}
		out, err := exec.Command("bpftool", "map", "dump", "pinned", filepath.Join(pin, e.Name())).CombinedOutput()
		if err != nil {
			t.Fatalf("bpftool map dump %s: %v\n%s", e.Name(), err, out)
		}
		fmt.Fprintf(&b, "== %s\n%s", e.Name(), out)
	}
	return b.String()
}

// TestReadersLeaveMapsIdentical: with the configuration file edited (a
// shorter conntrack timeout), `lbd status`, `lbd explain` and `lbd flows` leave every
// pinned map byte for byte as it was: they open the pins read-only.
func TestReadersLeaveMapsIdentical(t *testing.T) {
	s := begin(t, "status-explain-leave-maps-identical")
	e := startLB(t, s, topo.Options{}, func(tp *topo.Topology) topo.Config { return web(tp, "") })
	mustNoFailures(t, "requests before", e.newConns(e.client, topo.URL(topo.VIP4, "/"), 20, 4, 30*time.Second))
	if err := e.lbd.Stop(10 * time.Second); err != nil { // no health checks: the maps stay still
		t.Fatal(err)
	}
	path := e.tp.ConfigPath()
	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	edited := strings.Replace(string(good), "balancer:\n", "balancer:\n  conntrack: {tcp_timeout: 1m, udp_timeout: 10s}\n", 1)
	if err := os.WriteFile(path, []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}
	for try := 0; ; try++ {
		// Two dumps with nothing in between must agree, or a stray frame
		// (neighbour traffic) was counted: try again.
		before := dumpMaps(t, e.tp.PinPath)
		if again := dumpMaps(t, e.tp.PinPath); again != before {
			if try == 3 {
				t.Fatal("pinned maps never stood still")
			}
			continue
		}
		out, err := e.tp.Lbd(context.Background(), "status")
		if err != nil || !strings.Contains(out, "lbd is not running (last seen") {
			t.Fatalf("lbd status with lbd stopped: %v\n%s", err, out)
		}
		if out, err := e.tp.Lbd(context.Background(), "explain", "tcp", "198.51.100.7:40000", topo.VIP4.String()+":80"); err != nil {
			t.Fatalf("lbd explain: %v\n%s", err, out)
		}
		for _, args := range [][]string{{"status", "--json", "--rate=200ms"}, {"flows"}, {"flows", "web"}} {
			if out, err := e.tp.Lbd(context.Background(), args...); err != nil {
				t.Fatalf("lbd %v: %v\n%s", args, err, out)
			}
		}
		if after := dumpMaps(t, e.tp.PinPath); after != before {
			t.Fatalf("lbd status/explain/flows changed the pinned maps:\nbefore:\n%s\nafter:\n%s", before, after)
		}
		return
	}
}

// TestFailedStartLeavesNothing: a start whose metrics port is taken fails
// before any kernel change: no VIP on the interface, no program attached.
func TestFailedStartLeavesNothing(t *testing.T) {
	s := begin(t, "failed-start-leaves-nothing")
	s.needRoot()
	tp := mustTopology(t, topo.Options{})
	holder, err := tp.Start(tp.Balancer, "port holder", tp.Bins.TestSrv, "-name", "holder", "-http", "9100", "-udp", "")
	if err != nil {
		t.Fatal(err)
	}
	if err := holder.WaitOutput(context.Background(), "ready", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	cfg := web(tp, "")
	cfg.MetricsListen = "127.0.0.1:9100"
	if _, err := tp.WriteConfig(cfg); err != nil {
		t.Fatal(err)
	}
	if out, err := tp.Lbd(context.Background(), "validate", "--host"); err == nil || !strings.Contains(out, "listen for metrics on 127.0.0.1:9100") {
		t.Errorf("lbd validate --host did not catch the taken metrics port: %v\n%s", err, out)
	}
	lbd, err := tp.StartLbd()
	if err != nil {
		t.Fatal(err)
	}
	if err := lbd.Wait(30 * time.Second); err == nil {
		t.Fatalf("lbd started with its metrics port taken:\n%s", lbd.Output())
	}
	if !strings.Contains(lbd.Output(), "listen for metrics on 127.0.0.1:9100") {
		t.Errorf("lbd's error does not name the metrics address:\n%s", lbd.Output())
	}
	ctx := ctxFor(t, 20*time.Second)
	addrs, _ := tp.Balancer.NS.Run(ctx, "ip", "addr", "show", "dev", tp.Balancer.Link)
	if strings.Contains(addrs, topo.VIP4.String()+"/") {
		t.Errorf("failed start left the VIP on %s:\n%s", tp.Balancer.Link, addrs)
	}
	progs, err := tp.Balancer.NS.Run(ctx, "bpftool", "net", "show", "dev", tp.Balancer.Link)
	if err != nil || strings.Contains(progs, "dsrlb") {
		t.Errorf("failed start left a program attached (%v):\n%s", err, progs)
	}
	if _, err := os.Stat(filepath.Join(tp.PinPath, "link")); err == nil {
		t.Error("failed start left a pinned tcx link")
	}
}

// TestAnsweredVIPNotTaken: a VIP another host on the segment already holds
// (the client, here) is not taken: ERROR log naming it and the other MAC,
// shown in lbd status; the other VIP is taken and served.
func TestAnsweredVIPNotTaken(t *testing.T) {
	s := begin(t, "answered-vip-not-taken")
	free := netip.MustParseAddr("192.0.2.30")
	e := startLB(t, s, topo.Options{}, func(tp *topo.Topology) topo.Config {
		if out, err := tp.Client.NS.Run(context.Background(), "ip", "addr", "add", topo.VIP4.String()+"/32", "dev", tp.Client.Dev); err != nil {
			t.Fatalf("give the client the VIP: %v\n%s", err, out)
		}
		return topo.Config{MetricsListen: "127.0.0.1:9469", Services: []topo.Service{
			tp.WebService("free", free, "", tp.Backends...),
			tp.WebService("stolen", topo.VIP4, "", tp.Backends...),
		}}
	})
	mac := e.tp.Client.MAC.String()
	out := e.lbd.Output()
	if !strings.Contains(out, "level=ERROR") || !strings.Contains(out, "vip="+topo.VIP4.String()) || !strings.Contains(out, "mac="+mac) {
		t.Errorf("no ERROR naming VIP %s and MAC %s:\n%s", topo.VIP4, mac, out)
	}
	ctx := ctxFor(t, 30*time.Second)
	addrs, _ := e.tp.Balancer.NS.Run(ctx, "ip", "addr", "show", "dev", e.tp.Balancer.Link)
	if strings.Contains(addrs, topo.VIP4.String()+"/") {
		t.Errorf("lbd took the VIP the client answers for:\n%s", addrs)
	}
	if !strings.Contains(addrs, free.String()+"/") {
		t.Errorf("lbd did not take the free VIP %s:\n%s", free, addrs)
	}
	st, err := e.tp.Lbd(ctx, "status")
	if err != nil || !strings.Contains(st, fmt.Sprintf("VIP %s NOT TAKEN: another host (%s)", topo.VIP4, mac)) {
		t.Errorf("lbd status does not report the VIP not taken: %v\n%s", err, st)
	}
	resp, err := e.tp.Balancer.HTTPClient(false, netip.Addr{}).Get("http://127.0.0.1:9469/metrics")
	if err != nil {
		t.Fatalf("scrape lbd's metrics: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if want := fmt.Sprintf("dsrlb_vip_conflict{mac=%q,vip=%q} 1", mac, topo.VIP4); !strings.Contains(string(body), want) {
		t.Errorf("metrics lack %s:\n%s", want, grepLines(string(body), "dsrlb_vip"))
	}
	mustNoFailures(t, "requests to the free VIP", e.newConns(e.client, topo.URL(free, "/"), 30, 4, 30*time.Second))
}

// TestPrivateMountNSWithoutBPFFS: lbd started in a private mount namespace
// that has no bpffs refuses with one clear line instead of mounting one
// that would vanish with it.
func TestPrivateMountNSWithoutBPFFS(t *testing.T) {
	s := begin(t, "private-mount-ns-no-bpffs-refused")
	s.needRoot()
	tp := mustTopology(t, topo.Options{})
	if _, err := tp.WriteConfig(web(tp, "")); err != nil {
		t.Fatal(err)
	}
	script := `while mountpoint -q /sys/fs/bpf; do umount /sys/fs/bpf; done; exec nsenter --net="$1" -- "$2" run --config "$3"`
	ctx := ctxFor(t, 30*time.Second)
	out, err := exec.CommandContext(ctx, "unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh",
		tp.Balancer.NS.Path(), tp.Bins.Lbd, tp.ConfigPath()).CombinedOutput()
	if err == nil {
		t.Fatalf("lbd ran without bpffs in a private mount namespace:\n%s", out)
	}
	if lines := strings.Split(strings.TrimSpace(string(out)), "\n"); len(lines) != 1 || !strings.Contains(lines[0], "private mount namespace") {
		t.Errorf("want one line naming the private mount namespace, got:\n%s", out)
	}
}

// TestErrorsOneLine: missing privileges and a wrong interface each give one
// clear line, from lbd run and from lbd validate --host.
func TestErrorsOneLine(t *testing.T) {
	s := begin(t, "errors-one-line")
	s.needRoot()
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Fatalf("setpriv (util-linux) missing: %v", err)
	}
	tp := mustTopology(t, topo.Options{})
	cfgPath, err := tp.WriteConfig(web(tp, ""))
	if err != nil {
		t.Fatal(err)
	}
	// A copy nobody can read, for the unprivileged run.
	b, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	pub := filepath.Join(os.TempDir(), tp.ID+"-public.yaml")
	if err := os.WriteFile(pub, b, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(pub) })
	oneLine := func(what, out string, want ...string) {
		t.Helper()
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != 1 {
			t.Errorf("%s: %d lines, want 1:\n%s", what, len(lines), out)
		}
		for _, w := range want {
			if !strings.Contains(out, w) {
				t.Errorf("%s: no %q in:\n%s", what, w, out)
			}
		}
	}
	ctx := ctxFor(t, 60*time.Second)
	for _, args := range [][]string{{"run"}, {"validate", "--host"}} {
		cmd := append([]string{"--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", tp.Bins.Lbd}, args...)
		out, err := tp.Balancer.NS.Run(ctx, "setpriv", append(cmd, "--config", pub)...)
		if err == nil {
			t.Errorf("lbd %v without privileges succeeded:\n%s", args, out)
		}
		oneLine("lbd "+strings.Join(args, " ")+" without privileges", out, "CAP_BPF", "CAP_NET_ADMIN", "CAP_PERFMON", "CAP_NET_RAW")
	}
	bad := strings.Replace(string(b), "interface: "+tp.Balancer.Link, "interface: nosuch9", 1)
	if err := os.WriteFile(cfgPath, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.WriteFile(cfgPath, b, 0o644) }) // for the topology's own detach
	if out, err := tp.Lbd(ctx, "validate"); err != nil {
		t.Errorf("plain validate needs no host and should pass: %v\n%s", err, out)
	}
	for _, args := range [][]string{{"validate", "--host"}, {"run"}} {
		out, err := tp.Lbd(ctx, args...)
		if err == nil {
			t.Errorf("lbd %v with a wrong interface succeeded:\n%s", args, out)
		}
		oneLine("lbd "+strings.Join(args, " ")+" with a wrong interface", out, `"nosuch9": no such interface`, tp.Balancer.Link)
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// detachPinnedLink detaches lbd's tcx link from the interface behind its
// back, as `bpftool link detach` would; the pin stays.
func detachPinnedLink(t *testing.T, tp *topo.Topology) {
	t.Helper()
	l, err := link.LoadPinnedLink(filepath.Join(tp.PinPath, "link"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := l.Detach(); err != nil {
		t.Fatalf("detach lbd's tcx link: %v", err)
	}
}

// TestDetachedLinkRepaired: a tcx link detached under a running lbd is
// noticed (ERROR log) and attached again, and forwarding resumes; with lbd
// stopped, lbd status reports the program not attached.
func TestDetachedLinkRepaired(t *testing.T) {
	s := begin(t, "detached-link-noticed-and-repaired")
	e := startLB(t, s, topo.Options{}, func(tp *topo.Topology) topo.Config { return web(tp, "") })
	detachPinnedLink(t, e.tp)
	if err := e.lbd.WaitOutput(context.Background(), "data plane re-attached", 20*time.Second); err != nil {
		t.Fatalf("lbd did not repair a detached link: %v", err)
	}
	if !strings.Contains(e.lbd.Output(), "level=ERROR") || !strings.Contains(e.lbd.Output(), "was detached") {
		t.Errorf("no ERROR about the detached link:\n%s", e.lbd.Output())
	}
	ctx := ctxFor(t, 30*time.Second)
	if err := topo.WaitServing(ctx, e.client, topo.URL(topo.VIP4, "/"), []string{"b1", "b2", "b3"}, 20*time.Second); err != nil {
		t.Fatalf("not serving after the repair: %v", err)
	}
	if err := e.lbd.Stop(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	detachPinnedLink(t, e.tp)
	out, err := e.tp.Lbd(ctx, "status")
	if err != nil || !strings.Contains(out, "PROGRAM NOT ATTACHED") {
		t.Errorf("lbd status with the link detached and lbd stopped: %v\n%s", err, out)
	}
}

// TestLateFailedStartUndone: a start that fails after attaching (here the
// BGP speaker finds no IPv4 address for its router id) undoes what it did:
// the data plane it created is detached and unpinned.
func TestLateFailedStartUndone(t *testing.T) {
	s := begin(t, "late-failed-start-undone")
	s.needRoot()
	tp := mustTopology(t, topo.Options{})
	ctx := ctxFor(t, 60*time.Second)
	lb := tp.Balancer
	// Keep the segment on-link (preflight passes) but leave no IPv4 address.
	for _, args := range [][]string{
		{"ip", "addr", "del", lb.IPv4.String() + "/24", "dev", lb.Dev},
		{"ip", "route", "replace", "192.0.2.0/24", "dev", lb.Dev},
	} {
		if out, err := lb.NS.Run(ctx, args[0], args[1:]...); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
	}
	cfg := web(tp, "")
	cfg.BGP = &topo.BGP{ASN: 64512, Peers: []topo.BGPPeer{{Address: netip.MustParseAddr("192.0.2.1"), ASN: 64513}}}
	if _, err := tp.WriteConfig(cfg); err != nil {
		t.Fatal(err)
	}
	lbd, err := tp.StartLbd()
	if err != nil {
		t.Fatal(err)
	}
	logOnFailure(t, lbd)
	if err := lbd.Wait(30 * time.Second); err == nil {
		t.Fatalf("lbd started without a router id:\n%s", lbd.Output())
	}
	if !strings.Contains(lbd.Output(), "attached with") || !strings.Contains(lbd.Output(), "failed start undone") {
		t.Errorf("lbd did not undo its failed start:\n%s", lbd.Output())
	}
	progs, err := lb.NS.Run(ctx, "bpftool", "net", "show", "dev", lb.Link)
	if err != nil || strings.Contains(progs, "dsrlb") {
		t.Errorf("failed start left a program attached (%v):\n%s", err, progs)
	}
	if ents, _ := os.ReadDir(tp.PinPath); len(ents) > 0 {
		t.Errorf("failed start left pins in %s: %v", tp.PinPath, ents)
	}
}
