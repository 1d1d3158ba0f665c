package datapath

import (
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

// txnStates are the two states of the failure tests: every kind of change
// at once (backend added, removed, reweighted, taken down; a scheduler
// changed; a service removed, one added, a port moving between services).
func txnStates() (before, after []Service) {
	be := func(i int, w uint32) Backend {
		return Backend{Name: fmt.Sprint("b", i), Addr: netip.AddrFrom4([4]byte{192, 0, 2, byte(100 + i)}), MAC: beMAC(i), Weight: w, State: Up}
	}
	svc := func(name, vip string, port uint16, bes ...Backend) Service {
		return Service{Name: name, VIP: ip4(vip), Proto: TCP, Ports: []uint16{port}, Backends: bes}
	}
	before = []Service{
		svc("a", "192.0.2.10", 80, be(1, 1), be(2, 1), be(3, 1)),
		svc("b", "192.0.2.20", 80, be(4, 1), be(5, 1), be(6, 1)),
		svc("c", "192.0.2.30", 80, be(7, 1), be(8, 1)),
	}
	b5down := be(5, 1)
	b5down.State = Down
	after = []Service{
		svc("a", "192.0.2.10", 80, be(2, 1), be(3, 1), be(9, 1)),
		svc("b", "192.0.2.20", 80, be(4, 3), b5down, be(6, 1)),
		svc("d", "192.0.2.30", 80, be(10, 1), be(11, 1)), // takes c's key: a new service
	}
	after[0].Scheduler = Source // its keys' values change too
	return before, after
}

// snapshot is where each flow's packets go, probed with a RST: it gets the
// consistent choice and, unlike an ACK, leaves no entry behind.
func snapshot(r flowRun, flows []Flow) []int {
	out := make([]int, len(flows))
	for i, f := range flows {
		out[i] = r.sendFlags(f, pkt{rst: true})
	}
	return out
}

func txnFlows(svcs []Service) []Flow {
	rng := rand.New(rand.NewPCG(5, 6))
	var flows []Flow
	for _, s := range svcs {
		for range 200 {
			flows = append(flows, randomFlow(rng, s.VIP, TCP))
		}
	}
	return flows
}

// TestApplyFailureKeepsPreviousState injects a failure after each step of
// Apply, and a kernel refusal in the middle of the tables' batch update:
// every packet then reaches what it reached before the Apply, and the next
// Apply reaches the new state.
func TestApplyFailureKeepsPreviousState(t *testing.T) {
	before, after := txnStates()
	flows := txnFlows(before)
	ref := mustOpen(t, Options{})
	mustApply(t, ref, after...)
	wantAfter := snapshot(flowRun{ref, t}, flows)
	for _, step := range []string{"reset counters", "write backends", "switch tables", "write service keys", "bad table"} {
		t.Run(strings.ReplaceAll(step, " ", "_"), func(t *testing.T) {
			d := mustOpen(t, Options{})
			r := flowRun{d, t}
			mustApply(t, d, before...)
			wantBefore := snapshot(r, flows)
			if slices.Equal(wantBefore, wantAfter) {
				t.Fatal("the two states forward alike: the test could not tell them apart")
			}
			injected := errors.New("injected failure")
			if step == "bad table" {
				d.badTable = "b" // the second of three tables switched: a partial batch
			} else {
				d.faultAt = func(s string) error {
					if s == step {
						return injected
					}
					return nil
				}
			}
			err := d.Apply(after)
			if err == nil {
				t.Fatal("Apply succeeded despite the injected failure")
			}
			t.Logf("Apply: %v", err)
			if strings.Contains(err.Error(), "undo") {
				t.Fatalf("undo failed: %v", err)
			}
			if errors.Is(err, ErrCommitted) {
				t.Fatalf("a failure before the commit point says the new state is in force: %v", err)
			}
			if got := snapshot(r, flows); !slices.Equal(got, wantBefore) {
				t.Fatalf("after a failure at %q, %d of %d packets reach another backend than before", step, diff(got, wantBefore), len(flows))
			}
			assertBackendsMatch(t, d, before)
			d.faultAt, d.badTable = nil, ""
			mustApply(t, d, after...)
			if got := snapshot(r, flows); !slices.Equal(got, wantAfter) {
				t.Fatalf("retry after a failure at %q: %d of %d packets not where the new state sends them", step, diff(got, wantAfter), len(flows))
			}
			assertBackendsMatch(t, d, after)
		})
	}
}

// TestApplyFailureAfterCommit: a failure while retiring backends leaves
// the new state serving (the tables no longer name them) and the next
// Apply finishes the job.
func TestApplyFailureAfterCommit(t *testing.T) {
	before, after := txnStates()
	flows := txnFlows(before)
	d := mustOpen(t, Options{})
	r := flowRun{d, t}
	mustApply(t, d, before...)
	ref := mustOpen(t, Options{})
	mustApply(t, ref, after...)
	want := snapshot(flowRun{ref, t}, flows)
	d.faultAt = func(s string) error {
		if s == "finish" {
			return errors.New("injected failure")
		}
		return nil
	}
	err := d.Apply(after)
	if !errors.Is(err, ErrCommitted) {
		t.Fatalf("Apply = %v, want a failure saying the new state is in force (ErrCommitted)", err)
	}
	if got := snapshot(r, flows); !slices.Equal(got, want) {
		t.Fatalf("%d of %d packets not on the new state after a failure past the commit point", diff(got, want), len(flows))
	}
	d.faultAt = nil
	mustApply(t, d, after...)
	assertBackendsMatch(t, d, after)
}

// assertBackendsMatch checks lb_backends holds exactly the backends of
// svcs, in their states: nothing of a failed Apply stayed behind.
func assertBackendsMatch(t *testing.T, d *Datapath, svcs []Service) {
	t.Helper()
	want := map[netip.Addr]State{}
	for _, s := range svcs {
		for _, b := range s.Backends {
			want[b.Addr] = b.State
		}
	}
	got := map[netip.Addr]State{}
	if err := d.eachBackend(func(_ uint32, be *bpfLbBackend) {
		if be.State != 0 {
			got[addrFrom16(be.Addr.B)] = State(be.State)
		}
	}); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("lb_backends holds %v, want %v", got, want)
	}
}

