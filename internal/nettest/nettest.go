// Package nettest is the one support package for privileged tests: the
// policy for tests that cannot run here (SkipOrFail: skip, or fail under
// CI=true), privilege and tool checks, throw-away network namespaces
// created and entered on locked threads only (no test thread is ever left
// in another namespace), unique bpffs pin directories, and their removal
// when the test ends, also on failure.
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

// Suffix is n random bytes in hex, for unique namespace, link and pin
// names (tests of several packages run at once on one host).
func Suffix(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// PinPath returns a unique directory under /sys/fs/bpf for the test's
// pins, removed when the test ends. bpffs is one for the whole host, so
// pins never share a directory. A machine booted without systemd has no
// bpffs there: it is mounted first (in the test's mount namespace).
func PinPath(tb testing.TB, prefix string) string {
	tb.Helper()
	RequireRoot(tb, "pinning BPF objects under "+bpffs.Root)
	if _, err := bpffs.Mount(); err != nil {
		tb.Fatalf("mount bpffs for the test's pins: %v", err)
	}
	p := filepath.Join(bpffs.Root, prefix+Suffix(4))
	tb.Cleanup(func() { os.RemoveAll(p) })
	return p
}

// NS is a named network namespace (/run/netns/Name) removed when the test
// ends.
type NS struct {
	Name   string
	Handle netns.NsHandle
	H      *netlink.Handle // netlink in the namespace, no thread switch needed
}

// Create makes a namespace named prefix + a random suffix, visible to `ip
// netns exec`, as it comes from the kernel: lo down, conf/all sysctls
// inherited from the host. It is deleted when tb ends.
func Create(tb testing.TB, prefix string) *NS {
	tb.Helper()
	Require(tb)
	name := prefix + Suffix(4)
	h, err := CreateNamed(name)
	if err != nil {
		tb.Fatalf("create namespace %s: %v", name, err)
	}
	n := &NS{Name: name, Handle: h}
	tb.Cleanup(func() {
		if n.H != nil {
			n.H.Close()
		}
		h.Close()
		if err := netns.DeleteNamed(name); err != nil {
			tb.Errorf("delete namespace %s: %v", name, err)
		}
	})
	if n.H, err = netlink.NewHandleAt(h); err != nil {
		tb.Fatalf("netlink handle in %s: %v", name, err)
	}
	return n
}

// New creates a namespace with lo up and the sysctls the tests rely on set
// explicitly (new namespaces inherit the host's conf/all values).
func New(tb testing.TB) *NS {
	tb.Helper()
	n := Create(tb, "dsrlbnb")
	n.Run(tb, "ip", "link", "set", "lo", "up")
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
		n.Run(tb, "sysctl", "-qw", kv)
	}
	return n
}

// Do runs fn on a locked OS thread inside the namespace (see Do).
func (n *NS) Do(fn func() error) error { return Do(n.Handle, fn) }

// Run runs a command inside the namespace (ip netns exec) and fails the
// test on error. The command is bounded in time and waited for.
func (n *NS) Run(tb testing.TB, args ...string) string {
	tb.Helper()
	return MustRun(tb, append([]string{"ip", "netns", "exec", n.Name}, args...)...)
}

// Sh runs each command with sh -ec inside the namespace.
func (n *NS) Sh(tb testing.TB, cmds ...string) {
	tb.Helper()
	for _, c := range cmds {
		n.Run(tb, "sh", "-ec", c)
	}
}

// MustRun runs a command (bounded to 30s) and fails the test on error.
func MustRun(tb testing.TB, args ...string) string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput()
	if err != nil {
		tb.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// Pair is a balancer namespace and a backend namespace joined by a veth:
// lb0 (192.0.2.1/24, 2001:db8::1/64) — peer0 (192.0.2.2/24, 2001:db8::2/64).
type Pair struct{ LB, Peer *NS }

// NewPair builds the pair and waits until IPv4 and IPv6 work on both sides.
func NewPair(tb testing.TB) Pair {
	tb.Helper()
	p := Pair{LB: New(tb), Peer: New(tb)}
	p.LB.Run(tb, "ip", "link", "add", "name", "lb0", "type", "veth", "peer", "name", "peer0", "netns", p.Peer.Name)
	for _, side := range []struct {
		ns     *NS
		dev    string
		v4, v6 string
	}{{p.LB, "lb0", "192.0.2.1/24", "2001:db8::1/64"}, {p.Peer, "peer0", "192.0.2.2/24", "2001:db8::2/64"}} {
		side.ns.Run(tb, "ip", "addr", "add", side.v4, "dev", side.dev)
		side.ns.Run(tb, "ip", "addr", "add", side.v6, "dev", side.dev, "nodad")
		side.ns.Run(tb, "ip", "link", "set", side.dev, "up")
	}
	// Carrier and IPv6 come up asynchronously (linkwatch): until the
	// multicast route exists, IPv6 multicast (ND) is dropped as "no route".
	for _, side := range []struct {
		ns  *NS
		dev string
	}{{p.LB, "lb0"}, {p.Peer, "peer0"}} {
		deadline := time.Now().Add(10 * time.Second)
		for !strings.Contains(side.ns.Run(tb, "ip", "-6", "route", "show", "table", "local", "dev", side.dev), "ff00::/8") {
			if time.Now().After(deadline) {
				tb.Fatalf("%s in %s did not come up", side.dev, side.ns.Name)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return p
}
