package datapath

import (
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"
)

type flowRun struct {
	d *Datapath
	t *testing.T
}

// send sends one packet of f (SYN or not) and returns the backend index.
func (r flowRun) send(f Flow, syn bool) int {
	r.t.Helper()
	p := pkt{src: f.Src, dst: f.Dst, proto: f.Proto, syn: syn, ack: !syn}
	verdict, out := run(r.t, r.d, build(r.t, p))
	if verdict != VerdictRedirect {
		return -1
	}
	return macIndex(r.t, out)
}

// open sends f's SYN and the handshake's ACK, as a client connecting does
// (a Maglev flow is tracked from the ACK), and returns the ACK's backend
// (-1 if the two went to different ones).
func (r flowRun) open(f Flow) int {
	r.t.Helper()
	if b, b2 := r.send(f, true), r.send(f, false); b == b2 {
		return b
	}
	return -1
}

func TestConntrackAcrossTableChanges(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	d := mustOpen(t, Options{MaglevTableSize: 1009, ConntrackSize: 65536})
	r := flowRun{d, t}
	svc := Service{Name: "web", VIP: ip4("192.0.2.10"), Proto: TCP, Ports: []uint16{80}, Backends: manyBackends("192.0.2.%d", 10, rng)}
	mustApply(t, d, svc)

	flows := make([]Flow, 500)
	first := make([]int, len(flows))
	for i := range flows {
		flows[i] = randomFlow(rng, svc.VIP, TCP)
		first[i] = r.open(flows[i])
	}

	// Add backends: the Maglev table changes, tracked flows stay.
	grown := svc
	grown.Backends = append(append([]Backend{}, svc.Backends...), manyBackends("192.0.2.%d", 20, rng)[10:]...)
	mustApply(t, d, grown)
	moved := 0
	for i, f := range flows {
		if got := r.send(f, false); got != first[i] {
			t.Fatalf("tracked flow %d moved from backend %d to %d after the table changed", i, first[i], got)
		}
		if predict(t, grown, f, 1009) != first[i] {
			moved++
		}
	}
	if moved == 0 {
		t.Fatal("test is vacuous: no flow would have moved without conntrack")
	}
	info, err := d.LookupFlow(flows[0])
	if err != nil || !info.Tracked {
		t.Fatalf("LookupFlow = %+v, %v; want tracked", info, err)
	}

	// Drain backend 0 and take backend 1 down.
	changed := grown
	changed.Backends = append([]Backend{}, grown.Backends...)
	changed.Backends[0].State = Drain
	changed.Backends[1].State = Down
	mustApply(t, d, changed)
	for i, f := range flows {
		got := r.send(f, false)
		switch {
		case first[i] == 1 && got == 1:
			t.Fatalf("flow %d still reaches backend 1, which is down", i)
		case first[i] == 1 && got != predict(t, changed, f, 1009):
			t.Fatalf("flow %d of the down backend went to %d, not its Maglev backend", i, got)
		case first[i] != 1 && got != first[i]:
			t.Fatalf("flow %d moved from %d to %d though its backend is %v", i, first[i], got, changed.Backends[first[i]].State)
		}
	}
	for range 300 {
		if got := r.send(randomFlow(rng, svc.VIP, TCP), true); got == 0 || got == 1 {
			t.Fatalf("new flow went to backend %d, which is drain or down", got)
		}
	}
}

