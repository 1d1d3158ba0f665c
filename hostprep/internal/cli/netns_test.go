package cli

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dsrlb/dsrlb/hostprep/internal/fakehost"
	"github.com/dsrlb/dsrlb/hostprep/internal/netops"
	"github.com/dsrlb/dsrlb/hostprep/internal/plan"
	"github.com/dsrlb/dsrlb/hostprep/internal/reconcile"
	"github.com/dsrlb/dsrlb/hostprep/internal/sysctl"
	"github.com/dsrlb/dsrlb/internal/nettest"
)

// newBackend is a fresh namespace shaped like a backend: a NIC "hp.0"
// (a '.' in its name, as a VLAN's, so the direct /proc/sys path is used)
// with the server addresses of testConfig, and its peer hp1. The ARP
// sysctls are set explicitly: a new namespace inherits the host's conf/all,
// so nothing can be assumed. hp.0's arp_ignore=3 and hp1's arp_announce=5
// would each override hostprep's all values, so apply must fix them.
func newBackend(t *testing.T) *nettest.NS {
	ns := nettest.Create(t, "dsrlbhp-")
	ns.Sh(t,
		"ip link add name hp.0 type veth peer name hp1",
		"ip link set hp.0 up && ip link set hp1 up",
		"ip addr add 198.51.100.11/24 dev hp.0 && ip addr add 2001:db8:1::11/64 dev hp.0 nodad",
		"for i in all default lo hp.0 hp1; do echo 0 > /proc/sys/net/ipv4/conf/$i/arp_ignore; echo 0 > /proc/sys/net/ipv4/conf/$i/arp_announce; done",
		"echo 3 > /proc/sys/net/ipv4/conf/hp.0/arp_ignore && echo 5 > /proc/sys/net/ipv4/conf/hp1/arp_announce",
	)
	return ns
}

// live runs hostprep in the namespace with the production environment.
func live(t *testing.T, ns *nettest.NS, env *Env, args ...string) result {
	t.Helper()
	if env == nil {
		env = DefaultEnv(nil, nil)
	}
	var r result
	if err := ns.Do(func() error { r = run(env, args...); return nil }); err != nil {
		t.Fatal(err)
	}
	return r
}

// snapshot is everything hostprep may change: lo's state, the addresses
// (without the kernel's own loopback and link-local addresses, which come
// and go with lo up/down by themselves), every ARP sysctl and every file
// under root.
func snapshot(t *testing.T, ns *nettest.NS, root string) string {
	t.Helper()
	var b strings.Builder
	err := ns.Do(func() error {
		n, err := netops.Open()
		if err != nil {
			return err
		}
		defer n.Close()
		up, _ := n.LoopbackUp()
		addrs, err := n.Addrs()
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "lo up: %t\n", up)
		for _, a := range addrs {
			if p := a.Prefix; p.String() != "127.0.0.1/8" && p.String() != "::1/128" && !p.Addr().IsLinkLocalUnicast() {
				fmt.Fprintln(&b, a)
			}
		}
		return arpSysctls(&b)
	})
	if err != nil {
		t.Fatal(err)
	}
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			data, _ := os.ReadFile(p)
			fmt.Fprintf(&b, "%s: %q\n", strings.TrimPrefix(p, root), data)
		}
		return err
	})
	return b.String()
}

func arpSysctls(b *strings.Builder) error {
	k, err := sysctl.NewKernel("")
	if err != nil {
		return err
	}
	ifaces, err := k.Interfaces()
	if err != nil {
		return err
	}
	for _, i := range append([]string{sysctl.All, sysctl.Default}, ifaces...) {
		for _, p := range []string{"arp_ignore", "arp_announce"} {
			v, err := k.Get(sysctl.Conf(i, p))
			if err != nil {
				return err
			}
			fmt.Fprintf(b, "%s=%s\n", sysctl.Conf(i, p), v)
		}
	}
	return nil
}

func wantLines(t *testing.T, step string, r result, code int, lines ...string) {
	t.Helper()
	if r.code != code {
		t.Errorf("%s: exit %d, want %d\nstdout:\n%sstderr:\n%s", step, r.code, code, r.out, r.errout)
	}
	for _, l := range lines {
		if !strings.Contains(r.out, l) {
			t.Errorf("%s: output lacks %q:\n%s", step, l, r.out)
		}
	}
}

