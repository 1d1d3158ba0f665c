package neigh

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// requirePrivileges skips a test that needs root, or fails it under CI,
// where a missing capability is a broken runner, not a reason to skip.
func requirePrivileges(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		if _, err := exec.LookPath("ip"); err == nil {
			return
		}
	}
	msg := "needs root and iproute2 to create network namespaces"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// testNS is a named network namespace removed when the test ends.
type testNS struct {
	name string
	ns   netns.NsHandle
	h    *netlink.Handle
}

func mustNS(t *testing.T) *testNS {
	t.Helper()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	name := "dsrlbnb" + hex.EncodeToString(b)
	mustRun(t, "ip", "netns", "add", name)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	ns, err := netns.GetFromName(name)
	if err != nil {
		t.Fatalf("open netns %s: %v", name, err)
	}
	t.Cleanup(func() { _ = ns.Close() })
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatalf("netlink handle in %s: %v", name, err)
	}
	t.Cleanup(h.Close)
	n := &testNS{name: name, ns: ns, h: h}
	n.run(t, "ip", "link", "set", "lo", "up")
	// New namespaces inherit the host's conf/all values: set what the
	// tests rely on (plain ARP behaviour, no reverse-path filter).
	for _, kv := range []string{
		"net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0",
		"net.ipv4.conf.all.arp_ignore=0", "net.ipv4.conf.all.arp_announce=0",
		"net.ipv4.conf.all.arp_filter=0", "net.ipv6.conf.all.disable_ipv6=0",
		"net.ipv6.conf.default.disable_ipv6=0",
		// Without DAD the link-local address is usable at once; while it
		// is tentative the kernel sends no neighbour solicitation at all.
		"net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0",
	} {
		n.run(t, "sysctl", "-qw", kv)
	}
	return n
}

// run runs a command inside the namespace (ip netns exec) and fails the
// test on error. The command is bounded in time and waited for.
func (n *testNS) run(t *testing.T, args ...string) string {
	t.Helper()
	return mustRun(t, append([]string{"ip", "netns", "exec", n.name}, args...)...)
}

func mustRun(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// pair is a balancer namespace and a backend namespace joined by a veth:
// lb0 (192.0.2.1/24, 2001:db8::1/64) — peer0 (192.0.2.2/24, 2001:db8::2/64).
type pair struct{ lb, peer *testNS }

func mustPair(t *testing.T) pair {
	t.Helper()
	p := pair{lb: mustNS(t), peer: mustNS(t)}
	p.lb.run(t, "ip", "link", "add", "name", "lb0", "type", "veth", "peer", "name", "peer0", "netns", p.peer.name)
	for _, side := range []struct {
		ns     *testNS
		dev    string
		v4, v6 string
	}{{p.lb, "lb0", "192.0.2.1/24", "2001:db8::1/64"}, {p.peer, "peer0", "192.0.2.2/24", "2001:db8::2/64"}} {
		side.ns.run(t, "ip", "addr", "add", side.v4, "dev", side.dev)
		side.ns.run(t, "ip", "addr", "add", side.v6, "dev", side.dev, "nodad")
		side.ns.run(t, "ip", "link", "set", side.dev, "up")
	}
	// Carrier and IPv6 come up asynchronously (linkwatch): until the
	// multicast route exists, IPv6 multicast (ND) is dropped as "no route".
	for _, side := range []struct {
		ns  *testNS
		dev string
	}{{p.lb, "lb0"}, {p.peer, "peer0"}} {
		deadline := time.Now().Add(10 * time.Second)
		for !strings.Contains(side.ns.run(t, "ip", "-6", "route", "show", "table", "local", "dev", side.dev), "ff00::/8") {
			if time.Now().After(deadline) {
				t.Fatalf("%s in %s did not come up", side.dev, side.ns.name)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return p
}
