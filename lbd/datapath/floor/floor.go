// Package floor holds the reference programs of bpf/bench/floor.c that
// lbd/datapath's BenchmarkFloor compares dsrlb's program with: a bare MAC
// rewrite + redirect, a program that does nothing, and one that remembers
// each new flow in an LRU hash before redirecting. They are only ever run
// with BPF_PROG_TEST_RUN.
package floor

//go:generate go tool bpf2go -cc clang -strip llvm-strip -target bpfel -cflags "-O2 -g -Wall -Werror -mcpu=v3 -nostdinc -isystem ../../../bpf/include" floor ../../../bpf/bench/floor.c

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/cilium/ebpf"
)

// Programs are the loaded reference programs.
type Programs struct {
	Redirect *ebpf.Program // rewrite both MACs, redirect
	Noop     *ebpf.Program // continue
	Track    *ebpf.Program // LRU lookup, insert on a miss, then as Redirect
	Flows    *ebpf.Map     // Track's LRU hash (key 16 B, value 16 B)
}

// Load loads the test-run programs; Close releases them.
func Load() (*Programs, error) {
	var objs floorObjects
	if err := loadFloorObjects(&objs, nil); err != nil {
		return nil, fmt.Errorf("load floor programs: %w", err)
	}
	return &Programs{Redirect: objs.FloorRedirect, Noop: objs.FloorNoop, Track: objs.FloorTrack, Flows: objs.FloorCt}, nil
}

// LoadVIP loads floor_vip for vip (IPv4), writing dst (the backend's MAC)
// and src (the balancer interface's) into frames for vip: the reference
// program for real traffic. The caller closes it.
func LoadVIP(vip netip.Addr, dst, src net.HardwareAddr) (*ebpf.Program, error) {
	if !vip.Is4() || len(dst) != 6 || len(src) != 6 {
		return nil, fmt.Errorf("load floor_vip: want an IPv4 VIP and two Ethernet addresses, got %s %s %s", vip, dst, src)
	}
	spec, err := loadFloor()
	if err != nil {
		return nil, err
	}
	var macs [12]byte
	copy(macs[:6], dst)
	copy(macs[6:], src)
	if err := spec.Variables[floorVarFloorVipAddr].Set(vip.As4()); err != nil {
		return nil, fmt.Errorf("set floor_vip address: %w", err)
	}
	if err := spec.Variables[floorVarFloorVipMacs].Set(macs); err != nil {
		return nil, fmt.Errorf("set floor_vip MACs: %w", err)
	}
	var objs struct {
		Prog *ebpf.Program `ebpf:"floor_vip"`
	}
	if err := spec.LoadAndAssign(&objs, nil); err != nil {
		return nil, fmt.Errorf("load floor_vip: %w", err)
	}
	return objs.Prog, nil
}

// Close releases the programs.
func (p *Programs) Close() error {
	p.Redirect.Close()
	p.Track.Close()
	p.Flows.Close()
	return p.Noop.Close()
}
