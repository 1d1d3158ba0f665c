package datapath

import (
	"math/rand/v2"
	"runtime"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// The cases of a late-tracked flow (a maglev SYN leaves its choice pending
// in the flow cache; bpf/lib/sched.h) that an independent review found
// mishandled by its first version: each test failed on 6a51d31.

// lateSetup: one maglev service of 10 backends, the grown table (20), and
// flows whose choice the growth changes.
func lateSetup(t *testing.T) (*Datapath, flowRun, Service, []Flow) {
	t.Helper()
	const size = 1009
	rng := rand.New(rand.NewPCG(31, 32))
	d := mustOpen(t, Options{MaglevTableSize: size, ConntrackSize: 65536})
	svc := Service{Name: "web", VIP: ip4("192.0.2.10"), Proto: TCP, Ports: []uint16{80}, Backends: manyBackends("192.0.2.%d", 10, rng)}
	grown := svc
	grown.Backends = append(append([]Backend{}, svc.Backends...), manyBackends("192.0.2.%d", 20, rng)[10:]...)
	mustApply(t, d, svc)
	var moving []Flow
	for len(moving) < 10 {
		if f := randomFlow(rng, svc.VIP, TCP); predict(t, svc, f, size) != predict(t, grown, f, size) {
			moving = append(moving, f)
		}
	}
	return d, flowRun{d, t}, grown, moving
}

func lateEntry(t *testing.T, d *Datapath, f Flow) FlowInfo {
	t.Helper()
	info, err := d.LookupFlow(f)
	if err != nil {
		t.Fatal(err)
	}
	return info
}

// TestLateSYNKeepsEstablished: a SYN with an established flow's ports (a
// spoof, or a client reusing ports the balancer never saw closed) follows
// the entry, which stands, and so do the packets after it, a RST too.
func TestLateSYNKeepsEstablished(t *testing.T) {
	onOneCPU(t)
	d, r, grown, moving := lateSetup(t)
	f := moving[0]
	b := r.open(f)
	mustApply(t, d, grown)
	if s := r.send(f, true); s != b {
		t.Fatalf("SYN on the established flow's ports went to %d, the flow is on %d", s, b)
	}
	for i := range 3 {
		if got := r.send(f, false); got != b {
			t.Fatalf("ACK %d after a SYN on the established flow went to %d, the flow is on %d", i, got, b)
		}
	}
	if info := lateEntry(t, d, f); !info.Tracked || info.State != Established || info.Addr != grown.Backends[b].Addr {
		t.Fatalf("entry after the SYN: %+v; want established on %s", info, grown.Backends[b].Addr)
	}
	r.send(f, true)
	if got := r.sendFlags(f, pkt{rst: true, ack: true}); got != b || lateEntry(t, d, f).State != Closed {
		t.Fatalf("RST after a SYN on the established flow went to %d (flow on %d), entry %+v", got, b, lateEntry(t, d, f))
	}
}

// TestLateReuseOnDrainingBackend: a client reusing the ports of a flow
// whose backend now drains (out of the table), its old connection never
// seen closed, gets SYN and ACK on that backend: one handshake, one host.
func TestLateReuseOnDrainingBackend(t *testing.T) {
	onOneCPU(t)
	d, r, grown, moving := lateSetup(t)
	f := moving[6]
	svc := grown
	svc.Backends = grown.Backends[:10]
	b := r.open(f)
	dr := svc
	dr.Backends = append([]Backend{}, svc.Backends...)
	dr.Backends[b].State = Drain
	mustApply(t, d, dr)
	if s, a := r.send(f, true), r.send(f, false); s != b || a != b {
		t.Fatalf("reused ports of a flow on draining %d: SYN to %d, ACK to %d", b, s, a)
	}
}

// TestLatePendingSurvivesProgramBump: the program retiring copies (a flow
// renewed onto another backend when its own went down) does not cancel a
// pending handshake: its ACK still follows its SYN across the table change.
func TestLatePendingSurvivesProgramBump(t *testing.T) {
	onOneCPU(t)
	d, r, grown, moving := lateSetup(t)
	f := moving[7]
	x := r.send(f, true)
	mustApply(t, d, grown)
	var g Flow
	gb := -1
	for _, c := range moving {
		if bb := predict(t, grown, c, 1009); c != f && bb != x {
			g, gb = c, bb
			break
		}
	}
	if gb < 0 || r.open(g) != gb {
		t.Fatal("no second flow on another backend to take down")
	}
	down := grown
	down.Backends = append([]Backend{}, grown.Backends...)
	down.Backends[gb].State = Down
	mustApply(t, d, down)
	if r.send(g, false) == gb { // renewed elsewhere: the program bumps its generation
		t.Fatalf("flow of a down backend still went to it")
	}
	if a := r.send(f, false); a != x {
		t.Fatalf("ACK went to %d after the program's generation bump, its SYN to %d", a, x)
	}
}

// TestLatePortReuseRenews: a connection reusing a closed one's ports is
// committed over the closing entry in place: counted renewed, not inserted
// (the eviction estimate must not grow), and on the new choice.
func TestLatePortReuseRenews(t *testing.T) {
	onOneCPU(t)
	d, r, grown, moving := lateSetup(t)
	f := moving[1]
	r.open(f)
	r.sendFlags(f, pkt{fin: true, ack: true})
	mustApply(t, d, grown)
	want := predict(t, grown, f, 1009)
	if got := r.open(f); got != want {
		t.Fatalf("new connection on reused ports went to %d, want the grown table's %d", got, want)
	}
	st, err := d.ConntrackStats()
	if err != nil {
		t.Fatal(err)
	}
	if st.Inserted != 1 || st.Renewed != 1 || st.Evicted != 0 || st.Entries != 1 {
		t.Fatalf("after open, FIN, open on the same ports: %+v; want 1 inserted, 1 renewed, 0 evicted, 1 entry", st)
	}
}

// TestLateCommitInvalidatesOtherCPUs: a commit that renews an entry onto
// another backend retires the other CPUs' cached copies of it.
func TestLateCommitInvalidatesOtherCPUs(t *testing.T) {
	if runtime.NumCPU() < 2 {
		t.Skip("needs 2 CPUs: the cached copy must be on another one")
	}
	cpus := twoCPUs(t)
	onOneCPU(t)
	d, r, grown, moving := lateSetup(t)
	f := moving[2]
	onCPU(t, cpus[0])
	b := r.open(f)
	onCPU(t, cpus[1])
	r.send(f, false) // a copy in the second CPU's cache
	onCPU(t, cpus[0])
	r.sendFlags(f, pkt{fin: true, ack: true}) // closing; the other CPU's copy stays
	mustApply(t, d, grown)
	onCPU(t, cpus[0])
	a0 := r.open(f) // reused ports: renewed onto the grown table's choice
	onCPU(t, cpus[1])
	if a1 := r.send(f, false); a1 != a0 || a0 == b {
		t.Fatalf("one flow on two backends: %d on one CPU, %d on the other (was %d)", a0, a1, b)
	}
}

// TestLateSecondPacketNotTracked: a RST, an ICMP error about the flow and
// fragments after a SYN follow its pending choice and create no entry.
func TestLateSecondPacketNotTracked(t *testing.T) {
	onOneCPU(t)
	d, r, _, moving := lateSetup(t)
	f := moving[3]
	b := r.send(f, true)
	v, out := run(t, d, icmp4(t, 3, 4, replyOf(t, pkt{src: f.Src, dst: f.Dst, proto: TCP})))
	if v != VerdictRedirect || macIndex(t, out) != b {
		t.Fatalf("ICMP error after the SYN: verdict %d; want redirected to the SYN's %d", v, b)
	}
	if info := lateEntry(t, d, f); info.Tracked {
		t.Fatalf("an ICMP error tracked the flow: %+v", info)
	}
	if got := r.sendFlags(f, pkt{rst: true, ack: true}); got != b {
		t.Fatalf("RST after the SYN went to %d, want the SYN's %d", got, b)
	}
	if info := lateEntry(t, d, f); info.Tracked {
		t.Fatalf("a RST tracked the flow: %+v", info)
	}
	g := moving[5]
	b = r.send(g, true)
	first := r.sendFlags(g, pkt{ack: true, moreFrags: true, payload: make([]byte, 64), fragID: 99})
	later := r.sendFlags(g, pkt{ack: true, fragOffset: 10, payload: make([]byte, 64), fragID: 99})
	if first != b || later != b {
		t.Fatalf("fragments after a SYN went to %d and %d, want the SYN's %d", first, later, b)
	}
	if info := lateEntry(t, d, g); info.Tracked {
		t.Fatalf("fragments tracked the flow: %+v", info)
	}
	if st, err := d.ConntrackStats(); err != nil || st.Inserted != 0 {
		t.Fatalf("conntrack after SYN, ICMP error, RST, fragments: %+v, %v; want nothing inserted", st, err)
	}
}

// TestLateSYNRetransmitKeepsChoice: a SYN retransmitted after the table
// changed keeps the pending choice (the first SYN's backend may have
// answered), and its ACK tracks that.
func TestLateSYNRetransmitKeepsChoice(t *testing.T) {
	onOneCPU(t)
	d, r, grown, moving := lateSetup(t)
	f := moving[4]
	s1 := r.send(f, true)
	mustApply(t, d, grown)
	if s2, a := r.send(f, true), r.send(f, false); s2 != s1 || a != s1 {
		t.Fatalf("SYN to %d, table change, retransmitted SYN to %d, ACK to %d; want all on %d", s1, s2, a, s1)
	}
}

// TestLateStrayACKNotActive: ACKs of flows never seen (stray, spoofed) are
// tracked on their consistent choice but unconfirmed (syn seen: inactive,
// closing timeout); the flow's next packet confirms it.
func TestLateStrayACKNotActive(t *testing.T) {
	d, r, grown, _ := lateSetup(t)
	rng := rand.New(rand.NewPCG(9, 9))
	var flows []Flow
	for range 50 {
		f := randomFlow(rng, grown.VIP, TCP)
		flows = append(flows, f)
		r.send(f, false)
	}
	active := func() (a, i uint64) {
		t.Helper()
		act, inact := flowsOn(t, d)
		for k := range act {
			a, i = a+act[k], i+inact[k]
		}
		return a, i
	}
	if a, i := active(); a != 0 || i != 50 {
		t.Fatalf("50 stray ACKs: %d active, %d inactive; want 0 and 50", a, i)
	}
	r.send(flows[0], false)
	if a, i := active(); a != 1 || i != 49 {
		t.Fatalf("a stray flow's second ACK: %d active, %d inactive; want 1 and 49", a, i)
	}
}

// TestLateUnknownFragmentsNotTracked: fragments of a flow never seen get
// the consistent choice and no entry (a fragmented ACK flood must not
// fill the table through them).
func TestLateUnknownFragmentsNotTracked(t *testing.T) {
	d, r, grown, _ := lateSetup(t)
	mustApply(t, d, grown)
	rng := rand.New(rand.NewPCG(61, 62))
	for i := range 20 {
		f := randomFlow(rng, grown.VIP, TCP)
		id := uint32(100 + i)
		first := r.sendFlags(f, pkt{ack: true, moreFrags: true, payload: make([]byte, 64), fragID: id})
		later := r.sendFlags(f, pkt{ack: true, fragOffset: 10, payload: make([]byte, 64), fragID: id})
		if want := predict(t, grown, f, 1009); first != want || later != want {
			t.Fatalf("fragments of an unknown flow went to %d and %d, want the consistent %d", first, later, want)
		}
	}
	if n, err := d.ConntrackEntries(); err != nil || n != 0 {
		t.Fatalf("%d entries after fragments of unknown flows, %v; want none", n, err)
	}
}

// TestLatePortRemovedBetween: a port removed from its service between a
// SYN and its ACK is not served by the pending choice, and leaves no entry
// (which no purge would find).
func TestLatePortRemovedBetween(t *testing.T) {
	onOneCPU(t)
	rng := rand.New(rand.NewPCG(41, 42))
	d := mustOpen(t, Options{MaglevTableSize: 251, ConntrackSize: 4096})
	r := flowRun{d, t}
	svc := Service{Name: "web", VIP: ip4("192.0.2.10"), Proto: TCP, Ports: []uint16{80, 443}, Backends: manyBackends("192.0.2.%d", 3, rng)}
	mustApply(t, d, svc)
	f := Flow{Src: ap("198.51.100.3:5555"), Dst: ap("192.0.2.10:443"), Proto: TCP}
	if r.send(f, true) < 0 {
		t.Fatal("SYN to 443 not forwarded")
	}
	svc.Ports = []uint16{80}
	mustApply(t, d, svc)
	if got := r.send(f, false); got != -1 {
		t.Fatalf("ACK to the removed port 443 forwarded to %d", got)
	}
	if n, err := d.ConntrackEntries(); err != nil || n != 0 {
		t.Fatalf("%d entries, %v; want none", n, err)
	}
}

// twoCPUs returns two CPUs the test may run on.
func twoCPUs(t *testing.T) [2]int {
	t.Helper()
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		t.Fatal(err)
	}
	var out [2]int
	n := 0
	for cpu := 0; n < 2 && cpu < 1024; cpu++ {
		if set.IsSet(cpu) {
			out[n] = cpu
			n++
		}
	}
	if n < 2 {
		t.Skip("needs 2 CPUs it may run on")
	}
	return out
}

