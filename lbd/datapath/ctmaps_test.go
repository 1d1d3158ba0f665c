package datapath

import (
	"math/rand/v2"
	"net/netip"
	"testing"
)

// TestCT4KeyRoundTrip: an IPv4 flow's compact key stands for exactly its
// lb_flow, and flows with any non-IPv4-mapped address have none.
func TestCT4KeyRoundTrip(t *testing.T) {
	f := flowKey(Flow{Src: ap("198.51.100.7:40000"), Dst: ap("192.0.2.10:443"), Proto: UDP})
	k, ok := ct4Key(f)
	if !ok {
		t.Fatal("IPv4 flow got no lb_ct4 key")
	}
	if back := flowOf4(k); back != f {
		t.Fatalf("round trip: %+v, want %+v", back, f)
	}
	for _, g := range []Flow{
		{Src: ap("[2001:db8::1]:1"), Dst: ap("[2001:db8::10]:80"), Proto: TCP},
		{Src: ap("[2001:db8::1]:1"), Dst: ap("192.0.2.10:80"), Proto: TCP}, // mixed: no such packet, but no v4 key either
		{Src: netip.AddrPortFrom(netip.MustParseAddr("::198.51.100.7"), 1), Dst: ap("192.0.2.10:80"), Proto: TCP},
	} {
		if _, ok := ct4Key(flowKey(g)); ok {
			t.Errorf("%v -> %v got an lb_ct4 key", g.Src, g.Dst)
		}
	}
}

// TestConntrackFamilies: the program keeps IPv4 flows in lb_ct4 under the
// key Go computes and IPv6 flows in lb_conntrack; every reader sees both.
func TestConntrackFamilies(t *testing.T) {
	onOneCPU(t) // the IPv4 handshake ACK must find its SYN's pending choice to be established
	rng := rand.New(rand.NewPCG(5, 6))
	d := mustOpen(t, Options{MaglevTableSize: 1009, ConntrackSize: 1024})
	r := flowRun{d, t}
	svc4 := Service{Name: "web4", VIP: ip4("192.0.2.10"), Proto: TCP, Ports: []uint16{80}, Backends: manyBackends("192.0.2.%d", 3, rng)}
	svc6 := Service{Name: "web6", VIP: ip4("2001:db8::10"), Proto: TCP, Ports: []uint16{80}, Backends: manyBackends("2001:db8::1:%x", 3, rng)}
	mustApply(t, d, svc4, svc6)
	f4 := Flow{Src: ap("198.51.100.1:40000"), Dst: ap("192.0.2.10:80"), Proto: TCP}
	f6 := Flow{Src: ap("[2001:db8:1::1]:40000"), Dst: ap("[2001:db8::10]:80"), Proto: TCP}
	for _, f := range []Flow{f4, f6} {
		r.send(f, true)
		r.send(f, false) // established
	}
	var ct bpfLbCtEntry
	k4, _ := ct4Key(flowKey(f4))
	if err := d.objs.LbCt4.Lookup(&k4, &ct); err != nil {
		t.Fatalf("IPv4 flow not in lb_ct4 under Go's key: %v", err)
	}
	k6 := flowKey(f6)
	if err := d.objs.LbConntrack.Lookup(&k6, &ct); err != nil {
		t.Fatalf("IPv6 flow not in lb_conntrack: %v", err)
	}
	if n, err := d.ConntrackEntries(); err != nil || n != 2 {
		t.Fatalf("entries %d, %v; want 2 (one per family)", n, err)
	}
	if st, err := d.ConntrackStats(); err != nil || st.Entries != 2 || st.Inserted != 2 || st.Evicted != 0 {
		t.Fatalf("conntrack stats %+v, %v", st, err)
	}
	st, err := d.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if err := d.ActiveFlows(&st); err != nil {
		t.Fatal(err)
	}
	for _, s := range st.Services {
		var active uint64
		for _, b := range s.Backends {
			active += b.ActiveFlows
		}
		if active != 1 {
			t.Errorf("service %s: %d active flows, want 1", s.Name, active)
		}
	}
	for _, f := range []Flow{f4, f6} {
		if info, err := d.LookupFlow(f); err != nil || !info.Tracked || info.State != Established {
			t.Errorf("LookupFlow %v: %+v, %v; want tracked, established", f.Src, info, err)
		}
	}
	// Removing both services' port purges both families' entries.
	svc4.Ports, svc6.Ports = []uint16{81}, []uint16{81}
	mustApply(t, d, svc4, svc6)
	if n, err := d.ConntrackEntries(); err != nil || n != 0 {
		t.Fatalf("after the port went: %d entries, %v; want 0", n, err)
	}
}
