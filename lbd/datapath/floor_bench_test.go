package datapath

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/dsrlb/dsrlb/lbd/datapath/floor"
)

// floorRepeat is how often one frame is run per measurement (one
// BPF_PROG_TEST_RUN with repeat); floorFlows how many distinct new flows
// are sent, one test run each, per measurement.
const (
	floorRepeat = 200_000
	floorFlows  = 2_000
)

// BenchmarkFloor measures, in one run and interleaved (each b.N iteration
// is one round of every case; medians are reported), dsrlb's program
// against the floor programs of bpf/bench/floor.c:
//
//	conntrack_hit  ACK of a tracked flow        vs floor_redirect, same frame;
//	               vs floor_track (LRU hit + redirect), same frame; and vs
//	               floor_vip (floor_redirect for frames to the VIP only: the
//	               reference dsrlb-bench attaches under real load)
//	new_flow       one SYN repeated with the TCP timeouts at 0: each run is
//	               a new flow (a maglev SYN looks up no entry, its pending
//	               choice from the run before has expired: it picks and
//	               leaves a new one)  vs floor_redirect, same frame
//	new_flow_cold  SYNs of distinct new flows   vs floor_redirect, same frames,
//	               one test run each (kernel time summed); and vs floor_track
//	               (LRU lookup + insert + redirect) run the same way
//	handshake_ack  the ACK after each of those SYNs (the SYN run untimed
//	               before it): the insert the SYN left to it, one test run
//	               each  vs floor_track run the same way
//	rescheduled    one ACK whose entry has expired (TCP timeouts 0):
//	               schedule (Maglev), renew in place, every repeat
//	               vs floor_redirect
//	non_vip        SYN to an address that is no VIP  vs floor_noop
//	not_ip         an ARP request                   vs floor_noop, same frame
//
// 100 services of 100 backends (table 1009), conntrack of 1M entries.
func BenchmarkFloor(b *testing.B) {
	onOneCPU(b) // a SYN's pending choice is in the flow cache of its CPU
	fl, err := floor.Load()
	if err != nil {
		requirePrivileged(b)
		b.Fatal(err)
	}
	defer fl.Close()
	vipFloor, err := floor.LoadVIP(benchServices(1, 1, Maglev)[0].VIP, beMAC(1), hostMAC)
	if err != nil {
		b.Fatal(err)
	}
	defer vipFloor.Close()
	d := mustOpen(b, Options{MaglevTableSize: 1009, ConntrackSize: 1 << 20, MaxServices: 128, MaxBackends: 100*100 + 1, MaxServiceKeys: 128})
	mustApply(b, d, benchServices(100, 100, Maglev)...)
	vip := benchServices(1, 1, Maglev)[0].VIP
	syn := build(b, pkt{src: ap("198.51.100.1:40000"), dst: ap(vip.String() + ":80"), proto: TCP, syn: true})
	ack := build(b, pkt{src: ap("198.51.100.1:40000"), dst: ap(vip.String() + ":80"), proto: TCP, ack: true})
	nonVIP := build(b, pkt{src: ap("198.51.100.1:40000"), dst: ap("192.0.2.255:80"), proto: TCP, syn: true})
	arp := arpFrame()
	// A new flow's 5-tuple had no entry within a timeout (lb_ct_recent
	// unmarked): each round draws fresh flows, and the handshake_ack case
	// (which tracks its flows) gets its own; the repeated SYN of new_flow
	// is a port the round's setup never tracks.
	var flows, ackSyns, acks [][]byte
	synNew := build(b, pkt{src: ap("198.51.100.1:40001"), dst: ap(vip.String() + ":80"), proto: TCP, syn: true})
	timeout := uint64(d.opts.TCPTimeout)

	cases := []struct{ name, vs, metric string }{
		{"conntrack_hit", "floor_redirect", "conntrack_hit"}, {"conntrack_hit", "floor_track", "conntrack_hit_vs_track"},
		{"conntrack_hit", "floor_vip", "conntrack_hit_vs_vip"},
		{"new_flow", "floor_redirect", "new_flow"},
		{"new_flow_cold", "floor_redirect_flows", "new_flow_cold"},
		{"new_flow_cold", "floor_track_flows", "new_flow_cold_vs_track"},
		{"handshake_ack", "floor_track_flows", "handshake_ack_vs_track"},
		{"rescheduled", "floor_redirect", "rescheduled"}, {"non_vip", "floor_noop", "non_vip"}, {"not_ip", "floor_noop_arp", "not_ip"},
	}
	measure := map[string]func() time.Duration{
		"floor_redirect":       func() time.Duration { return repeatOnce(b, fl.Redirect, ack) },
		"floor_vip":            func() time.Duration { return repeatOnce(b, vipFloor, ack) },
		"floor_redirect_flows": func() time.Duration { return eachOnce(b, fl.Redirect, flows) },
		"floor_track_flows":    func() time.Duration { return eachOnce(b, fl.Track, flows) },
		// The first run inserts the flow, the rest find it: LRU hit + redirect.
		"floor_track":   func() time.Duration { return repeatOnce(b, fl.Track, ack) },
		"floor_noop":    func() time.Duration { return repeatOnce(b, fl.Noop, nonVIP) },
		"conntrack_hit": func() time.Duration { return repeatOnce(b, d.Program(), ack) },
		"new_flow": func() time.Duration {
			setTCPTimeout(b, d, 0) // the SYN's pending choice always expired: every run picks anew
			defer setTCPTimeout(b, d, timeout)
			return repeatOnce(b, d.Program(), synNew)
		},
		"new_flow_cold": func() time.Duration { return eachOnce(b, d.Program(), flows) },
		"handshake_ack": func() time.Duration {
			return eachAfter(b, d.Program(), ackSyns, acks)
		},
		"rescheduled": func() time.Duration {
			setTCPTimeout(b, d, 0) // the ACK's entry always expired
			defer setTCPTimeout(b, d, timeout)
			return repeatOnce(b, d.Program(), ack)
		},
		"non_vip":        func() time.Duration { return repeatOnce(b, d.Program(), nonVIP) },
		"floor_noop_arp": func() time.Duration { return repeatOnce(b, fl.Noop, arp) },
		"not_ip":         func() time.Duration { return repeatOnce(b, d.Program(), arp) },
	}
	names := make([]string, 0, len(measure))
	for n := range measure {
		names = append(names, n)
	}
	slices.Sort(names)
	got := map[string][]time.Duration{}
	round := uint64(0)
	for b.Loop() {
		round++
		flows, ackSyns = newFlowFrames(syn, floorFlows, 2*round), newFlowFrames(syn, floorFlows, 2*round+1)
		acks = make([][]byte, len(ackSyns))
		for i, f := range ackSyns {
			acks[i] = slices.Clone(f)
			acks[i][14+20+13] = 0x10 // TCP flags: ACK
		}
		// new_flow must find no entry, conntrack_hit an established one.
		clearConntrack(b, d)
		if err := clearMap[[16]byte, [16]byte](fl.Flows); err != nil {
			b.Fatal(err)
		}
		if v, _ := run(b, d, syn); v != VerdictRedirect {
			b.Fatalf("syn: verdict %d", v)
		}
		run(b, d, ack)
		for _, n := range names {
			got[n] = append(got[n], measure[n]())
		}
	}
	med := map[string]float64{}
	for n, ds := range got {
		slices.Sort(ds)
		med[n] = float64(ds[len(ds)/2].Nanoseconds())
	}
	var tbl strings.Builder
	fmt.Fprintf(&tbl, "\n| case | dsrlb ns/pkt | floor | floor ns/pkt | ratio |\n|---|--:|---|--:|--:|\n")
	for _, c := range cases {
		r := med[c.name] / med[c.vs]
		fmt.Fprintf(&tbl, "| %s | %.1f | %s | %.1f | %.2f |\n", c.name, med[c.name], c.vs, med[c.vs], r)
		if c.metric == c.name {
			b.ReportMetric(med[c.name], c.name+"_ns/pkt")
		}
		b.ReportMetric(r, c.metric+"_x")
	}
	// Printed, not logged: the test framework cuts a benchmark's log at 10 lines.
	fmt.Printf("BenchmarkFloor: medians of %d rounds:%s", len(got["non_vip"]), tbl.String())
}