func TestConntrackInsertRules(t *testing.T) {
	d := mustOpen(t, Options{UDPTimeout: 50 * time.Millisecond})
	r := flowRun{d, t}
	bes := manyBackends("192.0.2.%d", 3, rand.New(rand.NewPCG(5, 6)))
	mustApply(t, d,
		Service{Name: "tcp", VIP: ip4("192.0.2.10"), Proto: TCP, Ports: []uint16{80}, Scheduler: Maglev, Backends: bes},
		Service{Name: "udp", VIP: ip4("192.0.2.10"), Proto: UDP, Ports: []uint16{80}, Scheduler: RoundRobin, Backends: bes},
		Service{Name: "rr", VIP: ip4("192.0.2.11"), Proto: TCP, Ports: []uint16{80}, Scheduler: RoundRobin, Backends: bes})

	tracked := func(f Flow) bool {
		t.Helper()
		info, err := d.LookupFlow(f)
		if err != nil {
			t.Fatal(err)
		}
		return info.Tracked
	}
	// Maglev (IPv4): a SYN leaves no entry, its handshake ACK makes one.
	syn := Flow{Src: ap("198.51.100.7:1234"), Dst: ap("192.0.2.10:80"), Proto: TCP}
	b := r.send(syn, true)
	if tracked(syn) {
		t.Fatal("a Maglev SYN created a conntrack entry")
	}
	if r.send(syn, false) != b || !tracked(syn) {
		t.Fatal("the handshake ACK did not create the entry of its SYN's backend")
	}
	// A packet without SYN of an untracked flow (its entry evicted, or its
	// SYN's choice pending on another CPU) gets the consistent choice and
	// an entry; a RST gets the choice and no entry.
	mid := Flow{Src: ap("198.51.100.7:1235"), Dst: ap("192.0.2.10:80"), Proto: TCP}
	r.send(mid, false)
	if !tracked(mid) {
		t.Fatal("an untracked Maglev flow's ACK created no entry")
	}
	rst := Flow{Src: ap("198.51.100.7:1236"), Dst: ap("192.0.2.10:80"), Proto: TCP}
	if run(t, d, build(t, pkt{src: rst.Src, dst: rst.Dst, proto: TCP, rst: true})); tracked(rst) {
		t.Fatal("a RST created a conntrack entry")
	}
	// Round robin cannot recompute its choice: the SYN is tracked, a packet
	// without SYN never creates an entry.
	ack := Flow{Src: ap("198.51.100.7:1234"), Dst: ap("192.0.2.11:80"), Proto: TCP}
	r.send(ack, false)
	if tracked(ack) {
		t.Fatal("a round-robin TCP packet without SYN created a conntrack entry")
	}
	r.send(ack, true)
	if !tracked(ack) {
		t.Fatal("a round-robin TCP SYN did not create a conntrack entry")
	}

	udp := Flow{Src: ap("198.51.100.7:1234"), Dst: ap("192.0.2.10:80"), Proto: UDP}
	b1 := r.send(udp, false)
	if info, _ := d.LookupFlow(udp); !info.Tracked {
		t.Fatal("the first UDP packet did not create a conntrack entry")
	}
	if b := r.send(udp, false); b != b1 {
		t.Fatalf("tracked UDP flow moved from %d to %d", b1, b)
	}
	time.Sleep(80 * time.Millisecond) // past the UDP timeout: round robin moves on
	if b := r.send(udp, false); b == b1 {
		t.Fatalf("expired UDP flow stayed on %d; round robin should pick the next backend", b)
	}
}

func TestRoundRobinWeights(t *testing.T) {
	const size = 251
	d := mustOpen(t, Options{MaglevTableSize: size, ConntrackSize: 65536})
	r := flowRun{d, t}
	bes := manyBackends("192.0.2.%d", 3, rand.New(rand.NewPCG(7, 8)))
	for i := range bes {
		bes[i].Weight = uint32(i + 1)
	}
	svc := Service{Name: "rr", VIP: ip4("192.0.2.10"), Proto: UDP, Scheduler: RoundRobin, Backends: bes}
	mustApply(t, d, svc)
	counts := make([]int, len(bes))
	last, repeats := -1, 0
	for i := range size {
		f := Flow{Src: netip.AddrPortFrom(ip4("198.51.100.1"), uint16(1000+i)), Dst: ap("192.0.2.10:53"), Proto: UDP}
		b := r.send(f, false)
		counts[b]++
		if b == last && b != 2 {
			repeats++
		}
		last = b
	}
	// One cycle of the table is exactly the weights' shares: 42/84/125 of 251.
	want := shares(maglevBackends{{"192.0.2.1", 1}, {"192.0.2.2", 2}, {"192.0.2.3", 3}}.pop(), size)
	for i := range counts {
		if counts[i] != int(want[i]) {
			t.Fatalf("backend %d got %d of %d new flows, want %d (weights 1:2:3)", i, counts[i], size, want[i])
		}
	}
	if repeats > 0 {
		t.Fatalf("lighter backends picked twice in a row %d times: sequence is not interleaved", repeats)
	}
	st, err := d.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if got := st.Services[0].Counters.NewFlows; got != size {
		t.Fatalf("service new flows = %d, want %d", got, size)
	}
	if got := st.Services[0].Backends[2].Counters.NewFlows; got != uint64(want[2]) {
		t.Fatalf("backend 3 new flows = %d, want %d", got, want[2])
	}
}