// onCPU moves the test's thread (locked by onOneCPU) to cpu.
func onCPU(t *testing.T, cpu int) {
	t.Helper()
	var one unix.CPUSet
	one.Set(cpu)
	if err := unix.SchedSetaffinity(0, &one); err != nil {
		t.Fatal(err)
	}
}

// clockNow is the program's clock (coarseNow) in ns.
func clockNow(t *testing.T) uint64 {
	t.Helper()
	ns, err := coarseNow()
	if err != nil {
		t.Fatal(err)
	}
	return ns
}

// unmarkedEntry: lateSetup's grown table applied, and a standing entry of
// flow f on backend other, not f's consistent choice want, written behind
// lb_ct_recent's back (no mark).
func unmarkedEntry(t *testing.T) (d *Datapath, r flowRun, f Flow, want, other int) {
	t.Helper()
	d, r, grown, moving := lateSetup(t)
	mustApply(t, d, grown)
	f = moving[8]
	want = predict(t, grown, f, 1009)
	other = (want + 1) % len(grown.Backends)
	id := d.state.services[0].backends[grown.Backends[other].Addr]
	if err := d.ctPut(flowKey(f), &bpfLbCtEntry{LastSeenNs: clockNow(t), BackendId: id, Cookie: d.state.backends[id].cookie}); err != nil {
		t.Fatal(err)
	}
	return d, r, f, want, other
}

