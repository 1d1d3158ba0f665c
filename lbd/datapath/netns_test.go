package datapath

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/dsrlb/dsrlb/internal/nettest"

	"github.com/vishvananda/netlink"
)

// topo is client, balancer and backend namespaces on a bridge in a fourth
// ("switch") namespace. Addresses: client 192.0.2.1, balancer 192.0.2.2,
// backend 192.0.2.3 with the VIP 192.0.2.10 on lo.
type topo struct {
	sw, cli, lb, be string // namespace names
	lbMAC, beMAC    net.HardwareAddr
	lbIface         string
}

const e2eVIP = "192.0.2.10"

func randomSuffix() string { return nettest.Suffix(3) }

func sh(t *testing.T, args ...string) string {
	t.Helper()
	return strings.TrimSpace(nettest.MustRun(t, args...))
}

func newTopo(t *testing.T) *topo {
	t.Helper()
	requirePrivileged(t)
	tp := &topo{lbIface: "lb0"}
	for _, ns := range []struct {
		name *string
		role string
	}{{&tp.sw, "sw"}, {&tp.cli, "c"}, {&tp.lb, "l"}, {&tp.be, "b"}} {
		*ns.name = nettest.Create(t, "dsrdp-"+ns.role+"-").Name
	}
	sh(t, "ip", "-n", tp.sw, "link", "add", "name", "br0", "type", "bridge")
	sh(t, "ip", "netns", "exec", tp.sw, "sh", "-c", "echo 0 > /sys/class/net/br0/bridge/nf_call_iptables 2>/dev/null; true")
	sh(t, "ip", "-n", tp.sw, "link", "set", "br0", "up")
	for _, end := range []struct{ ns, ifname, addr string }{
		{tp.cli, "c0", "192.0.2.1/24"}, {tp.lb, tp.lbIface, "192.0.2.2/24"}, {tp.be, "b0", "192.0.2.3/24"},
	} {
		port := "p" + end.ifname
		sh(t, "ip", "-n", tp.sw, "link", "add", "name", port, "type", "veth", "peer", "name", end.ifname, "netns", end.ns)
		sh(t, "ip", "-n", tp.sw, "link", "set", port, "master", "br0", "up")
		sh(t, "ip", "-n", end.ns, "addr", "add", end.addr, "dev", end.ifname)
		sh(t, "ip", "-n", end.ns, "link", "set", end.ifname, "up")
		sh(t, "ip", "-n", end.ns, "link", "set", "lo", "up")
		for _, k := range []string{"all", "default", end.ifname} {
			sh(t, "ip", "netns", "exec", end.ns, "sysctl", "-qw", "net.ipv4.conf."+k+".rp_filter=0")
		}
	}
	sh(t, "ip", "-n", tp.lb, "addr", "add", e2eVIP+"/32", "dev", tp.lbIface)
	sh(t, "ip", "-n", tp.be, "addr", "add", e2eVIP+"/32", "dev", "lo")
	sh(t, "ip", "netns", "exec", tp.be, "sysctl", "-qw", "net.ipv4.conf.all.arp_ignore=1", "net.ipv4.conf.all.arp_announce=2")
	tp.lbMAC = tp.mac(t, tp.lb, tp.lbIface)
	tp.beMAC = tp.mac(t, tp.be, "b0")
	// The client reaches the VIP through the balancer (in production: ARP).
	sh(t, "ip", "-n", tp.cli, "neigh", "replace", e2eVIP, "lladdr", tp.lbMAC.String(), "dev", "c0", "nud", "permanent")
	return tp
}

func (tp *topo) mac(t *testing.T, ns, ifname string) net.HardwareAddr {
	var mac net.HardwareAddr
	err := inNetns(ns, func() error {
		l, err := netlink.LinkByName(ifname)
		if err == nil {
			mac = l.Attrs().HardwareAddr
		}
		return err
	})
	if err != nil {
		t.Fatalf("read MAC of %s in %s: %v", ifname, ns, err)
	}
	return mac
}

