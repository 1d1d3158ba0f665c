package reconcile

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/dsrlb/dsrlb/hostprep/internal/fakehost"
	"github.com/dsrlb/dsrlb/hostprep/internal/netops"
	"github.com/dsrlb/dsrlb/hostprep/internal/plan"
	"github.com/dsrlb/dsrlb/hostprep/internal/state"
)

const statePath = state.DefaultPath

// fake is an in-memory host: a NIC eth0 with the server address.
type fake struct {
	net   *fakehost.Net
	sys   *fakehost.Sysctls
	files *fakehost.Files
	fault *fakehost.Fault
}

func newFake() *fake {
	return &fake{
		net: &fakehost.Net{LoUp: true, Table: []netops.Addr{
			{Link: "lo", Prefix: netip.MustParsePrefix("127.0.0.1/8"), Label: "lo"},
			{Link: "eth0", Prefix: netip.MustParsePrefix("198.51.100.11/24"), Label: "eth0"},
		}},
		sys:   fakehost.NewSysctls("eth0", "lo"),
		files: &fakehost.Files{Data: map[string][]byte{}},
		fault: &fakehost.Fault{},
	}
}

func (f *fake) deps(live bool) *Deps {
	d := &Deps{Files: fakehost.FaultyFiles{FilesAPI: f.files, F: f.fault}, StatePath: statePath}
	if live {
		d.Net = fakehost.FaultyNet{NetAPI: f.net, F: f.fault}
		d.Sysctls = fakehost.FaultySysctls{SysctlAPI: f.sys, F: f.fault}
	}
	return d
}

// snapshot is everything a run may change, comparable with ==.
func (f *fake) snapshot() string {
	var b strings.Builder
	addrs, _ := f.net.Addrs()
	slices.SortFunc(addrs, func(a, c netops.Addr) int { return strings.Compare(a.String(), c.String()) })
	fmt.Fprintf(&b, "lo up %t\n%v\n", f.net.LoUp, addrs)
	for _, k := range slices.Sorted(maps.Keys(f.sys.Values)) {
		fmt.Fprintf(&b, "%s=%s\n", k, f.sys.Values[k])
	}
	for _, p := range slices.Sorted(maps.Keys(f.files.Data)) {
		fmt.Fprintf(&b, "%s: %q\n", p, f.files.Data[p])
	}
	return b.String()
}

func mustPlan(t *testing.T, d *Deps, vips ...string) (*plan.Plan, *Host) {
	t.Helper()
	h, err := Gather(d)
	if err != nil {
		t.Fatal(err)
	}
	var vs []plan.VIP
	for _, v := range vips {
		vs = append(vs, plan.VIP{Addr: netip.MustParseAddr(v)})
	}
	return plan.Build(vs, h.Ifaces), h
}

func mustApply(t *testing.T, d *Deps, vips ...string) *Report {
	t.Helper()
	p, h := mustPlan(t, d, vips...)
	rep, err := Apply(d, p, h, false)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func kinds(cs []*Change) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Kind+" "+c.Item)
	}
	return out
}

func TestApplyIdempotent(t *testing.T) {
	f := newFake()
	f.sys.Values["net.ipv4.conf.eth0.arp_ignore"] = "3"
	rep := mustApply(t, f.deps(true), "203.0.113.10", "2001:db8::10")
	want := []string{
		"sysctl net.ipv4.conf.all.arp_ignore", "sysctl net.ipv4.conf.all.arp_announce",
		"sysctl net.ipv4.conf.default.arp_ignore", "sysctl net.ipv4.conf.default.arp_announce",
		"sysctl net.ipv4.conf.eth0.arp_ignore",
		"address 203.0.113.10/32", "address 2001:db8::10/128",
		"file " + plan.SysctlFile, "file " + plan.NetworkdFile,
	}
	if got := kinds(rep.Changes); !slices.Equal(got, want) {
		t.Errorf("changes, in order (sysctls before any VIP):\n got %v\nwant %v", got, want)
	}
	if _, ok := f.files.Data[statePath]; !ok {
		t.Error("no state file")
	}
	before := f.snapshot()
	if rep := mustApply(t, f.deps(true), "203.0.113.10", "2001:db8::10"); len(rep.Changes) != 0 {
		t.Errorf("second apply changed %v", kinds(rep.Changes))
	}
	if f.snapshot() != before {
		t.Error("second apply changed the host")
	}
	p, h := mustPlan(t, f.deps(true), "203.0.113.10", "2001:db8::10")
	if rep, err := Check(f.deps(true), p, h); err != nil || len(rep.Changes) != 0 {
		t.Errorf("check after apply: %v %v", kinds(rep.Changes), err)
	}
}

