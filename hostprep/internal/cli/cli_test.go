package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dsrlb/dsrlb/hostprep/internal/fakehost"
	"github.com/dsrlb/dsrlb/hostprep/internal/netops"
	"github.com/dsrlb/dsrlb/hostprep/internal/plan"
	"github.com/dsrlb/dsrlb/hostprep/internal/reconcile"
)

const testConfig = `services:
  - name: web
    vip: 203.0.113.10
    ports: [80]
    servers:
      - {name: me, address: 198.51.100.11}
  - name: web6
    vip: 2001:db8::10
    ports: [80]
    servers:
      - {name: me6, address: 2001:db8:1::11}
  - name: other
    vip: 203.0.113.20
    ports: [80]
    servers: [{name: x, address: 198.51.100.99}]
`

// mustRoot returns a --root directory holding the configuration.
func mustRoot(tb testing.TB, cfg string) string {
	tb.Helper()
	root := tb.TempDir()
	p := filepath.Join(root, "etc/dsrlb/dsrlb.yaml")
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(cfg), 0o644); err != nil {
		tb.Fatal(err)
	}
	return root
}

type result struct {
	code        int
	out, errout string
}

func run(env *Env, args ...string) result {
	var out, errb bytes.Buffer
	env.Stdout, env.Stderr = &out, &errb
	code := Run("test", args, env)
	return result{code, out.String(), errb.String()}
}

// fakeEnv is a privileged environment on an in-memory host with the
// server addresses 198.51.100.11 and 2001:db8:1::11 on eth0.
func fakeEnv() (*Env, *fakehost.Net) {
	n := &fakehost.Net{LoUp: true, Table: []netops.Addr{
		{Link: "eth0", Prefix: netip.MustParsePrefix("198.51.100.11/24"), Label: "eth0"},
		{Link: "eth0", Prefix: netip.MustParsePrefix("2001:db8:1::11/64")}}}
	s := fakehost.NewSysctls("eth0")
	return &Env{
		OpenLive: func() (reconcile.Net, reconcile.Sysctls, func(), error) {
			return n, s, func() {}, nil
		},
		Privileged: func() error { return nil },
	}, n
}

func TestMessages(t *testing.T) {
	root := mustRoot(t, testConfig)
	bad := mustRoot(t, "services:\n  - name: web\n    vip: 203.0.113.300\n")
	notMine := mustRoot(t, strings.ReplaceAll(strings.ReplaceAll(testConfig, "198.51.100.11", "198.51.100.12"), "2001:db8:1::11", "2001:db8:1::12"))
	for _, tc := range []struct {
		name string
		env  func(*Env)
		args []string
		code int
		want string
	}{
		{"offline needs a selection", nil, []string{"--root", root, "--offline", "apply"}, 1, "--offline reads no addresses, so it cannot tell which VIPs are this host's: name them with --vip ADDR or --all"},
		{"bad config names file and line", nil, []string{"--root", bad, "apply"}, 1, filepath.Join(bad, "etc/dsrlb/dsrlb.yaml") + ":3: services[0].vip"},
		{"missing config", nil, []string{"--root", t.TempDir(), "check"}, 1, "give another file with --config"},
		{"not privileged", func(e *Env) { e.Privileged = func() error { return errors.New("check privileges: needs root") } },
			[]string{"--root", root, "apply"}, 1, "hostprep: check privileges: needs root"},
		{"nothing matches", nil, []string{"--root", notMine, "apply"}, 1, "add this host to a service's servers, or name the VIPs with --vip ADDR (repeatable) or --all"},
		{"vip not in file", nil, []string{"--root", root, "apply", "--vip", "192.0.2.1"}, 1, "--vip 192.0.2.1 is not the vip of any service"},
		{"vip not an address", nil, []string{"--root", root, "apply", "--vip", "web"}, 1, `parse --vip "web": not an IP address`},
		{"vip and all", nil, []string{"--root", root, "apply", "--vip", "203.0.113.10", "--all"}, 2, "none of the others can be"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env, _ := fakeEnv()
			if tc.env != nil {
				tc.env(env)
			}
			r := run(env, tc.args...)
			if r.code != tc.code || !strings.Contains(r.errout, tc.want) {
				t.Errorf("exit %d, stderr %q; want exit %d and %q", r.code, r.errout, tc.code, tc.want)
			}
		})
	}
}