// TestLateSYNSkipsUnmarkedLookup: on fresh maps a SYN looks up an entry
// only if lb_ct_recent says one of its hash was written within a timeout.
// An entry written behind the program's back (no mark) is not seen by the
// SYN; the same entry written by the program is.
func TestLateSYNSkipsUnmarkedLookup(t *testing.T) {
	onOneCPU(t)
	_, r, f, want, other := unmarkedEntry(t)
	if got := r.send(f, false); got != other {
		t.Fatalf("ACK of the written entry went to %d, want its backend %d", got, other)
	}
	// The ACK refreshed nothing (the entry is younger than a second), so
	// the entry is still unmarked: the SYN takes the consistent choice.
	if got := r.send(f, true); got != want {
		t.Fatalf("SYN with an unmarked entry went to %d, want the consistent %d (no lookup)", got, want)
	}
}

// TestLateSYNAfterAdoptFollowsEntry: a program loaded onto an earlier
// program's conntrack (a restart, an upgrade) has no marks for its
// entries: for a timeout it looks every SYN's entry up, so a reused port
// still follows its standing entry.
func TestLateSYNAfterAdoptFollowsEntry(t *testing.T) {
	onOneCPU(t)
	const size = 1009
	pin := testPinPath(t)
	rng := rand.New(rand.NewPCG(51, 52))
	svc := Service{Name: "web", VIP: ip4("192.0.2.10"), Proto: TCP, Ports: []uint16{80}, Backends: manyBackends("192.0.2.%d", 10, rng)}
	grown := svc
	grown.Backends = append(append([]Backend{}, svc.Backends...), manyBackends("192.0.2.%d", 20, rng)[10:]...)
	var f Flow
	for {
		if f = randomFlow(rng, svc.VIP, TCP); predict(t, svc, f, size) != predict(t, grown, f, size) {
			break
		}
	}
	d1 := mustOpen(t, Options{PinPath: pin, MaglevTableSize: size})
	mustApply(t, d1, svc)
	b := flowRun{d1, t}.open(f)
	if err := d1.Close(); err != nil {
		t.Fatal(err)
	}
	d2 := mustOpen(t, Options{PinPath: pin, MaglevTableSize: size})
	if !d2.Adopted() {
		t.Fatal("pinned maps not adopted")
	}
	mustApply(t, d2, grown)
	if got := (flowRun{d2, t}).send(f, true); got != b {
		t.Fatalf("SYN on a standing entry after adoption went to %d, the entry's backend is %d", got, b)
	}
}

