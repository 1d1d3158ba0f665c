package maglev

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

func backendsN(n int, weight func(i int) uint32) []Backend {
	bs := make([]Backend, n)
	for i := range bs {
		bs[i] = Backend{Key: fmt.Sprintf("192.0.2.%d/%d", i%250+1, i), Weight: weight(i)}
	}
	return bs
}

func mustBuild(tb testing.TB, bs []Backend, size uint32) []uint32 {
	tb.Helper()
	t, err := Build(bs, size)
	if err != nil {
		tb.Fatal(err)
	}
	return t
}

func counts(table []uint32, n int) []int {
	c := make([]int, n)
	for _, b := range table {
		c[b]++
	}
	return c
}

// TestShares: every backend's share of slots is within 1% (relative) of its
// share of the total weight, for equal and for mixed weights. A table holds
// whole slots, so a backend owed fewer than 100 slots may be off by one.
func TestShares(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, tc := range []struct {
		name   string
		n      int
		size   uint32
		weight func(int) uint32
	}{
		{"equal-3", 3, 65537, func(int) uint32 { return 1 }},
		{"equal-100", 100, 65537, func(int) uint32 { return 10 }},
		{"3to1", 2, 65537, func(i int) uint32 { return uint32(3 - 2*i) }},
		{"mixed-50", 50, 65537, func(int) uint32 { return 1 + rng.Uint32N(256) }},
		{"mixed-1000", 1000, 655373, func(int) uint32 { return 1 + rng.Uint32N(256) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bs := backendsN(tc.n, tc.weight)
			c := counts(mustBuild(t, bs, tc.size), len(bs))
			var total float64
			for _, b := range bs {
				total += float64(b.Weight)
			}
			worst := 0.0
			for i, b := range bs {
				want := float64(tc.size) * float64(b.Weight) / total
				dev := math.Abs(float64(c[i])-want) / want
				worst = max(worst, dev)
				if dev > 0.01 && math.Abs(float64(c[i])-want) > 1 {
					t.Errorf("backend %d (weight %d): %d slots, want %.1f ±1%%", i, b.Weight, c[i], want)
				}
			}
			t.Logf("worst relative deviation %.4f%%", worst*100)
		})
	}
}

// TestRemovalDisruption: removing one of N backends moves at most
// 1/N + 1% of the slots, and slots of surviving backends rarely move.
func TestRemovalDisruption(t *testing.T) {
	for _, n := range []int{3, 10, 100, 1000} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			size := uint32(65537)
			if n >= 1000 {
				size = 655373
			}
			bs := backendsN(n, func(int) uint32 { return 1 })
			before := mustBuild(t, bs, size)
			gone := n / 2
			rest := append(append([]Backend{}, bs[:gone]...), bs[gone+1:]...)
			after := mustBuild(t, rest, size)
			moved, survivorsMoved := 0, 0
			for s := range before {
				was, now := bs[before[s]].Key, rest[after[s]].Key
				if was != now {
					moved++
					if was != bs[gone].Key {
						survivorsMoved++
					}
				}
			}
			frac := float64(moved) / float64(size)
			limit := 1/float64(n) + 0.01
			t.Logf("moved %.3f%% of slots (%.3f%% from survivors), limit %.3f%%", frac*100, float64(survivorsMoved)/float64(size)*100, limit*100)
			if frac > limit {
				t.Errorf("moved %.4f of slots, limit %.4f", frac, limit)
			}
		})
	}
}

// TestDrainKeepsOthers: taking a backend's weight to 0 behaves as removing it.
func TestDrainKeepsOthers(t *testing.T) {
	bs := backendsN(5, func(int) uint32 { return 1 })
	drained := append([]Backend{}, bs...)
	drained[2].Weight = 0
	removed := append(append([]Backend{}, bs[:2]...), bs[3:]...)
	a, b := mustBuild(t, drained, 251), mustBuild(t, removed, 251)
	for s := range a {
		if drained[a[s]].Key != removed[b[s]].Key {
			t.Fatalf("slot %d: drain gives %s, removal %s", s, drained[a[s]].Key, removed[b[s]].Key)
		}
		if a[s] == 2 {
			t.Fatalf("slot %d given to a weight-0 backend", s)
		}
	}
}

