package datapath

import (
	"fmt"
	"testing"
)

// fillConntrack writes n distinct IPv4 entries straight into the flow
// table (lb_ct4), as the program would for n flows.
func fillConntrack(tb testing.TB, d *Datapath, n int) {
	tb.Helper()
	for i := range n {
		var k bpfLbFlow
		k.Saddr.B = [16]byte{10: 0xff, 11: 0xff, 12: 198, 13: 51, 14: 100, 15: byte(i)}
		k.Daddr.B = [16]byte{10: 0xff, 11: 0xff, 12: 192, 13: 0, 14: 2, 15: 10}
		k.Sport, k.Dport, k.Proto = uint16(1024+i/256), 80, uint8(TCP)
		if err := d.ctPut(k, &bpfLbCtEntry{LastSeenNs: 1, BackendId: 1, Cookie: 1}); err != nil {
			tb.Fatalf("put conntrack entry %d: %v", i, err)
		}
	}
}

// TestConntrackEntries: the count is exact across several batches, and
// an empty map counts 0.
func TestConntrackEntries(t *testing.T) {
	d := mustOpen(t, Options{ConntrackSize: 3 * ctBatch})
	if n, err := d.ConntrackEntries(); err != nil || n != 0 {
		t.Fatalf("empty map: %d entries, %v", n, err)
	}
	if d.ConntrackLimit() != 3*ctBatch {
		t.Errorf("limit %d, want %d", d.ConntrackLimit(), 3*ctBatch)
	}
	for _, want := range []int{1, ctBatch - 1, ctBatch, 2*ctBatch + 17} {
		fillConntrack(t, d, want) // entries are the first `want` keys: grows the map
		if n, err := d.ConntrackEntries(); err != nil || n != uint64(want) {
			t.Errorf("after %d entries: counted %d, %v", want, n, err)
		}
	}
}

// BenchmarkConntrackEntries: what counting a 90% full conntrack map
// costs (the metrics collector does it at most every ctCountEvery).
func BenchmarkConntrackEntries(b *testing.B) {
	for _, n := range []int{1 << 16, 1 << 20} {
		b.Run(fmt.Sprintf("entries=%d", n), func(b *testing.B) {
			d := mustOpen(b, Options{ConntrackSize: uint32(n)})
			// 90% full: a full LRU already evicts a few entries while filling.
			fill := n / 10 * 9
			fillConntrack(b, d, fill)
			for b.Loop() {
				if got, err := d.ConntrackEntries(); err != nil || got != uint64(fill) {
					b.Fatalf("counted %d, %v; want %d", got, err, fill)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(fill), "ns/entry")
		})
	}
}

// BenchmarkActiveFlows: what one walk of a 90% full conntrack map for the
// active/inactive counts costs (`lbd status`; the metrics collector walks
// at most every flowCacheFor). Every entry is live, on the service's one
// backend, so each is checked as a real one is.
func BenchmarkActiveFlows(b *testing.B) {
	for _, n := range []int{1 << 16, 1 << 20} {
		b.Run(fmt.Sprintf("entries=%d", n), func(b *testing.B) {
			d := mustOpen(b, Options{ConntrackSize: uint32(n), MaglevTableSize: 251})
			mustApply(b, d, Service{Name: "web", VIP: ip4("192.0.2.10"), Proto: TCP, Ports: []uint16{80},
				Backends: []Backend{{Addr: ip4("192.0.2.11"), MAC: beMAC(1), Weight: 1, State: Up}}})
			fill := n / 10 * 9
			fillConntrack(b, d, fill)
			liven(b, d)
			for b.Loop() {
				st, err := d.Stats()
				if err != nil {
					b.Fatal(err)
				}
				if err := d.ActiveFlows(&st); err != nil {
					b.Fatal(err)
				}
				if got := st.Services[0].Backends[0].ActiveFlows; got != uint64(fill) {
					b.Fatalf("counted %d active flows, want %d", got, fill)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(fill), "ns/entry")
		})
	}
}

// liven makes every IPv4 conntrack entry an established flow of backend 1
// seen now.
func liven(tb testing.TB, d *Datapath) {
	tb.Helper()
	var (
		k  bpfLbCt4Key
		ct bpfLbCtEntry
		ks []bpfLbCt4Key
	)
	for it := d.objs.LbCt4.Iterate(); it.Next(&k, &ct); {
		ks = append(ks, k)
	}
	var be bpfLbBackend
	if err := d.objs.LbBackends.Lookup(uint32(1), &be); err != nil {
		tb.Fatal(err)
	}
	vs := make([]bpfLbCtEntry, len(ks))
	for i := range vs {
		vs[i] = bpfLbCtEntry{LastSeenNs: monotonicNow(), BackendId: 1, Cookie: be.Cookie, State: uint8(Established)}
	}
	if _, err := d.objs.LbCt4.BatchUpdate(ks, vs, nil); err != nil {
		tb.Fatal(err)
	}
}