// pendingSetup: lateSetup's flow f under the table lateSetup applied,
// its consistent choice want, and other, another backend of which
// plantPending writes f's pending choice into every flow cache slot.
func pendingSetup(t *testing.T) (d *Datapath, r flowRun, grown Service, f Flow, want, other int) {
	t.Helper()
	d, r, grown, moving := lateSetup(t)
	svc := grown
	svc.Backends = grown.Backends[:10] // as lateSetup applied it
	f = moving[5]
	want = predict(t, svc, f, 1009)
	return d, r, grown, f, want, (want + 1) % len(svc.Backends)
}

// plantPending writes, behind the program's back, f's pending choice of
// backend index i (last seen at seen) into every flow cache slot, so that
// whichever slot the SYN's CPU reads holds it.
func plantPending(t *testing.T, d *Datapath, svc Service, f Flow, i int, seen uint64) {
	t.Helper()
	id := d.state.services[0].backends[svc.Backends[i].Addr]
	k, _ := ct4Key(flowKey(f))
	var cfg bpfLbConfig
	if err := d.objs.LbCfg.Lookup(uint32(0), &cfg); err != nil {
		t.Fatal(err)
	}
	const pending = 1 << 39 // LB_FC_PENDING
	pend := bpfLbFcEntry{
		K0:         uint64(k.Saddr) | uint64(k.Daddr)<<32,
		K1:         uint64(k.Sport) | uint64(k.Dport)<<16 | uint64(k.Proto)<<32 | uint64(cfg.CtGen&0xffffff)<<40 | pending,
		LastSeenNs: seen,
		BackendId:  id,
		Cookie:     d.state.backends[id].cookie,
	}
	n := int(d.objs.LbFlowCache.MaxEntries())
	keys, vals := make([]uint32, n), make([]bpfLbFcEntry, n)
	for j := range n {
		keys[j], vals[j] = uint32(j), pend
	}
	if _, err := d.objs.LbFlowCache.BatchUpdate(keys, vals, nil); err != nil {
		t.Fatal(err)
	}
}

