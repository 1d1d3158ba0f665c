package datapath

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// A table as the program reads it (bpf/lib/maps.h, struct lb_table): slot
// 0 holds n, slots 1..n backend ids. Arrays store values at 8-byte
// strides, which is also the layout of a memory-mapped array.
const tableStride = 8

// newTable creates an inner map holding ids (nil: the empty table, n = 0)
// and freezes it: a table the program may read is never written again.
// It is filled through a memory mapping, one copy instead of one kernel
// update per slot (65,537 slots cost ~30 ms as a batch update here).
func (d *Datapath) newTable(ids []uint32) (*ebpf.Map, error) {
	spec := d.inner.Copy()
	spec.MaxEntries = uint32(len(ids)) + 1
	m, err := ebpf.NewMap(spec)
	if err != nil {
		return nil, fmt.Errorf("create table of %d slots: %w", len(ids), err)
	}
	if err := fillTable(m, ids); err != nil {
		m.Close()
		return nil, err
	}
	if err := m.Freeze(); err != nil {
		m.Close()
		return nil, fmt.Errorf("freeze table: %w", err)
	}
	return m, nil
}

func fillTable(m *ebpf.Map, ids []uint32) error {
	page := os.Getpagesize()
	size := ((len(ids)+1)*tableStride + page - 1) / page * page
	mem, err := unix.Mmap(m.FD(), 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return fmt.Errorf("map table memory: %w", err)
	}
	binary.LittleEndian.PutUint32(mem, uint32(len(ids)))
	for i, id := range ids {
		binary.LittleEndian.PutUint32(mem[(i+1)*tableStride:], id)
	}
	// Unmapped before the table is frozen and switched in: no writable
	// mapping of a live table exists.
	if err := unix.Munmap(mem); err != nil {
		return fmt.Errorf("unmap table memory: %w", err)
	}
	return nil
}

// emptyTable is the table of a service without usable backends (n = 0),
// one map shared by every such service: writing it instead of deleting
// the outer entry keeps every table change in one batch update.
func (d *Datapath) emptyTable() (*ebpf.Map, error) {
	if d.empty == nil {
		m, err := d.newTable(nil)
		if err != nil {
			return nil, err
		}
		d.empty = m
	}
	return d.empty, nil
}

// tableSwitch is a set of outer-map entries to switch in one batch update.
// On kernels >= 6.8 such an update of an array of maps waits for one RCU
// grace period in all (maybe_wait_bpf_programs after the batch); a Put
// waits for one each, ~12 ms on this VM, which is what made 1,000
// services take 30 s.
type tableSwitch struct {
	outer  *ebpf.Map
	empty  *ebpf.Map // the shared empty table: not closed with the others
	keys   []uint32
	tables []*ebpf.Map
	old    []*ebpf.Map // what each entry held before (nil: nothing or unknown), for undo
	done   int         // entries the kernel switched
	// held mirrors what outer holds, for the tables this process put
	// there (Datapath.held); updated with every switch and undo.
	held map[uint32]*ebpf.Map
}

// heldTables returns the handles this process keeps on outer's tables.
func (d *Datapath) heldTables(outer *ebpf.Map) map[uint32]*ebpf.Map {
	if d.held == nil {
		d.held = map[*ebpf.Map]map[uint32]*ebpf.Map{}
	}
	if d.held[outer] == nil {
		d.held[outer] = map[uint32]*ebpf.Map{}
	}
	return d.held[outer]
}

// current returns a handle on the table outer holds for svc, for undo:
// from held when this process switched it in, else read from the kernel.
// Reading needs CAP_SYS_ADMIN (BPF_MAP_GET_FD_BY_ID); without it (lbd's
// unit grants CAP_BPF, not CAP_SYS_ADMIN) a table lbd adopted at start is
// unknown, nil: an undo then keeps the new table for that service. The
// first Apply after an adopt writes the tables the same configuration
// gives, so only a configuration changed while lbd was stopped can be
// left half-switched by a failure in that first Apply.
func (s *tableSwitch) current(svc uint32) (*ebpf.Map, error) {
	if m := s.held[svc]; m != nil {
		return m.Clone()
	}
	var m *ebpf.Map
	err := s.outer.Lookup(svc, &m)
	switch {
	case errors.Is(err, ebpf.ErrKeyNotExist), errors.Is(err, unix.EPERM):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("read table of service %d: %w", svc, err)
	}
	return m, nil
}

// remember records that outer now holds m for svc (nil: unknown).
func (s *tableSwitch) remember(svc uint32, m *ebpf.Map) {
	if old := s.held[svc]; old != nil {
		old.Close()
	}
	delete(s.held, svc)
	if m == nil || s.held == nil {
		return
	}
	if c, err := m.Clone(); err == nil {
		s.held[svc] = c
	}
}

func (s *tableSwitch) add(svc uint32, m *ebpf.Map) {
	s.keys = append(s.keys, svc)
	s.tables = append(s.tables, m)
}

// run remembers the current tables, then switches all entries. On a
// partial failure the kernel has switched the first s.done entries.
func (s *tableSwitch) run() error {
	if len(s.keys) == 0 {
		return nil
	}
	s.old = make([]*ebpf.Map, len(s.keys))
	for i, k := range s.keys {
		m, err := s.current(k)
		if err != nil {
			return err
		}
		s.old[i] = m
	}
	fds := make([]uint32, len(s.tables))
	for i, m := range s.tables {
		fds[i] = uint32(m.FD())
	}
	n, err := s.outer.BatchUpdate(s.keys, fds, nil)
	s.done = n
	for i := range n {
		s.remember(s.keys[i], s.tables[i])
	}
	if err != nil {
		return fmt.Errorf("switch %d tables of %s (%d switched): %w", len(s.keys), s.outer, n, err)
	}
	return nil
}

// undo puts back the tables the switched entries held. An entry that held
// none keeps its new table: it belongs to a service no key points at yet.
func (s *tableSwitch) undo() error {
	var keys, fds []uint32
	var restored []int
	for i := range s.done {
		if s.old[i] != nil {
			keys, fds = append(keys, s.keys[i]), append(fds, uint32(s.old[i].FD()))
			restored = append(restored, i)
		}
	}
	if len(keys) == 0 {
		return nil
	}
	n, err := s.outer.BatchUpdate(keys, fds, nil)
	for _, i := range restored[:n] {
		s.remember(s.keys[i], s.old[i])
	}
	if err != nil {
		return fmt.Errorf("restore %d tables of %s: %w", len(keys), s.outer, err)
	}
	return nil
}

// close releases this process's handles; the outer map keeps what it holds.
func (s *tableSwitch) close() {
	for _, m := range s.tables {
		if m != nil && m != s.empty {
			m.Close()
		}
	}
	for _, m := range s.old {
		if m != nil {
			m.Close()
		}
	}
	s.tables, s.old = nil, nil
}

// fault runs the test hook after a step of Apply.
func (d *Datapath) fault(step string) error {
	if d.faultAt == nil {
		return nil
	}
	return d.faultAt(step)
}

// badTableMap (test hook) is a hash map queued as a table: the kernel
// refuses it in the middle of the batch update, a real partial failure.
func badTableMap() (*ebpf.Map, error) {
	return ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Hash, KeySize: 4, ValueSize: 4, MaxEntries: 1})
}