// repeatOnce is one BPF_PROG_TEST_RUN of frame with floorRepeat repeats:
// the kernel-measured time per run.
func repeatOnce(b *testing.B, p *ebpf.Program, frame []byte) time.Duration {
	_, per, err := p.Benchmark(frame, floorRepeat, nil)
	if err != nil {
		b.Fatal(err)
	}
	return per
}

// eachOnce runs every frame once and returns the mean kernel-measured time.
func eachOnce(b *testing.B, p *ebpf.Program, frames [][]byte) time.Duration {
	var total time.Duration
	for _, f := range frames {
		_, per, err := p.Benchmark(f, 1, nil)
		if err != nil {
			b.Fatal(err)
		}
		total += per
	}
	return total / time.Duration(len(frames))
}

// eachAfter runs each of first (untimed) then of second, and returns the
// mean kernel-measured time of the second. (BenchmarkFloor runs on one
// CPU: the first leaves state in that CPU's flow cache.)
func eachAfter(b *testing.B, p *ebpf.Program, first, second [][]byte) time.Duration {
	var total time.Duration
	for i := range second {
		if _, _, err := p.Benchmark(first[i], 1, nil); err != nil {
			b.Fatal(err)
		}
		_, per, err := p.Benchmark(second[i], 1, nil)
		if err != nil {
			b.Fatal(err)
		}
		total += per
	}
	return total / time.Duration(len(second))
}