// recentTick is a time as lb_ct_recent holds it (conntrack.h lb_recent_tick).
func recentTick(ns uint64) uint8 { return uint8((ns>>34)%255) + 1 }

// markAllPend sets the pend time of every lb_ct_recent slot to tick.
func markAllPend(t *testing.T, d *Datapath, tick uint8) {
	t.Helper()
	var line bpfLbRecentLine
	for i := range line.Slot {
		line.Slot[i].Pend = tick
	}
	fillRecent(t, d, line)
}

// fillRecent writes line into every lb_ct_recent value.
func fillRecent(t *testing.T, d *Datapath, line bpfLbRecentLine) {
	t.Helper()
	n := int(d.objs.LbCtRecent.MaxEntries())
	keys, vals := make([]uint32, n), make([]bpfLbRecentLine, n)
	for i := range n {
		keys[i], vals[i] = uint32(i), line
	}
	if _, err := d.objs.LbCtRecent.BatchUpdate(keys, vals, nil); err != nil {
		t.Fatal(err)
	}
}

// TestLateSYNSkipsUnmarkedPending: a SYN reads its flow cache slot for a
// pending choice only if lb_ct_recent says a SYN of its hash left one
// within a pending choice's life. A choice written behind the program's
// back (no mark) into every slot is not seen by the SYN; one the
// program's own SYN left is (a retransmission keeps it).
func TestLateSYNSkipsUnmarkedPending(t *testing.T) {
	onOneCPU(t)
	d, r, grown, f, want, other := pendingSetup(t)
	plantPending(t, d, grown, f, other, clockNow(t))
	if got := r.send(f, true); got != want {
		t.Fatalf("SYN with an unmarked pending choice for backend %d went to %d, want the consistent %d (no read)", other, got, want)
	}
	// Its own SYN marked the slot: the retransmission after the table
	// changed (f's choice with it) keeps the pending choice.
	mustApply(t, d, grown)
	if got := r.send(f, true); got != want {
		t.Fatalf("retransmitted SYN went to %d, want its pending choice %d", got, want)
	}
}