// inNetns runs fn on a locked OS thread in namespace name; the calling
// goroutine never changes namespace.
func inNetns(name string, fn func() error) error { return nettest.DoIn(name, fn) }

// listen opens a UDP socket on the VIP in the backend namespace.
func (tp *topo) listen(t *testing.T, port int) *net.UDPConn {
	var c *net.UDPConn
	err := inNetns(tp.be, func() error {
		var err error
		c, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(e2eVIP), Port: port})
		return err
	})
	if err != nil {
		t.Fatalf("listen in backend: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// send sends payload from the client to VIP:port.
func (tp *topo) send(t *testing.T, port int, payload []byte) {
	err := inNetns(tp.cli, func() error {
		c, err := net.DialUDP("udp4", &net.UDPAddr{IP: net.ParseIP("192.0.2.1"), Port: 40000},
			&net.UDPAddr{IP: net.ParseIP(e2eVIP), Port: port})
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Write(payload)
		return err
	})
	if err != nil {
		t.Fatalf("send from client: %v", err)
	}
}

// received reports whether payload reached the backend's socket.
func received(c *net.UDPConn, payload []byte, wait time.Duration) bool {
	buf := make([]byte, 2048)
	deadline := time.Now().Add(wait)
	for {
		c.SetReadDeadline(deadline)
		n, _, err := c.ReadFromUDP(buf)
		if err != nil {
			return false
		}
		if bytes.Equal(buf[:n], payload) {
			return true
		}
	}
}

func (tp *topo) services() []Service {
	bes := []Backend{{Name: "be", Addr: ip4("192.0.2.3"), MAC: tp.beMAC, Weight: 1, State: Up}}
	return []Service{
		{Name: "e2e", VIP: ip4(e2eVIP), Proto: UDP, Ports: []uint16{5000}, Backends: bes},
		{Name: "e2e-tcp", VIP: ip4(e2eVIP), Proto: TCP, Ports: []uint16{8080}, Backends: bes},
	}
}

// tcpExchange connects from the client to VIP:8080, where the backend
// echoes: the handshake only completes if SYN and ACK go through the
// balancer and the backend's replies reach the client directly (DSR).
func (tp *topo) tcpExchange(t *testing.T) {
	var ln net.Listener
	if err := inNetns(tp.be, func() error {
		var err error
		ln, err = net.Listen("tcp4", e2eVIP+":8080")
		return err
	}); err != nil {
		t.Fatalf("listen in backend: %v", err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		buf := make([]byte, 64)
		n, _ := c.Read(buf)
		c.Write(append([]byte("echo:"), buf[:n]...))
	}()
	var reply []byte
	err := inNetns(tp.cli, func() error {
		c, err := net.DialTimeout("tcp4", e2eVIP+":8080", 3*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(3 * time.Second))
		if _, err := c.Write([]byte("hello")); err != nil {
			return err
		}
		buf := make([]byte, 64)
		n, err := c.Read(buf)
		reply = buf[:n]
		return err
	})
	if err != nil || string(reply) != "echo:hello" {
		t.Fatalf("TCP through the balancer: reply %q, %v", reply, err)
	}
}

// openIn opens and attaches a data plane in the balancer namespace.
func (tp *topo) openIn(t *testing.T, opts Options) *Datapath {
	t.Helper()
	opts.Interface = tp.lbIface
	var d *Datapath
	err := inNetns(tp.lb, func() error {
		var err error
		if d, err = Open(opts, nil); err != nil {
			return err
		}
		if err := d.Apply(tp.services()); err != nil {
			return err
		}
		return d.Attach()
	})
	if err != nil {
		t.Fatalf("open and attach in balancer: %v", err)
	}
	return d
}

func (tp *topo) expectForwarded(t *testing.T, c *net.UDPConn, want bool, what string) {
	t.Helper()
	payload := []byte(fmt.Sprintf("%s-%s", what, randomSuffix()))
	tp.send(t, 5000, payload)
	if got := received(c, payload, time.Second); got != want {
		t.Fatalf("%s: backend received the datagram = %v, want %v", what, got, want)
	}
}

func TestEndToEnd(t *testing.T) {
	for _, clsact := range []bool{false, true} {
		t.Run(fmt.Sprintf("clsact=%v", clsact), func(t *testing.T) {
			tp := newTopo(t)
			c := tp.listen(t, 5000)
			tp.expectForwarded(t, c, false, "before attach") // the balancer keeps it
			d := tp.openIn(t, Options{ForceClsact: clsact, MaglevTableSize: 251, ConntrackSize: 4096})
			t.Cleanup(func() { inNetns(tp.lb, d.Remove) })
			tp.expectForwarded(t, c, true, "attached")
			tp.tcpExchange(t)
			if clsact {
				tp.requireClsactFilter(t)
			}
			st, err := d.Stats()
			if err != nil || st.Services[0].Backends[0].Counters.Packets == 0 {
				t.Fatalf("backend counters after forwarding: %+v, %v", st, err)
			}
			if err := inNetns(tp.lb, d.Detach); err != nil {
				t.Fatal(err)
			}
			tp.expectForwarded(t, c, false, "detached")
		})
	}
}

// requireClsactFilter checks with netlink that a cls_bpf direct-action
// filter sits on the balancer's clsact ingress.
func (tp *topo) requireClsactFilter(t *testing.T) {
	err := inNetns(tp.lb, func() error {
		l, err := netlink.LinkByName(tp.lbIface)
		if err != nil {
			return err
		}
		filters, err := netlink.FilterList(l, netlink.HANDLE_MIN_INGRESS)
		if err != nil {
			return err
		}
		for _, f := range filters {
			if bf, ok := f.(*netlink.BpfFilter); ok && bf.DirectAction && strings.HasPrefix(bf.Name, clsactFilterName) {
				return nil
			}
		}
		return fmt.Errorf("no direct-action cls_bpf filter among %v", filters)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func testPinPath(t *testing.T) string {
	return nettest.PinPath(t, "dsrlb-test-")
}

func TestPinAdoptRemove(t *testing.T) {
	tp := newTopo(t)
	c := tp.listen(t, 5000)
	pin := testPinPath(t)
	opts := Options{PinPath: pin, MaglevTableSize: 251, ConntrackSize: 4096}

	d1 := tp.openIn(t, opts)
	if d1.Adopted() {
		t.Fatal("fresh pin path reported as adopted")
	}
	tp.expectForwarded(t, c, true, "first lbd")
	flow := Flow{Src: ap("192.0.2.1:40000"), Dst: ap(e2eVIP + ":5000"), Proto: UDP}
	if err := d1.Close(); err != nil {
		t.Fatal(err)
	}
	tp.expectForwarded(t, c, true, "no lbd running (pinned link)")

	d2 := tp.openIn(t, opts)
	t.Cleanup(func() { inNetns(tp.lb, d2.Remove) })
	if !d2.Adopted() {
		t.Fatal("second lbd did not adopt the pinned maps")
	}
	if info, err := d2.LookupFlow(flow); err != nil || !info.Tracked || info.Backend != "be" {
		t.Fatalf("adopted conntrack: %+v, %v", info, err)
	}
	tp.expectForwarded(t, c, true, "second lbd")

	// A different table size cannot be adopted...
	bad := opts
	bad.MaglevTableSize = 1009
	bad.Interface = tp.lbIface
	if _, err := Open(bad, nil); !errors.Is(err, ErrIncompatible) {
		t.Fatalf("open with another table size: %v, want ErrIncompatible", err)
	}

	if err := inNetns(tp.lb, d2.Remove); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(pin); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("pin path after Remove: %v", err)
	}
	tp.expectForwarded(t, c, false, "removed")

	// ...unless asked to replace it.
	bad.ReplaceIncompatible = true
	d3 := tp.openIn(t, opts)
	d3.Close()
	err := inNetns(tp.lb, func() error {
		d4, err := Open(bad, nil)
		if err != nil {
			return err
		}
		return d4.Remove()
	})
	if err != nil {
		t.Fatalf("open with ReplaceIncompatible: %v", err)
	}
}

// TestClsactToTCX: an lbd that attached with clsact (old kernel), replaced
// by one using tcx (after an upgrade), leaves no stale filter behind.
func TestClsactToTCX(t *testing.T) {
	tp := newTopo(t)
	c := tp.listen(t, 5000)
	opts := Options{PinPath: testPinPath(t), MaglevTableSize: 251, ConntrackSize: 4096}
	old := opts
	old.ForceClsact = true
	d1 := tp.openIn(t, old)
	tp.requireClsactFilter(t)
	d1.Close()
	tp.expectForwarded(t, c, true, "clsact lbd gone")

	d2 := tp.openIn(t, opts)
	t.Cleanup(func() { inNetns(tp.lb, d2.Remove) })
	tp.expectForwarded(t, c, true, "tcx lbd")
	err := inNetns(tp.lb, func() error {
		l, err := netlink.LinkByName(tp.lbIface)
		if err != nil {
			return err
		}
		filters, _ := netlink.FilterList(l, netlink.HANDLE_MIN_INGRESS)
		for _, f := range filters {
			if bf, ok := f.(*netlink.BpfFilter); ok && strings.HasPrefix(bf.Name, clsactFilterName) {
				return fmt.Errorf("stale cls_bpf filter %s after attaching with tcx", bf.Name)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// Nor its program's pin, which would keep that program and its maps.
	if _, err := os.Lstat(filepath.Join(opts.PinPath, pinProgram)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the clsact program's pin after attaching with tcx: %v; want it removed", err)
	}
}

// TestPinPathChangeDetachesStray: an lbd started with another pin path
// (the old program still pinned and attached) leaves exactly one dsrlb
// program on the interface: its own.
func TestPinPathChangeDetachesStray(t *testing.T) {
	tp := newTopo(t)
	c := tp.listen(t, 5000)
	d1 := tp.openIn(t, Options{PinPath: testPinPath(t), MaglevTableSize: 251, ConntrackSize: 4096})
	d1.Close()
	d2 := tp.openIn(t, Options{PinPath: testPinPath(t), MaglevTableSize: 251, ConntrackSize: 4096})
	t.Cleanup(func() { inNetns(tp.lb, d2.Remove) })
	err := inNetns(tp.lb, func() error {
		l, err := netlink.LinkByName(tp.lbIface)
		if err != nil {
			return err
		}
		res, err := link.QueryPrograms(link.QueryOptions{Target: l.Attrs().Index, Attach: ebpf.AttachTCXIngress})
		if err != nil {
			return err
		}
		n := 0
		for _, ap := range res.Programs {
			if isDsrlbProgram(ap.ID) {
				n++
			}
		}
		if n != 1 {
			return fmt.Errorf("%d dsrlb programs attached after the pin path changed, want 1", n)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	tp.expectForwarded(t, c, true, "new pin path")
}

// TestDetachWithoutInterface: Detach by an lbd that lost its configuration
// (no interface known) still finds and removes the clsact filter, so no
// program keeps forwarding without health checks.
func TestDetachWithoutInterface(t *testing.T) {
	tp := newTopo(t)
	c := tp.listen(t, 5000)
	opts := Options{PinPath: testPinPath(t), MaglevTableSize: 251, ConntrackSize: 4096, ForceClsact: true}
	d1 := tp.openIn(t, opts)
	tp.requireClsactFilter(t)
	d1.Close()
	err := inNetns(tp.lb, func() error {
		d, err := Open(Options{PinPath: opts.PinPath, MaglevTableSize: 251, ConntrackSize: 4096, InterfaceMAC: ifMAC}, nil)
		if err != nil {
			return err
		}
		if err := d.Detach(); err != nil {
			return err
		}
		return d.Remove()
	})
	if err != nil {
		t.Fatal(err)
	}
	tp.expectForwarded(t, c, false, "detached without knowing the interface")
}
