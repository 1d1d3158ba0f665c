package datapath

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
)

// ctBatch is how many conntrack entries one batch lookup copies: a full
// map of a million flows takes a few hundred system calls.
const ctBatch = 4096

// ConntrackLimit is the size of the conntrack map.
func (d *Datapath) ConntrackLimit() uint32 { return d.opts.ConntrackSize }

// ConntrackEntries counts the entries in the conntrack map, idle ones
// included: how full the LRU is. It reads the map in batches on its own
// file descriptor, so it never holds up a data plane update. It costs
// about a microsecond of kernel time per entry (BenchmarkConntrackEntries,
// BENCHMARKS.md): callers on a hot path should cache it.
func (d *Datapath) ConntrackEntries() (uint64, error) {
	d.mu.Lock()
	m, err := d.objs.LbConntrack.Clone()
	d.mu.Unlock()
	if err != nil {
		return 0, fmt.Errorf("count conntrack entries: %w", err)
	}
	defer m.Close()
	keys := make([]bpfLbFlow, ctBatch)
	vals := make([]bpfLbCtEntry, ctBatch)
	var (
		cursor ebpf.MapBatchCursor
		total  uint64
	)
	for {
		n, err := m.BatchLookup(&cursor, keys, vals, nil)
		total += uint64(n)
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return total, nil
		}
		if err != nil {
			return 0, fmt.Errorf("count conntrack entries: %w", err)
		}
	}
}