// TestLateRetransmitRemarksPending: a retransmitted SYN renews its pending
// choice's life and, with it, its slot's pend time; otherwise a later
// retransmission within the renewed life, but more than a pending choice's
// life after the first SYN, would skip the read and could split the
// handshake after a table change. (Suggested by the review of 462a42c.)
func TestLateRetransmitRemarksPending(t *testing.T) {
	onOneCPU(t)
	d, r, grown, f, _, other := pendingSetup(t)
	old := clockNow(t) - uint64(50*time.Second) // within the 60 s syn-seen life, three ~17 s units back
	plantPending(t, d, grown, f, other, old)
	markAllPend(t, d, recentTick(old))
	before := recentTick(clockNow(t))
	if got := r.send(f, true); got != other {
		t.Fatalf("retransmission went to %d, want its pending choice %d", got, other)
	}
	after := recentTick(clockNow(t))
	var renewed int
	for i := range d.objs.LbCtRecent.MaxEntries() {
		var l bpfLbRecentLine
		if err := d.objs.LbCtRecent.Lookup(i, &l); err != nil {
			t.Fatal(err)
		}
		for _, s := range l.Slot {
			if s.Pend == before || s.Pend == after {
				renewed++
			}
		}
	}
	if renewed != 1 {
		t.Fatalf("%d slots marked now after the retransmission renewed its pending choice, want its own 1", renewed)
	}
}

// TestRecentSized: lb_ct_recent holds four two-byte slots per conntrack
// entry, packed 32 to a 64-byte value (two-byte values would each take 8
// bytes of the array), and the program's mask addresses exactly them.
func TestRecentSized(t *testing.T) {
	for _, n := range []uint32{1, 1 << 14, 100_000, 1 << 20} {
		d := mustOpen(t, Options{ConntrackSize: n})
		m := d.objs.LbCtRecent
		slots := uint64(4 * max(n, 1<<14))
		if m.ValueSize() != 64 || uint64(m.MaxEntries())*32 < slots || uint64(m.MaxEntries())*16 >= slots {
			t.Errorf("conntrack %d: lb_ct_recent is %d values of %d bytes, want 64-byte values holding the first power of two >= %d slots",
				n, m.MaxEntries(), m.ValueSize(), slots)
		}
		spec, err := d.spec(d.opts.PinPath)
		if err != nil {
			t.Fatal(err)
		}
		var mask uint32
		if err := spec.Variables[bpfVarLbRecentMask].Get(&mask); err != nil {
			t.Fatal(err)
		}
		if uint64(mask)+1 != uint64(m.MaxEntries())*32 {
			t.Errorf("conntrack %d: lb_recent_mask %#x, want %d slots - 1", n, mask, m.MaxEntries()*32)
		}
	}
}

// TestCacheMapsLineAligned: the flow cache and lb_ct_recent are mmapable
// arrays, whose values start on a page (a plain array's start 56 bytes
// into a cache line, so every other 32-byte flow cache entry would span
// two lines, and every lb_ct_recent value would).
func TestCacheMapsLineAligned(t *testing.T) {
	d := mustOpen(t, Options{ConntrackSize: 65536})
	for name, m := range map[string]*ebpf.Map{"lb_flow_cache": d.objs.LbFlowCache, "lb_ct_recent": d.objs.LbCtRecent} {
		if m.Flags()&unix.BPF_F_MMAPABLE == 0 {
			t.Errorf("%s: flags %#x, want BPF_F_MMAPABLE (values page-aligned)", name, m.Flags())
		}
		if 64%m.ValueSize() != 0 && m.ValueSize()%64 != 0 {
			t.Errorf("%s: %d-byte values do not tile cache lines", name, m.ValueSize())
		}
	}
}

// recentMarked reports whether any lb_ct_recent slot has an entry mark
// (the tests' only IPv4 flow is the one that can have written it).
func recentMarked(t *testing.T, d *Datapath) bool {
	t.Helper()
	var (
		k    uint32
		line bpfLbRecentLine
	)
	it := d.objs.LbCtRecent.Iterate()
	for it.Next(&k, &line) {
		for _, s := range line.Slot {
			if s.Entry != 0 {
				return true
			}
		}
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	return false
}

// clearRecent zeroes every lb_ct_recent slot.
func clearRecent(t *testing.T, d *Datapath) { fillRecent(t, d, bpfLbRecentLine{}) }

// tickNs is lb_ct_recent's unit (2^LB_RECENT_SHIFT ns, ~17 s).
const tickNs = 1 << 34

// midTick waits until the program's clock is at least 1.2 s into a tick
// and 0.5 s before its end, and returns it: a refresh from 1.1 s ago, or
// from just before the tick began, then happens in this tick.
func midTick(t *testing.T) uint64 {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		now := clockNow(t)
		if off := now % tickNs; off >= 1_200_000_000 && off <= tickNs-500_000_000 {
			return now
		}
		if time.Now().After(deadline) {
			t.Fatal("the program's clock did not reach the middle of a tick in 5 s")
		}
	}
}

