package datapath

import (
	"bytes"
	"math/rand/v2"
	"testing"
	"time"
)

// backendSlot returns the id and cookie of the backend slot whose MAC is
// beMAC(i).
func backendSlot(t *testing.T, d *Datapath, i int) (uint32, uint32) {
	t.Helper()
	var (
		id uint32
		be bpfLbBackend
	)
	it := d.objs.LbBackends.Iterate()
	for it.Next(&id, &be) {
		if be.State != 0 && bytes.Equal(be.Mac[:], beMAC(i)) {
			return id, be.Cookie
		}
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	t.Fatalf("no backend slot with MAC %s", beMAC(i))
	return 0, 0
}

// sendFlags sends one packet of f with the given TCP flags and returns the
// backend index (-1: not redirected).
func (r flowRun) sendFlags(f Flow, p pkt) int {
	r.t.Helper()
	p.src, p.dst, p.proto = f.Src, f.Dst, f.Proto
	verdict, out := run(r.t, r.d, build(r.t, p))
	if verdict != VerdictRedirect {
		return -1
	}
	return macIndex(r.t, out)
}

// TestFlowCache: the per-CPU flow cache (lb_flow_cache) answers for an
// established IPv4 flow only what its lb_ct4 entry would, and gives way
// when the entry changes: a write by Go (generation), a FIN or RST (the
// entry's state), a backend going down; and it lets the entry's
// timestamp be refreshed while the flow is busy.
func TestFlowCache(t *testing.T) {
	onOneCPU(t) // the cache answers on the CPU that filled it
	d := mustOpen(t, Options{MaglevTableSize: 251, ConntrackSize: 4096})
	r := flowRun{d, t}
	svc := Service{Name: "web", VIP: ip4("192.0.2.10"), Proto: TCP, Ports: []uint16{80},
		Backends: manyBackends("192.0.2.%d", 3, rand.New(rand.NewPCG(7, 8)))}
	mustApply(t, d, svc)
	f := Flow{Src: ap("198.51.100.9:40000"), Dst: ap("192.0.2.10:80"), Proto: TCP}
	key := flowKey(f)

	establish := func(f Flow) int {
		t.Helper()
		first := r.send(f, true)
		if got := r.send(f, false); got != first { // handshake ACK: established, cached
			t.Fatalf("handshake ACK went to %d, SYN to %d", got, first)
		}
		return first
	}
	first := establish(f)
	other := (first + 1) % 3
	oid, ocookie := backendSlot(t, d, other)
	var ct bpfLbCtEntry
	if err := d.ctLookup(key, &ct); err != nil {
		t.Fatal(err)
	}
	moved := ct
	moved.BackendId, moved.Cookie = oid, ocookie

	// Written behind the cache's back (no generation bump), the entry is
	// not consulted: the cache answers. Proves the hits come from it.
	k4, _ := ct4Key(key)
	if err := d.objs.LbCt4.Put(&k4, &moved); err != nil {
		t.Fatal(err)
	}
	if got := r.send(f, false); got != first {
		t.Fatalf("cached flow went to %d, want %d from the cache (is the cache used?)", got, first)
	}
	// Cached hits count as the LRU path counts them: per backend, per
	// service and per verdict reason, packets and bytes.
	before, err := d.Stats()
	if err != nil {
		t.Fatal(err)
	}
	const hits = 5
	for range hits {
		if got := r.send(f, false); got != first {
			t.Fatalf("cached flow went to %d, want %d", got, first)
		}
	}
	after, err := d.Stats()
	if err != nil {
		t.Fatal(err)
	}
	frame := uint64(len(build(t, pkt{src: f.Src, dst: f.Dst, proto: f.Proto, ack: true})))
	be0, be1 := before.Services[0].Backends[first].Counters, after.Services[0].Backends[first].Counters
	sv0, sv1 := before.Services[0].Counters, after.Services[0].Counters
	rd0, rd1 := before.Reasons[ReasonRedirect], after.Reasons[ReasonRedirect]
	if be1.Packets-be0.Packets != hits || sv1.Packets-sv0.Packets != hits || rd1.Packets-rd0.Packets != hits ||
		be1.Bytes-be0.Bytes != hits*frame || sv1.NewFlows != sv0.NewFlows {
		t.Fatalf("%d cached hits counted: backend %d packets %d bytes, service %d packets (%d new flows), redirect reason %d; want %d packets of %d bytes, no new flow",
			hits, be1.Packets-be0.Packets, be1.Bytes-be0.Bytes, sv1.Packets-sv0.Packets, sv1.NewFlows-sv0.NewFlows, rd1.Packets-rd0.Packets, hits, frame)
	}

	// Go's writes bump the generation: the next packet follows the entry.
	if err := d.invalidateFlowCache(); err != nil {
		t.Fatal(err)
	}
	if got := r.send(f, false); got != other {
		t.Fatalf("after a generation bump the flow went to %d, want %d (its entry's)", got, other)
	}
	if got := r.send(f, false); got != other {
		t.Fatalf("second packet after the bump went to %d, want %d", got, other)
	}

	// The entry's backend goes down: the cached copy must not be used.
	down := svc
	down.Backends = append([]Backend{}, svc.Backends...)
	down.Backends[other].State = Down
	mustApply(t, d, down)
	if got := r.send(f, false); got == other || got < 0 {
		t.Fatalf("flow of a down backend went to %d", got)
	}

	// A FIN takes the LRU path: the entry records it (closing, inactive).
	g := Flow{Src: ap("198.51.100.9:40001"), Dst: ap("192.0.2.10:80"), Proto: TCP}
	gb := establish(g)
	if got := r.send(g, false); got != gb {
		t.Fatalf("established flow went to %d, want %d", got, gb)
	}
	if got := r.sendFlags(g, pkt{fin: true, ack: true}); got != gb {
		t.Fatalf("FIN went to %d, want %d", got, gb)
	}
	if err := d.ctLookup(flowKey(g), &ct); err != nil {
		t.Fatal(err)
	}
	if ct.State != 2 { // LB_CT_CLOSING
		t.Fatalf("entry state after a cached flow's FIN = %d, want closing (2)", ct.State)
	}

	// A busy cached flow still refreshes its entry's timestamp (and LRU
	// recency): the cache trusts a copy for one refresh interval only.
	h := Flow{Src: ap("198.51.100.9:40002"), Dst: ap("192.0.2.10:80"), Proto: TCP}
	establish(h)
	if err := d.ctLookup(flowKey(h), &ct); err != nil {
		t.Fatal(err)
	}
	start := ct.LastSeenNs
	deadline := time.Now().Add(5 * time.Second)
	for ct.LastSeenNs == start {
		if time.Now().After(deadline) {
			t.Fatal("a busy cached flow's entry was not refreshed within 5 s (refresh interval 1 s)")
		}
		r.send(h, false)
		time.Sleep(20 * time.Millisecond)
		if err := d.ctLookup(flowKey(h), &ct); err != nil {
			t.Fatal(err)
		}
	}
}