func TestLiveCycle(t *testing.T) {
	ns := newBackend(t)
	root := mustRoot(t, testConfig)
	before := snapshot(t, ns, root)

	wantLines(t, "apply", live(t, ns, nil, "--root", root, "apply"), 0,
		"set net.ipv4.conf.all.arp_ignore = 1 (was 0)\n",
		"set net/ipv4/conf/hp.0/arp_ignore = 1 (was 3)\n",
		"set net.ipv4.conf.hp1.arp_announce = 2 (was 5)\n",
		"brought lo up (it was down)\n",
		"added 203.0.113.10/32 on lo (label lo:1)\n",
		"added 2001:db8::10/128 on lo\n",
		"wrote "+plan.NetworkdFile+"\n")
	ns.Sh(t, "ip -4 -o addr show dev lo | grep -q '203.0.113.10/32 scope global lo:1'",
		"ip -6 -o addr show dev lo | grep -q '2001:db8::10/128 scope global nodad'",
		"test $(cat /proc/sys/net/ipv4/conf/hp.0/arp_ignore) = 1")
	wantLines(t, "check", live(t, ns, nil, "--root", root, "check"), 0, "in sync")

	applied := snapshot(t, ns, root)
	old := agePaths(t, root)
	wantLines(t, "second apply", live(t, ns, nil, "--root", root, "apply"), 0, "no change:")
	if snapshot(t, ns, root) != applied {
		t.Error("second apply changed the host")
	}
	sameTimes(t, root, old)

	ns.Sh(t, "ip addr del 203.0.113.10/32 dev lo", "echo 0 > /proc/sys/net/ipv4/conf/all/arp_announce")
	appendFile(t, filepath.Join(root, plan.NetworkdFile), "Address=192.0.2.99/32\n")
	wantLines(t, "check after drift", live(t, ns, nil, "--root", root, "check"), 1,
		"drift: address 203.0.113.10/32: have absent, want 203.0.113.10/32 on lo (label lo:1)\n",
		"drift: sysctl net.ipv4.conf.all.arp_announce: have 0, want 2\n",
		"drift: file "+plan.NetworkdFile+": have different content",
		"Address=192.0.2.99/32",
		"3 difference(s) from the plan")
	wantLines(t, "apply after drift", live(t, ns, nil, "--root", root, "apply"), 0,
		"added 203.0.113.10/32", "set net.ipv4.conf.all.arp_announce = 2 (was 0)", "wrote "+plan.NetworkdFile)
	if snapshot(t, ns, root) != applied {
		t.Error("apply did not repair every drift")
	}

	wantLines(t, "remove", live(t, ns, nil, "--root", root, "remove"), 0,
		"deleted 203.0.113.10/32", "brought lo down", "restored net/ipv4/conf/hp.0/arp_ignore = 3")
	if got := snapshot(t, ns, root); got != before {
		t.Errorf("remove did not restore the host:\n got:\n%s\nwant:\n%s", got, before)
	}
}

func TestLiveRollback(t *testing.T) {
	for _, fault := range []fakehost.Fault{
		{Op: "AddAddr", Match: "2001:db8::10"},
		{Op: "Write", Match: plan.NetworkdFile},
	} {
		t.Run(fault.Op, func(t *testing.T) {
			ns := newBackend(t)
			root := mustRoot(t, testConfig)
			before := snapshot(t, ns, root)
			f := fault
			env := DefaultEnv(nil, nil)
			env.OpenLive = func() (reconcile.Net, reconcile.Sysctls, func(), error) {
				n, s, closeFn, err := openLive()
				return fakehost.FaultyNet{NetAPI: n, F: &f}, fakehost.FaultySysctls{SysctlAPI: s, F: &f}, closeFn, err
			}
			var r result
			if f.Op == "Write" { // the files are real too, under root
				r = liveFaultyFiles(t, ns, root, &f)
			} else {
				r = live(t, ns, env, "--root", root, "apply")
			}
			wantLines(t, "failed apply", r, 1, "rolled back: added 203.0.113.10/32", "rolled back: set net.ipv4.conf.all.arp_ignore = 1")
			if !strings.Contains(r.errout, "injected failure") || !strings.Contains(r.errout, "rolled back") {
				t.Errorf("stderr %q", r.errout)
			}
			if got := snapshot(t, ns, root); got != before {
				t.Errorf("not rolled back:\n got:\n%s\nwant:\n%s", got, before)
			}
		})
	}
}

// liveFaultyFiles runs apply through reconcile directly, with a fault on
// the real files: the CLI builds its own files.FS.
func liveFaultyFiles(t *testing.T, ns *nettest.NS, root string, f *fakehost.Fault) result {
	t.Helper()
	var r result
	err := ns.Do(func() error {
		o := &options{config: "/etc/dsrlb/dsrlb.yaml", root: root, state: "/var/lib/dsrlb/hostprep-state.json"}
		env := DefaultEnv(nil, nil)
		s, err := open(o, env, true)
		if err != nil {
			return err
		}
		defer s.close()
		s.deps.Files = fakehost.FaultyFiles{FilesAPI: s.deps.Files, F: f}
		p, err := makePlan(o, s.host)
		if err != nil {
			return err
		}
		var out strings.Builder
		rep, err := reconcile.Apply(s.deps, p, s.host, false)
		printApply(&out, rep, p, false, true, err != nil)
		r = result{code: 1, out: out.String(), errout: fmt.Sprint(err)}
		if err == nil {
			r.code = 0
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestLiveRefusesVIPOnNIC(t *testing.T) {
	ns := newBackend(t)
	ns.Sh(t, "ip addr add 203.0.113.10/24 dev hp.0")
	root := mustRoot(t, testConfig)
	before := snapshot(t, ns, root)
	r := live(t, ns, nil, "--root", root, "apply")
	if r.code != 1 || !strings.Contains(r.errout, "203.0.113.10 is on hp.0 as 203.0.113.10/24: delete it there (ip addr del 203.0.113.10/24 dev hp.0)") {
		t.Errorf("exit %d, stderr %q", r.code, r.errout)
	}
	if snapshot(t, ns, root) != before {
		t.Error("a refused apply changed the host")
	}
	wantLines(t, "check", live(t, ns, nil, "--root", root, "check"), 1, "drift: conflict 203.0.113.10: have on hp.0")
}

// agePaths sets every file under root an hour back and returns the times.
func agePaths(t *testing.T, root string) map[string]time.Time {
	t.Helper()
	old := time.Now().Add(-time.Hour).Truncate(time.Second)
	out := map[string]time.Time{}
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if err := os.Chtimes(p, old, old); err != nil {
				t.Fatal(err)
			}
			out[p] = old
		}
		return err
	})
	return out
}

func sameTimes(t *testing.T, root string, want map[string]time.Time) {
	t.Helper()
	for p, w := range want {
		st, err := os.Stat(p)
		if err != nil || !st.ModTime().Equal(w) {
			t.Errorf("%s was rewritten by a run that changed nothing", p)
		}
	}
}

func appendFile(t *testing.T, path, s string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(s); err != nil {
		t.Fatal(err)
	}
}