// newFlowFrames returns n copies of a TCP SYN frame with random IPv4
// source addresses (198.51.100.0/24 keeps the range, the port varies) and
// ports: distinct flows, a different set for each seed.
func newFlowFrames(syn []byte, n int, seed uint64) [][]byte {
	rng := rand.New(rand.NewPCG(11, seed))
	out := make([][]byte, n)
	for i := range out {
		f := slices.Clone(syn)
		f[14+15] = byte(rng.Uint32())                                       // last octet of the source address
		binary.BigEndian.PutUint16(f[14+20:], uint16(1024+rng.IntN(60000))) // TCP source port
		out[i] = f
	}
	return out
}

// clearConntrack deletes every conntrack entry, of both families.
func clearConntrack(b *testing.B, d *Datapath) {
	if err := clearMap[bpfLbCt4Key, bpfLbCtEntry](d.objs.LbCt4); err != nil {
		b.Fatal(err)
	}
	if err := clearMap[bpfLbFlow, bpfLbCtEntry](d.objs.LbConntrack); err != nil {
		b.Fatal(err)
	}
	if err := d.invalidateFlowCache(); err != nil {
		b.Fatal(err)
	}
}

// clearMap deletes every entry of m (key K, value V).
func clearMap[K, V any](m *ebpf.Map) error {
	var (
		k    K
		v    V
		keys []K
	)
	it := m.Iterate()
	for it.Next(&k, &v) {
		keys = append(keys, k)
	}
	if err := it.Err(); err != nil {
		return err
	}
	if len(keys) > 0 {
		if _, err := m.BatchDelete(keys, nil); err != nil {
			return err
		}
	}
	return nil
}

// TestFloorVIP: the reference program dsrlb-bench attaches under real load
// forwards frames for its VIP as dsrlb would (both MACs, redirect) and lets
// everything else continue, or the comparison would be with a program
// that does not forward.
func TestFloorVIP(t *testing.T) {
	src := mustMAC("02:00:00:00:00:09")
	p, err := floor.LoadVIP(ip4("192.0.2.10"), beMAC(1), src)
	if err != nil {
		requirePrivileged(t)
		t.Fatal(err)
	}
	defer p.Close()
	checkFloorVIP(t, p, src)
}

