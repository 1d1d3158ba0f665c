package datapath

import (
	"errors"
	"fmt"
)

// ctBatch is how many conntrack entries one batch lookup copies: a full
// map of a million flows takes a few hundred system calls.
const ctBatch = 4096

// ConntrackLimit is the size of each of the two conntrack maps (IPv4
// flows, other flows): balancer.conntrack.size flows of each family.
func (d *Datapath) ConntrackLimit() uint32 { return d.opts.ConntrackSize }

// ConntrackEntries counts the entries in the conntrack maps (both
// families), idle ones included: how full the LRU is. It reads the maps in
// batches on their own file descriptors, so it never holds up a data
// plane update. It costs about a microsecond of kernel time per entry
// (BenchmarkConntrackEntries, BENCHMARKS.md): callers on a hot path
// should cache it.
func (d *Datapath) ConntrackEntries() (uint64, error) {
	d.mu.Lock()
	v4, err4 := d.objs.LbCt4.Clone()
	v6, err6 := d.objs.LbConntrack.Clone()
	d.mu.Unlock()
	if err := errors.Join(err4, err6); err != nil {
		v4.Close() // nil-safe
		v6.Close()
		return 0, fmt.Errorf("count conntrack entries: %w", err)
	}
	defer v4.Close()
	defer v6.Close()
	n4, err := countEntries[bpfLbCt4Key](v4)
	if err != nil {
		return 0, fmt.Errorf("count conntrack entries (IPv4): %w", err)
	}
	n6, err := countEntries[bpfLbFlow](v6)
	if err != nil {
		return 0, fmt.Errorf("count conntrack entries: %w", err)
	}
	return n4 + n6, nil
}