func TestCheckNamesEachDrift(t *testing.T) {
	f := newFake()
	mustApply(t, f.deps(true), "203.0.113.10")
	f.net.Table = slices.DeleteFunc(f.net.Table, func(a netops.Addr) bool { return a.Prefix.Addr().String() == "203.0.113.10" })
	f.sys.Values["net.ipv4.conf.all.arp_announce"] = "0"
	f.files.Data[plan.NetworkdFile] = append(f.files.Data[plan.NetworkdFile], "# edited\n"...)
	p, h := mustPlan(t, f.deps(true), "203.0.113.10")
	rep, err := Check(f.deps(true), p, h)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"sysctl net.ipv4.conf.all.arp_announce", "address 203.0.113.10/32", "file " + plan.NetworkdFile}
	if got := kinds(rep.Changes); !slices.Equal(got, want) {
		t.Errorf("drift %v, want %v", got, want)
	}
	if d := rep.Changes[2].Diff; !strings.Contains(d, "-") || !strings.Contains(d, "# edited") {
		t.Errorf("file diff %q does not show the edit", d)
	}
}

func TestRelabel(t *testing.T) {
	f := newFake()
	f.net.Table = append(f.net.Table, netops.Addr{Link: "lo", Prefix: netip.MustParsePrefix("203.0.113.10/32"), Label: "lo"})
	rep := mustApply(t, f.deps(true), "203.0.113.10")
	i := slices.IndexFunc(rep.Changes, func(c *Change) bool { return c.Kind == "address" })
	if i < 0 || !strings.HasPrefix(rep.Changes[i].Done, "replaced") {
		t.Fatalf("changes %v", kinds(rep.Changes))
	}
	a, _ := f.net.Addrs()
	if !slices.Contains(a, netops.Addr{Link: "lo", Prefix: netip.MustParsePrefix("203.0.113.10/32"), Label: "lo:1"}) {
		t.Errorf("not relabelled: %v", a)
	}
	// It was there before hostprep: remove must leave it.
	if st, _, _ := loadState(f.deps(true)); st.HasAddress(netip.MustParsePrefix("203.0.113.10/32")) {
		t.Error("a relabelled address is recorded as added")
	}
}

func TestStaleVIPDeleted(t *testing.T) {
	f := newFake()
	mustApply(t, f.deps(true), "203.0.113.10", "203.0.113.20")
	rep := mustApply(t, f.deps(true), "203.0.113.10")
	if got := kinds(rep.Changes); !slices.Contains(got, "address 203.0.113.20/32") {
		t.Errorf("stale VIP kept: %v", got)
	}
	st, _, _ := loadState(f.deps(true))
	if st.HasAddress(netip.MustParsePrefix("203.0.113.20/32")) {
		t.Error("stale VIP still in state")
	}
}

func TestVIPOnNICRefused(t *testing.T) {
	f := newFake()
	f.net.Table = append(f.net.Table, netops.Addr{Link: "eth0", Prefix: netip.MustParsePrefix("203.0.113.10/24")})
	before := f.snapshot()
	p, h := mustPlan(t, f.deps(true), "203.0.113.10")
	_, err := Apply(f.deps(true), p, h, false)
	if !errors.Is(err, ErrVIPElsewhere) || !strings.Contains(err.Error(), "ip addr del 203.0.113.10/24 dev eth0") {
		t.Errorf("error %v", err)
	}
	if f.snapshot() != before {
		t.Error("refused apply changed the host")
	}
	rep, _ := Check(f.deps(true), p, h)
	if len(rep.Changes) == 0 || rep.Changes[0].Kind != "conflict" {
		t.Errorf("check: %v", kinds(rep.Changes))
	}
}

func TestDryRunChangesNothing(t *testing.T) {
	f := newFake()
	before := f.snapshot()
	p, h := mustPlan(t, f.deps(true), "203.0.113.10")
	rep, err := Apply(f.deps(true), p, h, true)
	if err != nil || len(rep.Changes) == 0 {
		t.Fatalf("%v %v", rep, err)
	}
	if f.snapshot() != before {
		t.Error("dry run changed the host")
	}
}

func TestRollback(t *testing.T) {
	for _, fault := range []fakehost.Fault{
		{Op: "Set", Match: "default.arp_announce"},
		{Op: "AddAddr", Match: "2001:db8::10"},
		{Op: "Write", Match: plan.NetworkdFile},
		{Op: "Write", Match: statePath},
	} {
		t.Run(fault.Op+" "+fault.Match, func(t *testing.T) {
			f := newFake()
			f.net.LoUp = false
			f.files.Data[plan.SysctlFile] = []byte("admin's own\n")
			before := f.snapshot()
			*f.fault = fault
			p, h := mustPlan(t, f.deps(true), "203.0.113.10", "2001:db8::10")
			rep, err := Apply(f.deps(true), p, h, false)
			if !errors.Is(err, fakehost.ErrInjected) || !strings.Contains(err.Error(), "rolled back") {
				t.Fatalf("error %v", err)
			}
			if f.fault.Hits != 1 {
				t.Errorf("fault hit %d times", f.fault.Hits)
			}
			if got := f.snapshot(); got != before {
				t.Errorf("not rolled back:\n got %s\nwant %s", got, before)
			}
			if len(rep.RolledBack) == 0 && fault.Match != "default.arp_announce" {
				t.Error("report lists nothing rolled back")
			}
		})
	}
}

