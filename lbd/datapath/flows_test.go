package datapath

import (
	"math/rand/v2"
	"testing"
	"time"
)

// TestActiveFlows: tracked flows are counted on their backend; flows of a
// backend taken down no longer count.
func TestActiveFlows(t *testing.T) {
	onOneCPU(t) // a handshake ACK on another CPU than its SYN leaves the entry unconfirmed
	rng := rand.New(rand.NewPCG(7, 8))
	d := mustOpen(t, Options{MaglevTableSize: 1009, ConntrackSize: 65536})
	r := flowRun{d, t}
	svc := Service{Name: "web", VIP: ip4("192.0.2.10"), Proto: TCP, Ports: []uint16{80}, Backends: manyBackends("192.0.2.%d", 4, rng)}
	mustApply(t, d, svc)
	want := make([]uint64, len(svc.Backends))
	for i := 0; i < 200; i++ {
		f := randomFlow(rng, svc.VIP, TCP)
		want[r.send(f, true)]++
		r.send(f, false) // the handshake's ACK: established
	}
	counts := func() []uint64 {
		st, err := d.Stats()
		if err != nil {
			t.Fatal(err)
		}
		if err := d.ActiveFlows(&st); err != nil {
			t.Fatal(err)
		}
		out := make([]uint64, len(svc.Backends))
		for _, b := range st.Services[0].Backends {
			for i, sb := range svc.Backends {
				if sb.Addr == b.Addr {
					out[i] = b.ActiveFlows
				}
			}
		}
		return out
	}
	if got := counts(); !equal(got, want) {
		t.Fatalf("active flows %v, want %v", got, want)
	}
	down := svc
	down.Backends = append([]Backend{}, svc.Backends...)
	down.Backends[0].State = Down
	mustApply(t, d, down)
	want[0] = 0
	if got := counts(); !equal(got, want) {
		t.Fatalf("after backend 0 went down: active flows %v, want %v", got, want)
	}
}

func equal(a, b []uint64) bool {
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return len(a) == len(b)
}

// TestTCPStateFromClient: the client's SYN, ACK, FIN and RST drive a flow's
// entry (syn seen -> established -> closing / closed) as IPVS does for
// direct routing: only established flows count as active, closing ones
// keep their backend for the closing timeout, a SYN reusing the ports of a
// closed flow is scheduled afresh (a drained backend gets no new ones).
func TestTCPStateFromClient(t *testing.T) {
	const closing = 300 * time.Millisecond
	d := mustOpen(t, Options{TCPClosingTimeout: closing})
	bes := manyBackends("192.0.2.%d", 2, rand.New(rand.NewPCG(1, 1)))
	bes[0].Weight, bes[1].Weight = 1, 1 // round robin alternates
	svc := Service{Name: "web", VIP: ip4("192.0.2.10"), Proto: TCP, Ports: []uint16{80}, Scheduler: RoundRobin, Backends: bes}
	mustApply(t, d, svc)
	send := func(f Flow, p pkt) int {
		t.Helper()
		p.src, p.dst, p.proto = f.Src, f.Dst, TCP
		verdict, out := run(t, d, build(t, p))
		if verdict != VerdictRedirect {
			return -1
		}
		return macIndex(t, out)
	}
	counts := func() (active, inactive []uint64) { t.Helper(); return flowsOn(t, d) }
	state := func(f Flow) CTState {
		t.Helper()
		info, err := d.LookupFlow(f)
		if err != nil || !info.Tracked {
			t.Fatalf("flow %v: %+v, %v; want tracked", f, info, err)
		}
		return info.State
	}
	f := Flow{Src: ap("198.51.100.1:4000"), Dst: ap("192.0.2.10:80"), Proto: TCP}
	g := Flow{Src: ap("198.51.100.2:4000"), Dst: ap("192.0.2.10:80"), Proto: TCP}
	bf, bg := send(f, pkt{syn: true}), send(g, pkt{syn: true})
	if bf == bg || bf < 0 || bg < 0 {
		t.Fatalf("round robin gave backends %d and %d", bf, bg)
	}
	if s := state(f); s != SynSeen {
		t.Fatalf("after SYN: %s, want syn_seen", s)
	}
	if a, i := counts(); a[bf]+a[bg] != 0 || i[bf] != 1 || i[bg] != 1 {
		t.Fatalf("after two SYNs: active %v inactive %v, want 0 active, 1 inactive each", a, i)
	}
	send(f, pkt{syn: true}) // a retransmitted SYN changes nothing
	send(f, pkt{ack: true})
	send(g, pkt{ack: true})
	if s := state(f); s != Established {
		t.Fatalf("after the handshake ACK: %s, want established", s)
	}
	if a, i := counts(); a[bf] != 1 || a[bg] != 1 || i[bf]+i[bg] != 0 {
		t.Fatalf("established: active %v inactive %v, want 1 active each", a, i)
	}

	// The client closes f with FIN, aborts g with RST: neither is active,
	// both keep their backend (the server's FIN, the last ACKs).
	if b := send(f, pkt{fin: true, ack: true}); b != bf {
		t.Fatalf("FIN went to %d, want the flow's %d", b, bf)
	}
	if b := send(g, pkt{rst: true, ack: true}); b != bg {
		t.Fatalf("RST went to %d, want the flow's %d", b, bg)
	}
	if s := state(f); s != Closing {
		t.Fatalf("after FIN: %s, want closing", s)
	}
	if s := state(g); s != Closed {
		t.Fatalf("after RST: %s, want closed", s)
	}
	if b := send(f, pkt{ack: true}); b != bf || state(f) != Closing {
		t.Fatalf("last ACK went to %d (want %d), state %s (want closing)", b, bf, state(f))
	}
	if a, i := counts(); a[bf]+a[bg] != 0 || i[bf] != 1 || i[bg] != 1 {
		t.Fatalf("closed: active %v inactive %v, want 0 active, 1 inactive each", a, i)
	}

	// A new connection reusing f's ports after its FIN is a new flow: with
	// f's backend draining it goes to the other one.
	drained := svc
	drained.Backends = append([]Backend{}, bes...)
	drained.Backends[bf].State = Drain
	mustApply(t, d, drained)
	if b := send(f, pkt{syn: true}); b != bg {
		t.Fatalf("SYN reusing a closed flow's ports went to %d, want %d (its old backend drains)", b, bg)
	}
	if a, i := counts(); a[bf] != 0 || i[bf] != 0 {
		t.Fatalf("drained backend: active %d inactive %d, want 0 and 0", a[bf], i[bf])
	}

	// The closing timeout, not the TCP timeout, ends a closed flow's entry.
	deadline := time.Now().Add(10 * closing)
	for {
		if _, _, ok := d.trackedBackend(g); !ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("closed flow still tracked %s after its RST (closing timeout %s)", 10*closing, closing)
		}
		time.Sleep(closing / 10)
	}
}