func TestNoBackendCounted(t *testing.T) {
	d := mustOpen(t, Options{})
	svc := Service{Name: "dead", VIP: ip4("192.0.2.10"), Proto: TCP,
		Backends: []Backend{{Name: "b", Addr: ip4("192.0.2.11"), MAC: beMAC(1), Weight: 0, State: Up}}}
	mustApply(t, d, svc)
	r := flowRun{d, t}
	if b := r.send(Flow{Src: ap("198.51.100.1:1"), Dst: ap("192.0.2.10:80"), Proto: TCP}, true); b != -1 {
		t.Fatalf("redirected to %d with no usable backend", b)
	}
	st, _ := d.Stats()
	if st.Services[0].Counters.NoBackend != 1 || st.Reasons[ReasonPassNoBackend].Packets != 1 {
		t.Fatalf("no-backend counters: service %+v, global %+v", st.Services[0].Counters, st.Reasons[ReasonPassNoBackend])
	}
}

// TestSynTrackedLate: a Maglev SYN leaves its choice pending in this CPU's
// flow cache instead of an entry. The handshake's ACK tracks the SYN's
// backend even when the table changed in between; when the choice is gone
// (a Go write to conntrack: new generation; another CPU) or its backend is
// no longer usable, the ACK gets the consistent choice of the table it
// finds, and the entry of that.
func TestSynTrackedLate(t *testing.T) {
	onOneCPU(t)
	const size = 1009
	rng := rand.New(rand.NewPCG(21, 22))
	d := mustOpen(t, Options{MaglevTableSize: size, ConntrackSize: 65536})
	r := flowRun{d, t}
	svc := Service{Name: "web", VIP: ip4("192.0.2.10"), Proto: TCP, Ports: []uint16{80}, Backends: manyBackends("192.0.2.%d", 10, rng)}
	grown := svc
	grown.Backends = append(append([]Backend{}, svc.Backends...), manyBackends("192.0.2.%d", 20, rng)[10:]...)
	mustApply(t, d, svc)
	var moving []Flow // flows whose choice the grown table changes
	for len(moving) < 30 {
		if f := randomFlow(rng, svc.VIP, TCP); predict(t, svc, f, size) != predict(t, grown, f, size) {
			moving = append(moving, f)
		}
	}
	tracked := func(f Flow) (int, bool) { // the entry's backend in grown
		t.Helper()
		info, err := d.LookupFlow(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, b := range grown.Backends {
			if info.Tracked && b.Addr == info.Addr {
				return i, true
			}
		}
		return -1, info.Tracked
	}
	syn := make([]int, len(moving))
	for i, f := range moving {
		if syn[i] = r.send(f, true); syn[i] != predict(t, svc, f, size) {
			t.Fatalf("SYN %d went to %d, want its Maglev backend %d", i, syn[i], predict(t, svc, f, size))
		}
		if _, ok := tracked(f); ok {
			t.Fatalf("SYN %d created an entry", i)
		}
	}
	newFlows := func() uint64 {
		t.Helper()
		st, err := d.Stats()
		if err != nil {
			t.Fatal(err)
		}
		return st.Services[0].Counters.NewFlows
	}
	if r.send(moving[0], true) != syn[0] || newFlows() != uint64(len(moving)) {
		t.Fatalf("after %d SYNs and one retransmitted: %d new flows, want %d", len(moving), newFlows(), len(moving))
	}
	mustApply(t, d, grown)
	for i, f := range moving[:10] {
		if got := r.send(f, false); got != syn[i] {
			t.Fatalf("ACK %d went to %d after the table changed, its SYN to %d", i, got, syn[i])
		}
		if b, ok := tracked(f); !ok || b != syn[i] {
			t.Fatalf("ACK %d: entry of backend %d (tracked %v), want %d", i, b, ok, syn[i])
		}
	}
	// A Go write to conntrack starts a new generation: pending choices go.
	if err := d.invalidateFlowCache(); err != nil {
		t.Fatal(err)
	}
	for i, f := range moving[10:20] {
		want := predict(t, grown, f, size)
		if got := r.send(f, false); got != want {
			t.Fatalf("ACK %d without its pending choice went to %d, want the grown table's %d", i, got, want)
		}
		if b, ok := tracked(f); !ok || b != want {
			t.Fatalf("ACK %d: entry of backend %d (tracked %v), want %d", i, b, ok, want)
		}
	}
	// A pending choice whose backend went down gives way.
	f := moving[20]
	b := r.send(f, true) // on the grown table
	down := grown
	down.Backends = append([]Backend{}, grown.Backends...)
	down.Backends[b].State = Down
	mustApply(t, d, down)
	if got, want := r.send(f, false), predict(t, down, f, size); got != want || got == b {
		t.Fatalf("ACK of a SYN to a backend now down went to %d, want %d (not %d)", got, want, b)
	}
}
