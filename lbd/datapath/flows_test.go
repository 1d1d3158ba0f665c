package datapath

import (
	"math/rand/v2"
	"testing"
)

// TestActiveFlows: tracked flows are counted on their backend; flows of a
// backend taken down no longer count.
func TestActiveFlows(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	d := mustOpen(t, Options{MaglevTableSize: 1009, ConntrackSize: 65536})
	r := flowRun{d, t}
	svc := Service{Name: "web", VIP: ip4("192.0.2.10"), Proto: TCP, Ports: []uint16{80}, Backends: manyBackends("192.0.2.%d", 4, rng)}
	mustApply(t, d, svc)
	want := make([]uint64, len(svc.Backends))
	for i := 0; i < 200; i++ {
		want[r.send(randomFlow(rng, svc.VIP, TCP), true)]++
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