func TestRemoveRestores(t *testing.T) {
	f := newFake()
	f.net.LoUp = false
	f.sys.Values["net.ipv4.conf.eth0.arp_announce"] = "4"
	f.files.Data[plan.SysctlFile] = []byte("admin's own\n")
	before := f.snapshot()
	mustApply(t, f.deps(true), "203.0.113.10", "2001:db8::10")
	rep, err := Remove(f.deps(true), mustHost(t, f), false)
	if err != nil {
		t.Fatal(err)
	}
	if got := f.snapshot(); got != before {
		t.Errorf("remove did not restore:\n got %s\nwant %s", got, before)
	}
	if _, ok := f.files.Data[statePath]; ok {
		t.Error("state file left after remove")
	}
	if len(rep.Changes) == 0 {
		t.Error("no changes reported")
	}
	rep, err = Remove(f.deps(true), mustHost(t, f), false)
	if err != nil || len(rep.Changes) != 0 {
		t.Errorf("second remove: %v %v", kinds(rep.Changes), err)
	}
}

func mustHost(t *testing.T, f *fake) *Host {
	t.Helper()
	h, err := Gather(f.deps(true))
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestRemoveLeavesLaterChanges(t *testing.T) {
	f := newFake()
	mustApply(t, f.deps(true), "203.0.113.10")
	f.sys.Values["net.ipv4.conf.all.arp_ignore"] = "2" // an admin's later decision
	delete(f.sys.Values, "net.ipv4.conf.default.arp_ignore")
	rep, err := Remove(f.deps(true), mustHost(t, f), false)
	if err != nil {
		t.Fatal(err)
	}
	if f.sys.Values["net.ipv4.conf.all.arp_ignore"] != "2" {
		t.Error("remove overwrote a value changed since apply")
	}
	notes := strings.Join(rep.Notes, "\n")
	if !strings.Contains(notes, "left net.ipv4.conf.all.arp_ignore = 2") || !strings.Contains(notes, "skipped net.ipv4.conf.default.arp_ignore") {
		t.Errorf("notes %q", notes)
	}
}

// TestRemoveBestEffort: a failed part of a remove does not undo the rest
// (a package removal would leave everything in place), stays recorded, and
// a VIP left on lo keeps the ARP sysctls that protect it.
func TestRemoveBestEffort(t *testing.T) {
	for _, tc := range []struct {
		fault      fakehost.Fault
		sysctlsAll bool // restored despite the failure
	}{
		{fakehost.Fault{Op: "Remove", Match: plan.NetworkdFile}, true},
		{fakehost.Fault{Op: "DelAddr", Match: "203.0.113.10"}, false},
	} {
		t.Run(tc.fault.Op, func(t *testing.T) {
			f := newFake()
			before := f.snapshot()
			mustApply(t, f.deps(true), "203.0.113.10", "2001:db8::10")
			*f.fault = tc.fault
			rep, err := Remove(f.deps(true), mustHost(t, f), false)
			if !errors.Is(err, ErrIncomplete) || !strings.Contains(err.Error(), "injected failure") || len(rep.Failed) == 0 {
				t.Fatalf("error %v, failed %q", err, rep.Failed)
			}
			if !slices.Contains(kinds(rep.Changes), "address 2001:db8::10/128") {
				t.Errorf("the other VIP was not removed: %v", kinds(rep.Changes))
			}
			if got := f.sys.Values["net.ipv4.conf.all.arp_ignore"] == "0"; got != tc.sysctlsAll {
				t.Errorf("arp_ignore restored %t, want %t", got, tc.sysctlsAll)
			}
			if _, ok := f.files.Data[statePath]; !ok {
				t.Fatal("state forgotten though parts are still in place")
			}
			*f.fault = fakehost.Fault{}
			if _, err := Remove(f.deps(true), mustHost(t, f), false); err != nil {
				t.Fatal(err)
			}
			if got := f.snapshot(); got != before {
				t.Errorf("second remove left:\n got %s\nwant %s", got, before)
			}
		})
	}
}

func TestOffline(t *testing.T) {
	f := newFake()
	before := f.snapshot()
	d := f.deps(false)
	rep := mustApply(t, d, "203.0.113.10")
	if got := kinds(rep.Changes); !slices.Equal(got, []string{"file " + plan.SysctlFile, "file " + plan.NetworkdFile}) {
		t.Errorf("offline changes %v", got)
	}
	if _, err := Remove(d, &Host{}, false); err != nil {
		t.Fatal(err)
	}
	if f.snapshot() != before {
		t.Error("offline apply+remove left changes")
	}
}

func TestLineDiff(t *testing.T) {
	got := lineDiff([]byte("a\nb\nc\n"), []byte("a\nc\nd\n"))
	if got != "-2: b\n+3: d\n" {
		t.Errorf("diff %q", got)
	}
}
