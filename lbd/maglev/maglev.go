// Package maglev builds weighted Maglev lookup tables (Eisenbud et al.,
// "Maglev: A Fast and Reliable Software Network Load Balancer", NSDI 2016).
//
// A table is a slice of size slots (size prime); each slot names a backend.
// The data plane hashes a flow and indexes the table; this package only
// computes tables. Two properties matter to users and are tested:
//
//   - Balance: each backend's share of slots is its share of the total
//     weight, to within one slot per backend.
//   - Stability: removing one of N backends reassigns its slots and only a
//     small fraction (about 1%) of the others, so established flows on
//     surviving backends keep their backend even without conntrack.
//
// Tables depend only on the set of (key, weight) pairs and the size: not on
// input order, the machine or the process. Two balancers with the same
// configuration build identical tables, so ECMP can move a flow between
// them without moving it between backends.
package maglev

import (
	"errors"
	"fmt"
	"sort"

	"github.com/dsrlb/dsrlb/internal/prime"
)

// Backend is one entry of the population.
type Backend struct {
	Key    string // stable identity, e.g. the backend's address; decides its permutation
	Weight uint32 // relative share; 0 takes no slots
}

// ErrNoBackends is returned when no backend has a positive weight.
var ErrNoBackends = errors.New("maglev: no backend with a positive weight")

// Build returns a table of size slots, each an index into backends.
// size must be prime and larger than the number of backends with weight.
func Build(backends []Backend, size uint32) ([]uint32, error) {
	if !IsPrime(size) {
		return nil, fmt.Errorf("build maglev table: size %d is not prime", size)
	}
	order, err := canonical(backends)
	if err != nil {
		return nil, err
	}
	if uint64(len(order)) >= uint64(size) {
		return nil, fmt.Errorf("build maglev table: %d backends need a table larger than %d slots", len(order), size)
	}
	return populate(backends, order, size), nil
}

// canonical returns the indexes of the weighted backends sorted by key, so
// the result does not depend on the order of the input.
func canonical(backends []Backend) ([]int, error) {
	var order []int
	seen := make(map[string]bool, len(backends))
	for i, b := range backends {
		if seen[b.Key] {
			return nil, fmt.Errorf("build maglev table: backend key %q appears twice", b.Key)
		}
		seen[b.Key] = true
		if b.Weight > 0 {
			order = append(order, i)
		}
	}
	if len(order) == 0 {
		return nil, ErrNoBackends
	}
	sort.Slice(order, func(i, j int) bool { return backends[order[i]].Key < backends[order[j]].Key })
	return order, nil
}

// populate runs the NSDI'16 population loop, weighted: each round every
// backend earns its weight in credit and claims one preferred free slot
// per maxWeight of credit. The heaviest backend thus claims one slot per
// round and the others proportionally fewer, which keeps shares exact to
// within a slot while preserving Maglev's minimal disruption.
func populate(backends []Backend, order []int, size uint32) []uint32 {
	const empty = ^uint32(0)
	table := make([]uint32, size)
	for i := range table {
		table[i] = empty
	}
	n := len(order)
	// pos[j] is backend j's next preferred slot, (offset + k*skip) mod
	// size for its k-th preference, advanced by addition: no division in
	// the loop that runs about size*ln(size) times.
	pos, skip := make([]uint32, n), make([]uint32, n)
	credit := make([]uint64, n)
	var maxWeight uint64
	for j, i := range order {
		off, sk := permutation(backends[i].Key, size)
		pos[j], skip[j] = uint32(off), uint32(sk)
		maxWeight = max(maxWeight, uint64(backends[i].Weight))
	}
	advance := func(p, skip uint32) uint32 {
		if p += skip; p >= size {
			p -= size
		}
		return p
	}
	filled := uint32(0)
	for {
		for j, i := range order {
			credit[j] += uint64(backends[i].Weight)
			for credit[j] >= maxWeight {
				credit[j] -= maxWeight
				p := pos[j]
				for table[p] != empty {
					p = advance(p, skip[j])
				}
				table[p] = uint32(i)
				pos[j] = advance(p, skip[j])
				if filled++; filled == size {
					return table
				}
			}
		}
	}
}

// permutation gives a backend's preference list as (offset, skip): its
// j-th preferred slot is (offset + j*skip) mod size. skip is in [1,size)
// and size is prime, so the list visits every slot exactly once.
func permutation(key string, size uint32) (offset, skip uint64) {
	h1 := mix(fnv1a(key, 0x9e3779b97f4a7c15))
	h2 := mix(fnv1a(key, 0xc2b2ae3d27d4eb4f))
	return h1 % uint64(size), h2%uint64(size-1) + 1
}

// fnv1a is 64-bit FNV-1a over key, started from a seed so two independent
// hashes come from one function. Fixed, portable, no per-process keys.
func fnv1a(key string, seed uint64) uint64 {
	h := uint64(14695981039346656037) ^ seed
	for i := 0; i < len(key); i++ {
		h ^= uint64(key[i])
		h *= 1099511628211
	}
	return h
}

// mix is the splitmix64 finaliser: FNV's low bits are weak for short keys
// that differ in one byte, such as consecutive addresses.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
}

// IsPrime reports whether n is prime: the sizes Build accepts.
func IsPrime(n uint32) bool { return prime.Is(n) }