// TestConntrackStats: inserts, in-place renewals and LRU evictions are
// counted.
func TestConntrackStats(t *testing.T) {
	d := mustOpen(t, Options{ConntrackSize: 1024, TCPClosingTimeout: time.Hour, TCPTimeout: time.Hour})
	r := flowRun{d, t}
	rng := rand.New(rand.NewPCG(2, 3))
	svc := Service{Name: "web", VIP: ip4("192.0.2.10"), Proto: TCP, Ports: []uint16{80}, Backends: manyBackends("192.0.2.%d", 2, rng)}
	mustApply(t, d, svc)
	const n = 3000
	for range n {
		r.open(randomFlow(rng, svc.VIP, TCP))
	}
	st, err := d.ConntrackStats()
	if err != nil {
		t.Fatal(err)
	}
	if st.Inserted != n || st.Entries > 1024 || st.Evicted != n-st.Entries || st.Evicted < n-1024 {
		t.Fatalf("after %d new flows into 1024 entries: %+v", n, st)
	}
	// A Maglev SYN inserts nothing: a flood of them leaves the table as it was.
	for range 100 {
		r.send(randomFlow(rng, svc.VIP, TCP), true)
	}
	if st2, err := d.ConntrackStats(); err != nil || st2.Inserted != n || st2.Evicted != st.Evicted {
		t.Fatalf("after 100 SYNs: %+v, %v; want %d inserted, %d evicted as before", st2, err, n, st.Evicted)
	}
	// A round-robin SYN reusing the ports of a closed flow renews its entry
	// in place.
	rr := Service{Name: "rr", VIP: ip4("192.0.2.11"), Proto: TCP, Ports: []uint16{80}, Scheduler: RoundRobin, Backends: svc.Backends}
	mustApply(t, d, svc, rr)
	f := Flow{Src: ap("198.51.100.1:999"), Dst: ap("192.0.2.11:80"), Proto: TCP}
	r.send(f, true)
	run(t, d, build(t, pkt{src: f.Src, dst: f.Dst, proto: TCP, rst: true}))
	r.send(f, true)
	if st2, err := d.ConntrackStats(); err != nil || st2.Renewed != 1 || st2.Inserted != n+1 {
		t.Fatalf("after a SYN on a closed flow: %+v, %v; want 1 renewed, %d inserted", st2, err, n+1)
	}
}