// refreshFrom writes f's entry as last seen at then (behind lb_ct_recent's
// back: unmarked), clears lb_ct_recent, sends an ACK of f, which refreshes
// the entry, and reports whether that marked f's slot.
func refreshFrom(t *testing.T, d *Datapath, r flowRun, f Flow, then uint64) bool {
	t.Helper()
	var e, after bpfLbCtEntry
	if err := d.ctLookup(flowKey(f), &e); err != nil {
		t.Fatal(err)
	}
	e.LastSeenNs = then
	if err := d.ctPut(flowKey(f), &e); err != nil {
		t.Fatal(err)
	}
	clearRecent(t, d)
	r.send(f, false)
	if err := d.ctLookup(flowKey(f), &after); err != nil {
		t.Fatal(err)
	}
	if after.LastSeenNs == then {
		t.Fatal("the ACK did not refresh an entry over a second old")
	}
	return recentMarked(t, d)
}

// TestLateRefreshMarksOncePerTick: a busy flow's entry, refreshed every
// second, writes its lb_ct_recent slot only when the refresh leaves the
// tick of the entry's last write (which marked it); on an earlier
// program's maps every refresh marks until the entries that program may
// have written unmarked are gone.
func TestLateRefreshMarksOncePerTick(t *testing.T) {
	onOneCPU(t)
	d, r, _, moving := lateSetup(t)
	f := moving[0]
	if r.open(f) < 0 {
		t.Fatal("handshake split")
	}
	if !recentMarked(t, d) {
		t.Fatal("the handshake's entry left no mark")
	}
	now := midTick(t)
	if !refreshFrom(t, d, r, f, now/tickNs*tickNs-1) {
		t.Error("a refresh leaving the tick of the entry's last write left no mark: a SYN could skip the entry")
	}
	now = midTick(t)
	if refreshFrom(t, d, r, f, now-1_100_000_000) {
		t.Error("a refresh within the tick of the entry's last write marked the slot again")
	}

	pin := testPinPath(t)
	d1 := mustOpen(t, Options{PinPath: pin, MaglevTableSize: 1009, ConntrackSize: 65536})
	svc := Service{Name: "web", VIP: ip4("192.0.2.10"), Proto: TCP, Ports: []uint16{80}, Backends: manyBackends("192.0.2.%d", 10, rand.New(rand.NewPCG(31, 32)))}
	mustApply(t, d1, svc)
	if (flowRun{d1, t}).open(f) < 0 {
		t.Fatal("handshake split")
	}
	if err := d1.Close(); err != nil {
		t.Fatal(err)
	}
	d2 := mustOpen(t, Options{PinPath: pin, MaglevTableSize: 1009, ConntrackSize: 65536})
	if !d2.Adopted() {
		t.Fatal("pinned maps not adopted")
	}
	mustApply(t, d2, svc)
	now = midTick(t)
	if !refreshFrom(t, d2, flowRun{d2, t}, f, now-1_100_000_000) {
		t.Fatal("after adoption a refresh within the tick of the earlier program's write left no mark")
	}
}

// TestLateSYNFollowsEntryMarkedTickAhead: a slot marked by a CPU whose
// cached clock crossed into the next tick a jiffy earlier counts as recent
// on this one: the SYN looks its standing entry up and follows it.
func TestLateSYNFollowsEntryMarkedTickAhead(t *testing.T) {
	onOneCPU(t)
	d, r, f, want, other := unmarkedEntry(t)
	ahead := recentTick(clockNow(t) + tickNs)
	var line bpfLbRecentLine
	for i := range line.Slot {
		line.Slot[i].Entry = ahead
	}
	fillRecent(t, d, line)
	if got := r.send(f, true); got != other {
		t.Fatalf("SYN with its slot marked a tick ahead went to %d, want its standing entry's %d (the consistent choice is %d)", got, other, want)
	}
}
