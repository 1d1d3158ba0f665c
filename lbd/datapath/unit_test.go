package datapath

import (
	"errors"
	"fmt"
	"net/netip"
	"testing"

	"github.com/dsrlb/dsrlb/lbd/maglev"
)

// Unprivileged tests of the pure Go parts.

func TestHashInputs(t *testing.T) {
	// The reference for the hash is the BPF program itself
	// (TestModelPredictsBackend, 10,000 flows); here only its edges.
	if got := jhash2(nil, 0); got != 0xdeadbeef {
		t.Errorf("jhash2 of nothing = %#x, want the initial value", got)
	}
	// The flow hash depends on every field.
	f := Flow{Src: ap("198.51.100.1:1000"), Dst: ap("192.0.2.10:80"), Proto: TCP}
	base := HashFlow(f)
	for _, g := range []Flow{
		{Src: ap("198.51.100.2:1000"), Dst: f.Dst, Proto: TCP},
		{Src: ap("198.51.100.1:1001"), Dst: f.Dst, Proto: TCP},
		{Src: f.Src, Dst: ap("192.0.2.10:81"), Proto: TCP},
		{Src: f.Src, Dst: f.Dst, Proto: UDP},
	} {
		if HashFlow(g) == base {
			t.Errorf("HashFlow(%v) == HashFlow(%v)", g, f)
		}
	}
	if HashSource(f.Src.Addr()) != HashSource(netip.MustParseAddr("::ffff:198.51.100.1")) {
		t.Error("IPv4 and its IPv4-mapped form hash differently")
	}
}

func TestRoundRobinTable(t *testing.T) {
	for _, weights := range [][]uint32{{1}, {1, 1}, {1, 2, 3}, {256, 1, 7, 7}, {3, 3, 3, 3, 3, 3, 3}} {
		t.Run(fmt.Sprint(weights), func(t *testing.T) {
			pop := make([]maglev.Backend, len(weights))
			var total uint64
			for i, w := range weights {
				pop[i] = maglev.Backend{Key: fmt.Sprint("k", i), Weight: w}
				total += uint64(w)
			}
			const size = 251
			table := roundRobinTable(pop, size)
			if len(table) != size {
				t.Fatalf("len = %d", len(table))
			}
			counts := make([]uint64, len(weights))
			for _, s := range table {
				counts[s]++
			}
			for i, w := range weights {
				exact := float64(w) * size / float64(total)
				if d := float64(counts[i]) - exact; d <= -1 || d >= 1 {
					t.Errorf("backend %d (weight %d): %d slots, want %.2f ±1", i, w, counts[i], exact)
				}
			}
		})
	}
}

func TestValidate(t *testing.T) {
	be := Backend{Name: "b", Addr: ip4("192.0.2.11"), MAC: beMAC(1), Weight: 1, State: Up}
	good := Service{Name: "s", VIP: ip4("192.0.2.10"), Proto: TCP, Ports: []uint16{80}, Backends: []Backend{be}}
	for name, mutate := range map[string]func(*Service){
		"bad protocol":      func(s *Service) { s.Proto = 1 },
		"port zero":         func(s *Service) { s.Ports = []uint16{0} },
		"family mismatch":   func(s *Service) { s.Backends[0].Addr = ip4("2001:db8::1") },
		"no MAC and up":     func(s *Service) { s.Backends[0].MAC = nil },
		"duplicate backend": func(s *Service) { s.Backends = append(s.Backends, s.Backends[0]) },
		"bad scheduler":     func(s *Service) { s.Scheduler = 9 },
	} {
		s := good
		s.Backends = append([]Backend{}, good.Backends...)
		mutate(&s)
		if err := validate([]Service{s}); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if err := validate([]Service{good, good}); err == nil {
		t.Error("two services on one key accepted")
	}
	down := good
	down.Backends = []Backend{{Name: "b", Addr: ip4("192.0.2.11"), State: Down}}
	if err := validate([]Service{good}); err != nil {
		t.Errorf("good service refused: %v", err)
	}
	if err := validate([]Service{down}); err != nil {
		t.Errorf("down backend without MAC refused: %v", err)
	}
}

func TestAllocator(t *testing.T) {
	a := newAllocator(1, 4)
	for want := uint32(1); want < 4; want++ {
		if id, err := a.take(); err != nil || id != want {
			t.Fatalf("take = %d, %v; want %d", id, err, want)
		}
	}
	if _, err := a.take(); !errors.Is(err, errFull) {
		t.Fatalf("take when full: %v", err)
	}
	a.free(2)
	if id, _ := a.take(); id != 2 {
		t.Fatalf("take after free(2) = %d", id)
	}
}
