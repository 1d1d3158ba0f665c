package integration

import (
	"context"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dsrlb/dsrlb/integration/topo"
)

// TestKilledLbdKeepsConnections: lbd killed with SIGKILL (no shutdown code
// runs) leaves the pinned data plane forwarding; long-lived connections
// keep their backend while it is gone and after a new lbd adopts it.
func TestKilledLbdKeepsConnections(t *testing.T) {
	s := begin(t, "lbd-sigkill-long-lived")
	e := startLB(t, s, topo.Options{}, func(tp *topo.Topology) topo.Config { return web(tp, "") })
	url := topo.URL(topo.VIP4, "/")
	ks := openKeepAlives(t, e.tp.Client, url, 6)
	poke := func(when string) {
		t.Helper()
		for _, k := range ks {
			if a := topo.Get(context.Background(), k.c, url); a.Err != nil || a.Backend != k.backend {
				t.Fatalf("%s: long-lived connection on %s: %+v", when, k.backend, a)
			}
		}
	}
	old := e.lbd
	old.Kill()
	poke("lbd killed")
	e.restartLbd(context.Background(), old)
	poke("after restart")
	mustNoFailures(t, "new connections after restart", e.newConns(e.client, url, 60, 4, 30*time.Second))
}

// TestBadReloadKeepsForwarding: a broken file is rejected with its
// file:line error, lbd keeps running the previous configuration, and
// traffic is never interrupted.
func TestBadReloadKeepsForwarding(t *testing.T) {
	s := begin(t, "bad-reload-keeps-forwarding")
	e := startLB(t, s, topo.Options{}, func(tp *topo.Topology) topo.Config { return web(tp, "") })
	url := topo.URL(topo.VIP4, "/")
	bg := startBackground(e.client, url, 2, 4000, 30*time.Second)
	defer bg.finish()
	path := e.tp.ConfigPath()
	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, append(good, []byte("services: [\n")...), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := e.tp.Lbd(context.Background(), "reload"); err == nil {
		t.Fatalf("lbd reload accepted a broken file:\n%s", out)
	}
	if err := e.lbd.Signal(syscall.SIGHUP); err != nil { // as systemctl reload would, bypassing the CLI's check
		t.Fatal(err)
	}
	if err := e.lbd.WaitOutput(context.Background(), "running configuration kept", 10*time.Second); err != nil {
		t.Fatalf("lbd did not report the rejected reload: %v\n%s", err, e.lbd.Output())
	}
	if !strings.Contains(e.lbd.Output(), path+":") {
		t.Errorf("rejection does not name file:line:\n%s", e.lbd.Output())
	}
	bg.waitAnswers(t, "after the rejected reload", 50, 20*time.Second)
	os.WriteFile(path, good, 0o644)
	as := bg.finish()
	plain := make([]topo.Answer, len(as))
	for i, a := range as {
		plain[i] = a.Answer
	}
	mustNoFailures(t, "requests across a rejected reload", plain)
	if ok, _ := e.lbd.Exited(); ok {
		t.Fatal("lbd exited on a bad reload")
	}
}

// TestBackendMACChangeFollowed: a backend whose NIC (and so MAC) changes
// is followed through the neighbour table; its traffic resumes at the new
// MAC without restarting or reloading lbd.
func TestBackendMACChangeFollowed(t *testing.T) {
	s := begin(t, "backend-mac-change-followed")
	e := startLB(t, s, topo.Options{}, func(tp *topo.Topology) topo.Config { return web(tp, "") })
	b2 := e.tp.Backend("b2")
	newMAC := net.HardwareAddr{0x00, 0x00, 0x5e, 0x00, 0x53, 0xb2}
	link, err := b2.NS.Netlink().LinkByName(b2.Link)
	if err != nil {
		t.Fatal(err)
	}
	if err := b2.NS.Netlink().LinkSetHardwareAddr(link, newMAC); err != nil {
		t.Fatalf("change b2's MAC: %v", err)
	}
	// Tell the segment at once, as a NIC swap with arp_notify would; lbd
	// must also get there by itself through its neighbour refresh.
	b2.NS.Run(context.Background(), "ping", "-c1", "-W1", e.tp.Balancer.IPv4.String())
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, _ := e.tp.Lbd(context.Background(), "status")
		if strings.Contains(out, newMAC.String()) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("lbd status never showed b2's new MAC %s:\n%s", newMAC, out)
		}
		time.Sleep(200 * time.Millisecond)
	}
	ctx := ctxFor(t, 30*time.Second)
	if err := topo.WaitServing(ctx, e.client, topo.URL(topo.VIP4, "/"), []string{"b1", "b2", "b3"}, 20*time.Second); err != nil {
		t.Fatalf("b2 not served at its new MAC: %v", err)
	}
}
