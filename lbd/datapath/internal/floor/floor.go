// Package floor holds the reference programs of bpf/bench/floor.c that
// lbd/datapath's BenchmarkFloor compares dsrlb's program with: a bare MAC
// rewrite + redirect, a program that does nothing, and one that remembers
// each new flow in an LRU hash before redirecting. They are only ever run
// with BPF_PROG_TEST_RUN.
package floor

//go:generate go tool bpf2go -cc clang -strip llvm-strip -target bpfel -cflags "-O2 -g -Wall -Werror -mcpu=v3 -nostdinc -isystem ../../../../bpf/include" floor ../../../../bpf/bench/floor.c

import (
	"fmt"

	"github.com/cilium/ebpf"
)

// Programs are the loaded reference programs.
type Programs struct {
	Redirect *ebpf.Program // rewrite both MACs, redirect
	Noop     *ebpf.Program // continue
	Track    *ebpf.Program // LRU lookup, insert on a miss, then as Redirect
	Flows    *ebpf.Map     // Track's LRU hash (key 16 B, value 16 B)
}

// Load loads both programs; Close releases them.
func Load() (*Programs, error) {
	var objs floorObjects
	if err := loadFloorObjects(&objs, nil); err != nil {
		return nil, fmt.Errorf("load floor programs: %w", err)
	}
	return &Programs{Redirect: objs.FloorRedirect, Noop: objs.FloorNoop, Track: objs.FloorTrack, Flows: objs.FloorCt}, nil
}

// Close releases the programs.
func (p *Programs) Close() error {
	p.Redirect.Close()
	p.Track.Close()
	p.Flows.Close()
	return p.Noop.Close()
}
