package datapath

import (
	"sort"

	"github.com/dsrlb/dsrlb/lbd/maglev"
)

// roundRobinTable returns a weighted round-robin sequence of exactly size
// slots (indexes into pop), walked by the program one slot per new flow,
// modulo size. Each backend gets its weight's share of the slots (largest
// remainder), spread evenly: backend i's k-th slot sits at (k+½)/count_i of
// the cycle. Because the cycle is the table, there is no seam where the
// counter wraps.
func roundRobinTable(pop []maglev.Backend, size uint32) []uint32 {
	counts := shares(pop, size)
	type slot struct {
		pos float64
		idx int
	}
	slots := make([]slot, 0, size)
	for i, c := range counts {
		for k := range c {
			slots = append(slots, slot{pos: (float64(k) + 0.5) / float64(c), idx: i})
		}
	}
	sort.Slice(slots, func(a, b int) bool {
		if slots[a].pos != slots[b].pos {
			return slots[a].pos < slots[b].pos
		}
		return pop[slots[a].idx].Key < pop[slots[b].idx].Key
	})
	out := make([]uint32, size)
	for i, s := range slots {
		out[i] = uint32(s.idx)
	}
	return out
}

// shares splits size slots by weight with the largest-remainder method.
func shares(pop []maglev.Backend, size uint32) []uint32 {
	var total uint64
	for _, b := range pop {
		total += uint64(b.Weight)
	}
	counts := make([]uint32, len(pop))
	rem := make([]uint64, len(pop))
	left := uint64(size)
	for i, b := range pop {
		q := uint64(b.Weight) * uint64(size)
		counts[i] = uint32(q / total)
		rem[i] = q % total
		left -= uint64(counts[i])
	}
	order := make([]int, len(pop))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool {
		if rem[order[a]] != rem[order[b]] {
			return rem[order[a]] > rem[order[b]]
		}
		return pop[order[a]].Key < pop[order[b]].Key
	})
	for i := uint64(0); i < left; i++ {
		counts[order[i]]++
	}
	return counts
}
