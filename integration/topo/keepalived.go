package topo

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
)

// VRRPRouterID is the virtual_router_id of the keepalived scenarios.
const VRRPRouterID = 51

// Keepalived is keepalived 2.2.7 running on one balancer: the parent
// process (a Proc, stopped by Close) and its VRRP child, which keepalived
// forks and which only its pid file names.
type Keepalived struct {
	*Proc
	Conf    string // keepalived.conf of this instance
	vrrpPID string // the VRRP child's pid file
}

// StartKeepalived starts keepalived in the foreground on balancer lb
// (`keepalived -n -l -D -P`, own config and pid files in the topology's
// temp dir: namespaces share the filesystem), holding vip with unicast
// VRRP to peer (no multicast), advert_int 1s, and priority prio. Its
// track_script `lbd_alive` fails while lbPIDFile names no live process
// (lbd's PID file): a balancer whose lbd is gone goes to FAULT and
// releases the VIP. The configuration is checked with `keepalived -t`
// inside the namespace first.
func (t *Topology) StartKeepalived(ctx context.Context, lb, peer *Host, vip netip.Addr, prio int, lbdPIDFile string) (*Keepalived, error) {
	dir := filepath.Join(t.Dir, "keepalived-"+lb.Role)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("start keepalived on %s: %w", lb.Role, err)
	}
	script := filepath.Join(dir, "lbd-alive.sh")
	body := fmt.Sprintf("#!/bin/sh\n# exit 0 while the lbd of %s runs (its PID file names a live process)\nexec kill -0 \"$(cat %s 2>/dev/null)\" 2>/dev/null\n", lb.Role, lbdPIDFile)
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		return nil, fmt.Errorf("start keepalived on %s: %w", lb.Role, err)
	}
	state := "BACKUP"
	if prio >= 150 {
		state = "MASTER"
	}
	conf := filepath.Join(dir, "keepalived.conf")
	text := fmt.Sprintf(`# written by the dsrlb integration harness for %s
global_defs {
	router_id %s_%s
	script_user root
	enable_script_security
	vrrp_garp_master_delay 1	# a second round of gratuitous ARP 1s after becoming MASTER
	vrrp_garp_master_repeat 3
}
vrrp_script lbd_alive {
	script "%s"
	interval 1
	timeout 1
	fall 2
	rise 2
}
vrrp_instance web {
	state %s
	interface %s
	virtual_router_id %d
	priority %d
	advert_int 1
	unicast_src_ip %s
	unicast_peer {
		%s
	}
	virtual_ipaddress {
		%s/32 dev %s
	}
	track_script {
		lbd_alive
	}
}
`, t.ID, t.ID, lb.Role, script, state, lb.Dev, VRRPRouterID, prio, lb.IPv4, peer.IPv4, vip, lb.Dev)
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		return nil, fmt.Errorf("start keepalived on %s: %w", lb.Role, err)
	}
	if out, err := lb.NS.Run(ctx, "keepalived", "-t", "-f", conf); err != nil {
		return nil, fmt.Errorf("keepalived -t on %s: %w\n%s\n%s", lb.Role, err, out, text)
	}
	k := &Keepalived{Conf: conf, vrrpPID: filepath.Join(dir, "vrrp.pid")}
	p, err := t.Start(lb, "keepalived "+lb.Role, "keepalived", "-n", "-l", "-D", "-P", "-f", conf,
		"-p", filepath.Join(dir, "keepalived.pid"), "-r", k.vrrpPID,
		"-c", filepath.Join(dir, "checkers.pid"), "-b", filepath.Join(dir, "bfd.pid"))
	if err != nil {
		return nil, err
	}
	k.Proc = p
	return k, nil
}

// VRRPPID is the PID of the VRRP child (0 while its pid file is missing).
func (k *Keepalived) VRRPPID() int {
	b, err := os.ReadFile(k.vrrpPID)
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

// KillAll sends SIGKILL to the VRRP child, then to the parent, by PID, as
// a crash would: no VIP is removed, no priority-0 advert is sent. The
// child is killed only while it still carries this run's marker, so a
// reused PID is never hit.
func (k *Keepalived) KillAll() {
	if pid := k.VRRPPID(); pid > 0 && ours(pid) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	k.Kill()
}

// ours reports whether pid is a live process started by this run's harness.
func ours(pid int) bool {
	env, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "environ"))
	return err == nil && bytes.Contains(env, []byte(envRun+"="+RunID+"\x00"))
}

// HasAddr reports whether h's segment interface holds a (as keepalived's
// MASTER holds the VIP).
func (h *Host) HasAddr(a netip.Addr) (bool, error) {
	l, err := h.NS.handle.LinkByName(h.Dev)
	if err != nil {
		return false, fmt.Errorf("find %s in %s: %w", h.Dev, h.NS.Name, err)
	}
	addrs, err := h.NS.handle.AddrList(l, netlink.FAMILY_ALL)
	if err != nil {
		return false, fmt.Errorf("list addresses of %s in %s: %w", h.Dev, h.NS.Name, err)
	}
	for _, x := range addrs {
		if got, ok := netip.AddrFromSlice(x.IP); ok && got.Unmap() == a {
			return true, nil
		}
	}
	return false, nil
}

// NeighborMAC is the MAC of h's neighbour entry for a (nil when none).
func (h *Host) NeighborMAC(a netip.Addr) (net.HardwareAddr, error) {
	l, err := h.NS.handle.LinkByName(h.Dev)
	if err != nil {
		return nil, fmt.Errorf("find %s in %s: %w", h.Dev, h.NS.Name, err)
	}
	fam := netlink.FAMILY_V4
	if a.Is6() {
		fam = netlink.FAMILY_V6
	}
	ns, err := h.NS.handle.NeighList(l.Attrs().Index, fam)
	if err != nil {
		return nil, fmt.Errorf("list neighbours of %s in %s: %w", h.Dev, h.NS.Name, err)
	}
	for _, n := range ns {
		if got, ok := netip.AddrFromSlice(n.IP); ok && got.Unmap() == a && len(n.HardwareAddr) == 6 {
			return n.HardwareAddr, nil
		}
	}
	return nil, nil
}

// WaitVIPHolder waits (at most d) until exactly holder (nil: nobody) of
// the hosts hs has vip on its segment interface.
func WaitVIPHolder(ctx context.Context, hs []*Host, vip netip.Addr, holder *Host, d time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	for {
		var have []string
		var err error
		for _, h := range hs {
			ok, herr := h.HasAddr(vip)
			if herr != nil {
				err = herr
			}
			if ok {
				have = append(have, h.Role)
			}
		}
		if err == nil && ((holder == nil && len(have) == 0) || (holder != nil && len(have) == 1 && have[0] == holder.Role)) {
			return nil
		}
		select {
		case <-ctx.Done():
			want := "nobody"
			if holder != nil {
				want = holder.Role
			}
			return fmt.Errorf("%s held by %v, want %s within %v (err %v)", vip, have, want, d, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