// TestFloorVIPTrack: floor_vip_track (dsrlb-bench's track mode) forwards
// exactly as floor_vip and remembers each TCP/UDP flow to the VIP once, and
// nothing else, or it would not cost what remembering flows costs; its
// table has the size asked for (dsrlb-bench sizes it as lbd's).
func TestFloorVIPTrack(t *testing.T) {
	src := mustMAC("02:00:00:00:00:09")
	tr, err := floor.LoadVIPTrack(ip4("192.0.2.10"), beMAC(1), src, 4096)
	if err != nil {
		requirePrivileged(t)
		t.Fatal(err)
	}
	defer tr.Close()
	if n := tr.Flows.MaxEntries(); n != 4096 {
		t.Fatalf("floor_vip_ct has %d entries, want the 4096 asked for", n)
	}
	checkFloorVIP(t, tr.Prog, src) // runs the VIP's TCP flow twice
	var (
		k, v [16]byte
		keys [][16]byte
	)
	it := tr.Flows.Iterate()
	for it.Next(&k, &v) {
		keys = append(keys, k)
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	// 198.51.100.1:40000 -> 192.0.2.10:80 TCP: addresses and ports as on the wire.
	want := [16]byte{198, 51, 100, 1, 192, 0, 2, 10, 40000 >> 8, 40000 & 0xff, 0, 80, 6}
	if len(keys) != 1 || keys[0] != want {
		t.Errorf("flows % x; want one, % x", keys, want)
	}
	// A UDP flow to the VIP is a second entry.
	udp := build(t, pkt{src: ap("198.51.100.1:40000"), dst: ap("192.0.2.10:53"), proto: UDP})
	if ret, err := tr.Prog.Run(runOpts(udp, make([]byte, len(udp)+256))); err != nil || int(int32(ret)) != VerdictRedirect {
		t.Fatalf("udp to the vip: verdict %d, %v; want %d", ret, err, VerdictRedirect)
	}
	var n int
	for it = tr.Flows.Iterate(); it.Next(&k, &v); {
		n++
	}
	if n != 2 {
		t.Errorf("after a UDP flow: %d flows, want 2", n)
	}
}

// TestFloorVIPSlot: floor_vip_slot (dsrlb-bench's slot mode) forwards
// exactly as floor_vip and writes each TCP/UDP flow to the VIP into one
// slot of an array of the size asked for rounded up to a power of two, or
// it would not cost what one per-flow line costs.
func TestFloorVIPSlot(t *testing.T) {
	src := mustMAC("02:00:00:00:00:09")
	sl, err := floor.LoadVIPSlot(ip4("192.0.2.10"), beMAC(1), src, 3000)
	if err != nil {
		requirePrivileged(t)
		t.Fatal(err)
	}
	defer sl.Close()
	if n := sl.Flows.MaxEntries(); n != 4096 {
		t.Fatalf("floor_vip_slots has %d entries, want 4096 (3000 rounded up)", n)
	}
	checkFloorVIP(t, sl.Prog, src)
	used := func() [][16]byte {
		var (
			k    uint32
			v    [16]byte
			used [][16]byte
		)
		for it := sl.Flows.Iterate(); it.Next(&k, &v); {
			if v != ([16]byte{}) {
				used = append(used, v)
			}
		}
		return used
	}
	want := [16]byte{198, 51, 100, 1, 192, 0, 2, 10, 40000 >> 8, 40000 & 0xff, 0, 80, 6}
	if got := used(); len(got) != 1 || got[0] != want {
		t.Errorf("slots in use % x; want one, % x", got, want)
	}
	udp := build(t, pkt{src: ap("198.51.100.1:40000"), dst: ap("192.0.2.10:53"), proto: UDP})
	if ret, err := sl.Prog.Run(runOpts(udp, make([]byte, len(udp)+256))); err != nil || int(int32(ret)) != VerdictRedirect {
		t.Fatalf("udp to the vip: verdict %d, %v; want %d", ret, err, VerdictRedirect)
	}
	if got := used(); len(got) != 2 {
		t.Errorf("after a UDP flow: %d slots in use, want 2", len(got))
	}
}

// checkFloorVIP runs frames for and not for 192.0.2.10 through p (a program
// for real traffic loaded for that VIP, backend 1 and src): the VIP's
// frame, twice, redirected with both MACs, the others continue untouched.
func checkFloorVIP(t *testing.T, p *ebpf.Program, src []byte) {
	t.Helper()
	vip := build(t, pkt{src: ap("198.51.100.1:40000"), dst: ap("192.0.2.10:80"), proto: TCP, syn: true})
	for _, c := range []struct {
		name    string
		frame   []byte
		verdict int
	}{
		{"vip", vip, VerdictRedirect},
		{"vip again", vip, VerdictRedirect},
		{"other address", build(t, pkt{src: ap("198.51.100.1:40000"), dst: ap("192.0.2.11:80"), proto: TCP, syn: true}), VerdictContinue},
		{"other address, udp", build(t, pkt{src: ap("198.51.100.1:40000"), dst: ap("192.0.2.11:53"), proto: UDP}), VerdictContinue},
		{"arp", arpFrame(), VerdictContinue},
	} {
		opts := runOpts(c.frame, make([]byte, len(c.frame)+256))
		ret, err := p.Run(opts)
		if err != nil {
			t.Fatal(err)
		}
		want := c.frame
		if c.verdict == VerdictRedirect {
			want = append(append(append([]byte{}, beMAC(1)...), src...), c.frame[12:]...)
		}
		if int(int32(ret)) != c.verdict || !bytes.Equal(opts.DataOut, want) {
			t.Errorf("%s: verdict %d, frame % x; want %d, % x", c.name, ret, opts.DataOut[:14], c.verdict, want[:14])
		}
	}
}
