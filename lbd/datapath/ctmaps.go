package datapath

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
)

// The flow table is two LRU maps (bpf/lib/conntrack.h): lb_ct4 holds IPv4
// flows (both addresses IPv4-mapped) under a 16-byte key, lb_conntrack
// every other flow under the 40-byte lb_flow; a hit hashes and compares
// 16 bytes instead of 40. Go names every flow by its lb_flow and picks the
// map here, as the program does (lb_flow_is4), so callers see one table.

// ct4Key is k's lb_ct4 key, if k is an IPv4 flow.
func ct4Key(k bpfLbFlow) (bpfLbCt4Key, bool) {
	if !isMapped4(k.Saddr.B) || !isMapped4(k.Daddr.B) {
		return bpfLbCt4Key{}, false
	}
	return bpfLbCt4Key{
		// The program copies the address words as they are in memory.
		Saddr: binary.NativeEndian.Uint32(k.Saddr.B[12:]),
		Daddr: binary.NativeEndian.Uint32(k.Daddr.B[12:]),
		Sport: k.Sport, Dport: k.Dport, Proto: k.Proto,
	}, true
}

// isMapped4 reports whether a is ::ffff:a.b.c.d.
func isMapped4(a [16]byte) bool {
	return a[0]|a[1]|a[2]|a[3]|a[4]|a[5]|a[6]|a[7]|a[8]|a[9] == 0 && a[10] == 0xff && a[11] == 0xff
}

// flowOf4 is the lb_flow an lb_ct4 key stands for.
func flowOf4(k bpfLbCt4Key) bpfLbFlow {
	var f bpfLbFlow
	f.Saddr.B = [16]byte{10: 0xff, 11: 0xff}
	f.Daddr.B = f.Saddr.B
	binary.NativeEndian.PutUint32(f.Saddr.B[12:], k.Saddr)
	binary.NativeEndian.PutUint32(f.Daddr.B[12:], k.Daddr)
	f.Sport, f.Dport, f.Proto = k.Sport, k.Dport, k.Proto
	return f
}

// ctLookup reads the entry of flow k.
func (d *Datapath) ctLookup(k bpfLbFlow, ct *bpfLbCtEntry) error {
	if k4, ok := ct4Key(k); ok {
		return d.objs.LbCt4.Lookup(&k4, ct)
	}
	return d.objs.LbConntrack.Lookup(&k, ct)
}

// ctDelete deletes the entry of flow k. The caller then calls
// invalidateFlowCache (once for many deletes): the programs' per-CPU flow
// caches may hold copies of the entry.
func (d *Datapath) ctDelete(k bpfLbFlow) error {
	if k4, ok := ct4Key(k); ok {
		return d.objs.LbCt4.Delete(&k4)
	}
	return d.objs.LbConntrack.Delete(&k)
}

// ctPut writes the entry of flow k (tests only), and invalidates the flow
// caches' copies. Unlike the program it marks no lb_ct_recent slot: tests
// use it to write an entry behind that filter's back.
func (d *Datapath) ctPut(k bpfLbFlow, ct *bpfLbCtEntry) error {
	var err error
	if k4, ok := ct4Key(k); ok {
		err = d.objs.LbCt4.Put(&k4, ct)
	} else {
		err = d.objs.LbConntrack.Put(&k, ct)
	}
	if err != nil {
		return err
	}
	return d.invalidateFlowCache()
}

// invalidateFlowCache bumps lb_config.ct_gen: every copy of a conntrack
// entry in the programs' per-CPU flow caches (lb_flow_cache) was made
// under an older generation and is no longer used. Called after Go deleted
// or wrote conntrack entries, never before (a copy made in between would
// survive). The fields the program reads are rewritten with their current
// values, as persistCookie does.
func (d *Datapath) invalidateFlowCache() error {
	var cfg bpfLbConfig
	if err := d.objs.LbCfg.Lookup(uint32(0), &cfg); err != nil {
		return fmt.Errorf("read data plane config: %w", err)
	}
	cfg.CtGen++
	if err := d.objs.LbCfg.Put(uint32(0), &cfg); err != nil {
		return fmt.Errorf("invalidate flow cache: %w", err)
	}
	return nil
}

// eachFlow calls fn for every conntrack entry, IPv4 ones first. An entry
// the program inserts or evicts during the walk may be seen or not.
func (d *Datapath) eachFlow(fn func(k bpfLbFlow, ct *bpfLbCtEntry)) error {
	return eachFlowIn(d.objs.LbCt4, d.objs.LbConntrack, fn)
}

// eachFlowIn is eachFlow over the maps given (v4: lb_ct4, other:
// lb_conntrack), read ctBatch entries a system call: a walk one entry at
// a time (next key, then lookup) cost 4.7 µs an entry, over 4 s for a
// default map 90 % full (BenchmarkActiveFlows, BENCHMARKS.md).
func eachFlowIn(v4, other *ebpf.Map, fn func(k bpfLbFlow, ct *bpfLbCtEntry)) error {
	err := eachBatch(v4, func(k *bpfLbCt4Key, ct *bpfLbCtEntry) { fn(flowOf4(*k), ct) })
	if err != nil {
		return fmt.Errorf("walk conntrack (IPv4): %w", err)
	}
	if err := eachBatch(other, func(k *bpfLbFlow, ct *bpfLbCtEntry) { fn(*k, ct) }); err != nil {
		return fmt.Errorf("walk conntrack: %w", err)
	}
	return nil
}

// eachBatch calls fn for every entry of m (K: m's key type), read in
// batches of ctBatch.
func eachBatch[K any](m *ebpf.Map, fn func(k *K, ct *bpfLbCtEntry)) error {
	keys := make([]K, ctBatch)
	vals := make([]bpfLbCtEntry, ctBatch)
	var cursor ebpf.MapBatchCursor
	for {
		n, err := m.BatchLookup(&cursor, keys, vals, nil)
		for i := range n {
			fn(&keys[i], &vals[i])
		}
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// countEntries counts m's entries in batches of ctBatch (K: m's key type).
func countEntries[K any](m *ebpf.Map) (uint64, error) {
	var total uint64
	err := eachBatch(m, func(*K, *bpfLbCtEntry) { total++ })
	return total, err
}