func diff(a, b []int) int {
	n := 0
	for i := range a {
		if a[i] != b[i] {
			n++
		}
	}
	return n
}

// TestApplyWritesOnlyChanges: an Apply of the same state writes nothing,
// and a health change of one backend among many services rewrites only
// that service's table and backend.
func TestApplyWritesOnlyChanges(t *testing.T) {
	d := mustOpen(t, Options{MaxServices: 256, MaxBackends: 1024})
	svcs := make([]Service, 200)
	for i := range svcs {
		vip := netip.AddrFrom4([4]byte{192, 0, 2, byte(i + 1)})
		bes := make([]Backend, 3)
		for j := range bes {
			bes[j] = Backend{Name: fmt.Sprint(j), Addr: netip.AddrFrom4([4]byte{198, 51, 100, byte(j + 1)}), MAC: beMAC(j), Weight: 1, State: Up}
		}
		svcs[i] = Service{Name: fmt.Sprint("s", i), VIP: vip, Proto: TCP, Ports: []uint16{80}, Backends: bes}
	}
	mustApply(t, d, svcs...)
	if got := d.LastApply(); got.Services != 200 || got.Tables != 200 || got.Keys != 200 || got.Backends != 600 {
		t.Fatalf("first Apply wrote %+v, want 200 services, 200 tables, 200 keys, 600 backends", got)
	}
	mustApply(t, d, svcs...)
	if got := d.LastApply(); got != (ApplyStats{}) {
		t.Fatalf("the same state again wrote %+v, want nothing", got)
	}
	svcs[57].Backends[1].State = Down // a flap
	mustApply(t, d, svcs...)
	// The table is rewritten, the backend stays up until it is out of the
	// table, then is marked down: one service, one table, two writes.
	if got := d.LastApply(); got != (ApplyStats{Services: 1, Tables: 1, Backends: 1}) {
		t.Fatalf("a flap wrote %+v, want 1 service, 1 table, 1 backend write", got)
	}
}