func TestDryRunNeedsNoPrivileges(t *testing.T) {
	env, n := fakeEnv()
	env.Privileged = func() error { return errors.New("not root") }
	r := run(env, "--root", mustRoot(t, testConfig), "apply", "--dry-run")
	if r.code != 0 || !strings.Contains(r.out, "plan: 203.0.113.10/32 on lo (label lo:1), for web") ||
		!strings.Contains(r.out, "would add 203.0.113.10/32 on lo (label lo:1)") {
		t.Errorf("exit %d\n%s%s", r.code, r.out, r.errout)
	}
	if len(n.Table) != 2 {
		t.Error("dry run changed addresses")
	}
}

func TestApplyCheckRemove(t *testing.T) {
	env, _ := fakeEnv()
	root := mustRoot(t, testConfig)
	r := run(env, "--root", root, "apply")
	if r.code != 0 || !strings.Contains(r.out, "added 203.0.113.10/32 on lo (label lo:1)\nadded 2001:db8::10/128 on lo\n") {
		t.Fatalf("apply: exit %d\n%s%s", r.code, r.out, r.errout)
	}
	if r := run(env, "--root", root, "apply"); r.out != "no change: 2 VIP(s) on lo, 4 sysctls, 2 files already as planned\n" {
		t.Errorf("second apply: %q", r.out)
	}
	if r := run(env, "--root", root, "check"); r.code != 0 || !strings.HasPrefix(r.out, "in sync") {
		t.Errorf("check: %d %q", r.code, r.out)
	}
	if r := run(env, "--root", root, "remove"); r.code != 0 || !strings.Contains(r.out, "deleted 203.0.113.10/32") {
		t.Errorf("remove: %d %q %q", r.code, r.out, r.errout)
	}
	if r := run(env, "--root", root, "remove"); r.code != 0 || !strings.Contains(r.out, "nothing to remove") {
		t.Errorf("second remove: %d %q", r.code, r.out)
	}
}

func TestCheckJSON(t *testing.T) {
	env, _ := fakeEnv()
	root := mustRoot(t, testConfig)
	r := run(env, "--root", root, "check", "--json")
	if r.code != 1 {
		t.Errorf("check of an unprepared host: exit %d", r.code)
	}
	var res struct {
		InSync bool     `json:"in_sync"`
		VIPs   []string `json:"vips"`
		Drift  []struct{ Kind, Item, Have, Want string }
	}
	if err := json.Unmarshal([]byte(r.out), &res); err != nil {
		t.Fatalf("%v\n%s", err, r.out)
	}
	if res.InSync || len(res.VIPs) != 2 || len(res.Drift) != 8 || res.Drift[0].Kind != "sysctl" {
		t.Errorf("%+v", res)
	}
	run(env, "--root", root, "apply")
	r = run(env, "--root", root, "check", "--json")
	if r.code != 0 || !strings.Contains(r.out, `"in_sync": true`) || !strings.Contains(r.out, `"drift": []`) {
		t.Errorf("exit %d %s", r.code, r.out)
	}
}

// Offline runs write only files, and a second run leaves even mtimes alone.
func TestOfflineIdempotentFiles(t *testing.T) {
	env, _ := fakeEnv()
	env.OpenLive = func() (reconcile.Net, reconcile.Sysctls, func(), error) {
		t.Fatal("offline run opened the live host")
		return nil, nil, nil, nil
	}
	root := mustRoot(t, testConfig)
	args := []string{"--root", root, "--offline", "apply", "--all"}
	if r := run(env, args...); r.code != 0 || strings.Count(r.out, "\n") != 2 {
		t.Fatalf("apply: %d %q %q", r.code, r.out, r.errout)
	}
	files := []string{plan.SysctlFile, plan.NetworkdFile, "/var/lib/dsrlb/hostprep-state.json"}
	old := time.Now().Add(-time.Hour)
	for _, f := range files {
		if err := os.Chtimes(filepath.Join(root, f), old, old); err != nil {
			t.Fatal(err)
		}
	}
	if r := run(env, args...); r.out != "no change: 2 files already as planned\n" {
		t.Errorf("second apply: %q", r.out)
	}
	for _, f := range files {
		st, err := os.Stat(filepath.Join(root, f))
		if err != nil || !st.ModTime().Equal(old) {
			t.Errorf("%s rewritten by a run that changed nothing", f)
		}
	}
	if r := run(env, "--root", root, "--offline", "check", "--all"); r.code != 0 {
		t.Errorf("check: %d %q", r.code, r.out)
	}
	if r := run(env, "--root", root, "--offline", "remove"); r.code != 0 {
		t.Errorf("remove: %d %q", r.code, r.errout)
	}
	for _, f := range files {
		if _, err := os.Stat(filepath.Join(root, f)); err == nil {
			t.Errorf("%s left after remove", f)
		}
	}
}

