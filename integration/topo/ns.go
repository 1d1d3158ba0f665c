package topo

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/dsrlb/dsrlb/internal/nettest"
)

// NS is a named network namespace (/run/netns/Name), as `ip netns add`
// creates it.
type NS struct {
	Name string

	h      netns.NsHandle
	handle *netlink.Handle
}

// newNS creates the namespace (as `ip netns add`, on a locked thread:
// nettest.CreateNamed) and opens a netlink handle bound to it.
func newNS(name string) (*NS, error) {
	h, err := nettest.CreateNamed(name)
	if err != nil {
		return nil, fmt.Errorf("create netns %s: %w", name, err)
	}
	n := &NS{Name: name, h: h}
	if n.handle, err = netlink.NewHandleAt(h); err != nil {
		return n, fmt.Errorf("open netlink in %s: %w", name, err)
	}
	return n, nil
}

// delete closes the handles and removes the namespace (ip netns del).
// Processes inside must have been killed before: they would keep it alive.
func (n *NS) delete() error {
	if n.handle != nil {
		n.handle.Close()
		n.handle = nil
	}
	if n.h >= 0 {
		n.h.Close()
		n.h = -1
	}
	if _, err := os.Stat(filepath.Join("/run/netns", n.Name)); os.IsNotExist(err) {
		return nil
	}
	if err := netns.DeleteNamed(n.Name); err != nil {
		return fmt.Errorf("delete netns %s: %w", n.Name, err)
	}
	return nil
}

// Netlink returns a netlink handle operating in the namespace; the caller's
// thread never changes namespace.
func (n *NS) Netlink() *netlink.Handle { return n.handle }

// Do runs fn on a locked OS thread inside the namespace (nettest.Do).
// Sockets fn creates stay in the namespace and may be used from any
// goroutine afterwards.
func (n *NS) Do(fn func() error) error { return nettest.Do(n.h, fn) }

// SetSysctl writes value to /proc/sys/<key> inside the namespace. Keys use
// '/' separators (net/ipv4/conf/eth0.100/arp_ignore), so interface names
// with dots need no escaping.
func (n *NS) SetSysctl(key, value string) error {
	return n.Do(func() error {
		if err := os.WriteFile(filepath.Join("/proc/sys", key), []byte(value), 0o644); err != nil {
			return fmt.Errorf("set sysctl %s=%s in %s: %w", key, value, n.Name, err)
		}
		return nil
	})
}

// Path is the namespace's bind mount, /run/netns/<Name>.
func (n *NS) Path() string { return filepath.Join("/run/netns", n.Name) }

// Run runs a short command inside the namespace and returns its combined
// output. It uses nsenter --net, which keeps the host's mounts: `ip netns
// exec` remounts /sys and so hides bpffs from lbd.
func (n *NS) Run(ctx context.Context, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "nsenter", append([]string{"--net=" + n.Path(), "--", name}, args...)...)
	cmd.Env = append(os.Environ(), envRun+"="+RunID)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s in %s: %w", filepath.Base(name), strings.Join(args, " "), n.Name, err)
	}
	return string(out), nil
}

// DialContext dials from inside the namespace; it fits
// http.Transport.DialContext. The socket is created on a thread in the
// namespace and then used like any other connection.
func (n *NS) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	return n.DialFrom(ctx, nil, network, addr)
}

// DialFrom is DialContext with a local address (a client's secondary
// address, to look like another client).
func (n *NS) DialFrom(ctx context.Context, local net.Addr, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := n.Do(func() error {
		var err error
		c, err = (&net.Dialer{LocalAddr: local}).DialContext(ctx, network, addr)
		return err
	})
	return c, err
}