// TestStatsBatchedEqualsPerEntry: Stats reads counters by batch above
// batchStatsFrom backends; both ways give the same figures.
func TestStatsBatchedEqualsPerEntry(t *testing.T) {
	d := mustOpen(t, Options{MaxServices: 512, MaxBackends: 2048})
	svcs := make([]Service, 100)
	for i := range svcs {
		bes := make([]Backend, 3)
		for j := range bes {
			bes[j] = Backend{Name: fmt.Sprint(j), Addr: netip.AddrFrom4([4]byte{198, 51, 100, byte(j + 1)}), MAC: beMAC(j), Weight: 1, State: Up}
		}
		svcs[i] = Service{Name: fmt.Sprint("s", i), VIP: netip.AddrFrom4([4]byte{192, 0, 2, byte(i + 1)}), Proto: TCP, Ports: []uint16{80}, Backends: bes}
	}
	mustApply(t, d, svcs...)
	r := flowRun{d, t}
	for _, f := range txnFlows(svcs[:5]) {
		r.send(f, true)
	}
	if len(d.state.backends) <= batchStatsFrom {
		t.Fatalf("%d backends: the batched path is not taken", len(d.state.backends))
	}
	batched, err := d.Stats()
	if err != nil {
		t.Fatal(err)
	}
	perEntry := Stats{}
	for _, id := range slices.Sorted(maps.Keys(d.state.services)) {
		ss, err := d.serviceStats(d.state.services[id], sumCounters)
		if err != nil {
			t.Fatal(err)
		}
		perEntry.Services = append(perEntry.Services, ss)
	}
	if fmt.Sprint(batched.Services) != fmt.Sprint(perEntry.Services) {
		t.Fatal("batched counters differ from per-entry ones")
	}
	if batched.Services[0].Counters.NewFlows == 0 {
		t.Fatal("no new flows counted: the comparison proves nothing")
	}
}

// TestFailedPurgeRetried: an Apply that removed a service and failed
// purging its conntrack entries (ErrCommitted) leaves them to the next
// Apply, which no longer sees the removed keys in the services it starts
// from: it purges them all the same.
func TestFailedPurgeRetried(t *testing.T) {
	onOneCPU(t) // the handshake ACK must find its SYN's pending choice to be established
	rng := rand.New(rand.NewPCG(7, 8))
	d := mustOpen(t, Options{MaglevTableSize: 1009, ConntrackSize: 1024})
	r := flowRun{d, t}
	web := Service{Name: "web", VIP: ip4("192.0.2.10"), Proto: TCP, Ports: []uint16{80}, Backends: manyBackends("192.0.2.%d", 3, rng)}
	api := Service{Name: "api", VIP: ip4("192.0.2.11"), Proto: TCP, Ports: []uint16{80}, Backends: manyBackends("192.0.2.%d", 3, rng)}
	mustApply(t, d, web, api)
	f := Flow{Src: ap("198.51.100.1:40000"), Dst: ap("192.0.2.11:80"), Proto: TCP}
	r.send(f, true)
	r.send(f, false)
	k4, _ := ct4Key(flowKey(f))
	tracked := func() bool {
		var ct bpfLbCtEntry
		return d.objs.LbCt4.Lookup(&k4, &ct) == nil
	}
	if !tracked() {
		t.Fatal("api flow not in lb_ct4")
	}
	d.faultAt = func(s string) error {
		if s == "purge" {
			return errors.New("injected failure")
		}
		return nil
	}
	if err := d.Apply([]Service{web}); !errors.Is(err, ErrCommitted) {
		t.Fatalf("Apply = %v, want ErrCommitted (purge failed)", err)
	}
	if !tracked() {
		t.Fatal("the injected failure did not keep the removed service's flow: the test proves nothing")
	}
	d.faultAt = nil
	mustApply(t, d, web)
	if tracked() {
		t.Error("after the next Apply the removed service's conntrack entry is still in lb_ct4")
	}
}