// TestApplyFailureTellsTheTruth: a failed apply printed "no change ...
// already as planned" when its first change failed (issue 13).
func TestApplyFailureTellsTheTruth(t *testing.T) {
	for _, match := range []string{"", "default.arp_announce"} { // first change fails; a later one fails
		env, _ := fakeEnv()
		open := env.OpenLive
		f := &fakehost.Fault{Op: "Set", Match: match}
		env.OpenLive = func() (reconcile.Net, reconcile.Sysctls, func(), error) {
			n, s, c, err := open()
			return fakehost.FaultyNet{NetAPI: n, F: f}, fakehost.FaultySysctls{SysctlAPI: s, F: f}, c, err
		}
		r := run(env, "--root", mustRoot(t, testConfig), "apply")
		if r.code != 1 || strings.Contains(r.out, "already as planned") || !strings.Contains(r.out, "not applied: ") {
			t.Errorf("fault %q: exit %d, stdout %q", match, r.code, r.out)
		}
		if !strings.Contains(r.errout, "injected failure") {
			t.Errorf("fault %q: stderr %q", match, r.errout)
		}
	}
}

// TestRemoveFailureReported: remove keeps going past a failure, then
// exits 1 naming what is left, and a second remove finishes the job.
func TestRemoveFailureReported(t *testing.T) {
	env, n := fakeEnv()
	root := mustRoot(t, testConfig)
	if r := run(env, "--root", root, "apply"); r.code != 0 {
		t.Fatalf("apply: %d %s", r.code, r.errout)
	}
	open := env.OpenLive
	f := &fakehost.Fault{Op: "DelAddr", Match: "2001:db8::10"}
	env.OpenLive = func() (reconcile.Net, reconcile.Sysctls, func(), error) {
		n, s, c, err := open()
		return fakehost.FaultyNet{NetAPI: n, F: f}, s, c, err
	}
	r := run(env, "--root", root, "remove")
	if r.code != 1 || !strings.Contains(r.out, "deleted 203.0.113.10/32") || !strings.Contains(r.out, "not removed: delete 2001:db8::10/128") ||
		!strings.Contains(r.errout, "remove incomplete") || !strings.Contains(r.errout, "hostprep remove again") {
		t.Errorf("failed remove: exit %d\n%s%s", r.code, r.out, r.errout)
	}
	*f = fakehost.Fault{}
	if r := run(env, "--root", root, "remove"); r.code != 0 || !strings.Contains(r.out, "deleted 2001:db8::10/128") {
		t.Errorf("second remove: exit %d\n%s%s", r.code, r.out, r.errout)
	}
	if len(n.Table) != 2 {
		t.Errorf("addresses left: %v", n.Table)
	}
}

// TestApplyWaitsForAddress: at boot the server address may appear after
// hostprep.service started (issue 13); --wait looks again, bounded.
func TestApplyWaitsForAddress(t *testing.T) {
	late := netops.Addr{Link: "eth0", Prefix: netip.MustParsePrefix("198.51.100.11/24"), Label: "eth0"}
	for _, tc := range []struct {
		name      string
		wait      string
		appearsAt int // open call that finds the address; 0 never
		code      int
		want      string
	}{
		{"appears", "30s", 3, 0, "added 203.0.113.10/32"},
		{"no wait", "0s", 2, 1, "no VIP is this host's"},
		{"never", "200ms", 0, 1, "(waited 200ms for such an address)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env, n := fakeEnv()
			n.Table = nil
			env.Poll = 10 * time.Millisecond
			open, calls := env.OpenLive, 0
			env.OpenLive = func() (reconcile.Net, reconcile.Sysctls, func(), error) {
				if calls++; calls == tc.appearsAt {
					n.Table = append(n.Table, late)
				}
				return open()
			}
			r := run(env, "--root", mustRoot(t, testConfig), "apply", "--wait", tc.wait)
			if r.code != tc.code || !strings.Contains(r.out+r.errout, tc.want) {
				t.Errorf("exit %d (want %d), output %q %q, want %q", r.code, tc.code, r.out, r.errout, tc.want)
			}
		})
	}
}
