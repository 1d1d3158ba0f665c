package maglev

// SlotsPerBackend is the least number of slots per backend TableSize
// aims for: with 100, every backend's share of the slots is within about
// 1% of its weight's share (the Maglev paper's M >= 100 N).
const SlotsPerBackend = 100

// sizes are the table sizes TableSize chooses from: primes, each about
// twice the previous one. Sizing in steps rather than to the nearest prime
// keeps a table's size, and so every flow's slot, unchanged while
// backends are added or removed within a step.
var sizes = []uint32{251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65537, 131071, 262139, 524287, 1048573}

// TableSize is the size of the table of a service listing backends
// backends (whatever their state, so that health changes never resize a
// table): the first step of at least SlotsPerBackend slots per backend,
// but never above limit, a prime (the configured maglev_table_size).
// Two balancers with the same configuration choose the same size.
func TableSize(backends int, limit uint32) uint32 {
	need := uint64(max(backends, 1)) * SlotsPerBackend
	for _, s := range sizes {
		if uint64(s) >= need {
			return min(s, limit)
		}
	}
	return limit
}