// TestOrderIndependent: the table, read as keys, does not depend on the
// order backends are listed in.
func TestOrderIndependent(t *testing.T) {
	bs := backendsN(40, func(i int) uint32 { return uint32(i%7 + 1) })
	a := mustBuild(t, bs, 4099)
	shuffled := append([]Backend{}, bs...)
	rand.New(rand.NewPCG(3, 4)).Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	b := mustBuild(t, shuffled, 4099)
	for s := range a {
		if bs[a[s]].Key != shuffled[b[s]].Key {
			t.Fatalf("slot %d differs after shuffling the input", s)
		}
	}
}

// TestGolden pins one table's digest: the same inputs must give the same
// table on every machine and in every release, or two balancers (or an
// upgraded one) would send a flow to different backends.
func TestGolden(t *testing.T) {
	bs := []Backend{{"192.0.2.11", 10}, {"192.0.2.12", 10}, {"192.0.2.13", 5}, {"2001:db8::14", 1}}
	table := mustBuild(t, bs, 251)
	h := sha256.New()
	for _, b := range table {
		h.Write([]byte(bs[b].Key + "\n"))
	}
	const want = "fc38f51dc937d29d553130723ad807a56278e6504a46b5fdee2793349b7a74fd"
	if got := fmt.Sprintf("%x", h.Sum(nil)); got != want {
		t.Fatalf("table digest %s, want %s: the hashing or population changed, which moves flows across upgrades", got, want)
	}
}

func TestErrors(t *testing.T) {
	if _, err := Build(backendsN(3, func(int) uint32 { return 0 }), 251); !errors.Is(err, ErrNoBackends) {
		t.Errorf("all weights 0: %v", err)
	}
	if _, err := Build(backendsN(3, func(int) uint32 { return 1 }), 250); err == nil {
		t.Error("non-prime size accepted")
	}
	if _, err := Build(backendsN(300, func(int) uint32 { return 1 }), 251); err == nil {
		t.Error("more backends than slots accepted")
	}
	dup := []Backend{{"a", 1}, {"a", 1}}
	if _, err := Build(dup, 251); err == nil {
		t.Error("duplicate keys accepted")
	}
}

func BenchmarkBuild(b *testing.B) {
	for _, tc := range []struct {
		n    int
		size uint32
	}{{100, 65537}, {1000, 65537}, {10000, 131071}} {
		bs := backendsN(tc.n, func(i int) uint32 { return uint32(i%10 + 1) })
		b.Run(fmt.Sprintf("backends=%d/size=%d", tc.n, tc.size), func(b *testing.B) {
			for b.Loop() {
				if _, err := Build(bs, tc.size); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func TestTableSize(t *testing.T) {
	for _, c := range []struct {
		backends int
		limit    uint32
		want     uint32
	}{
		{0, 65537, 251},
		{1, 65537, 251},
		{3, 65537, 509},
		{5, 65537, 509},
		{6, 65537, 1021},
		{100, 65537, 16381},
		{655, 65537, 65537},
		{656, 65537, 65537}, // bounded: the configured size
		{10000, 100003, 100003},
		{10000, 1048573, 1048573},
		{3, 251, 251},
	} {
		got := TableSize(c.backends, c.limit)
		if got != c.want {
			t.Errorf("TableSize(%d, %d) = %d, want %d", c.backends, c.limit, got, c.want)
		}
		if !IsPrime(got) {
			t.Errorf("TableSize(%d, %d) = %d is not prime", c.backends, c.limit, got)
		}
	}
	for _, s := range sizes {
		if !IsPrime(s) {
			t.Errorf("step %d is not prime", s)
		}
	}
}
