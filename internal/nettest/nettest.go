// Package nettest builds throw-away network namespaces for the privileged
// tests of lbd's packages: uniquely named, with the sysctls the tests rely
// on set explicitly, removed when the test ends (also on failure), and
// reached through a per-namespace netlink handle so no test thread ever
// switches namespace.
package nettest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/dsrlb/dsrlb/internal/bpffs"
)

// Require skips a test that needs root, or fails it under CI,
// where a missing capability is a broken runner, not a reason to skip.
func Require(t testing.TB) {
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

// PinPath returns a unique directory under /sys/fs/bpf for the test's
// pins, removed when the test ends. A machine booted without systemd has
// no bpffs there: it is mounted first (in the test's mount namespace).
func PinPath(t testing.TB, prefix string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		msg := "needs root to pin BPF objects under " + bpffs.Root
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	if _, err := bpffs.Mount(); err != nil {
		t.Fatalf("mount bpffs for the test's pins: %v", err)
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	p := filepath.Join(bpffs.Root, prefix+hex.EncodeToString(b))
	t.Cleanup(func() { os.RemoveAll(p) })
	return p
}

// NS is a named network namespace removed when the test ends.
type NS struct {
	Name   string
	Handle netns.NsHandle
	H      *netlink.Handle // netlink in the namespace, no thread switch needed
}

// New creates a namespace with lo up and the sysctls the tests rely on set
// explicitly (new namespaces inherit the host's conf/all values).
func New(t testing.TB) *NS {
	t.Helper()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	name := "dsrlbnb" + hex.EncodeToString(b)
	MustRun(t, "ip", "netns", "add", name)
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
	n := &NS{Name: name, Handle: ns, H: h}
	n.Run(t, "ip", "link", "set", "lo", "up")
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
		n.Run(t, "sysctl", "-qw", kv)
	}
	return n
}

// Run runs a command inside the namespace (ip netns exec) and fails the
// test on error. The command is bounded in time and waited for.
func (n *NS) Run(t testing.TB, args ...string) string {
	t.Helper()
	return MustRun(t, append([]string{"ip", "netns", "exec", n.Name}, args...)...)
}

// MustRun runs a command (bounded to 30s) and fails the test on error.
func MustRun(t testing.TB, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// Pair is a balancer namespace and a backend namespace joined by a veth:
// lb0 (192.0.2.1/24, 2001:db8::1/64) — peer0 (192.0.2.2/24, 2001:db8::2/64).
type Pair struct{ LB, Peer *NS }

// NewPair builds the pair and waits until IPv4 and IPv6 work on both sides.
func NewPair(t testing.TB) Pair {
	t.Helper()
	p := Pair{LB: New(t), Peer: New(t)}
	p.LB.Run(t, "ip", "link", "add", "name", "lb0", "type", "veth", "peer", "name", "peer0", "netns", p.Peer.Name)
	for _, side := range []struct {
		ns     *NS
		dev    string
		v4, v6 string
	}{{p.LB, "lb0", "192.0.2.1/24", "2001:db8::1/64"}, {p.Peer, "peer0", "192.0.2.2/24", "2001:db8::2/64"}} {
		side.ns.Run(t, "ip", "addr", "add", side.v4, "dev", side.dev)
		side.ns.Run(t, "ip", "addr", "add", side.v6, "dev", side.dev, "nodad")
		side.ns.Run(t, "ip", "link", "set", side.dev, "up")
	}
	// Carrier and IPv6 come up asynchronously (linkwatch): until the
	// multicast route exists, IPv6 multicast (ND) is dropped as "no route".
	for _, side := range []struct {
		ns  *NS
		dev string
	}{{p.LB, "lb0"}, {p.Peer, "peer0"}} {
		deadline := time.Now().Add(10 * time.Second)
		for !strings.Contains(side.ns.Run(t, "ip", "-6", "route", "show", "table", "local", "dev", side.dev), "ff00::/8") {
			if time.Now().After(deadline) {
				t.Fatalf("%s in %s did not come up", side.dev, side.ns.Name)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return p
}
