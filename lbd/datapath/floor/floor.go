// Package floor holds the reference programs of bpf/bench/floor.c that
// dsrlb's program is compared with: for lbd/datapath's BenchmarkFloor
// (BPF_PROG_TEST_RUN only) a bare MAC rewrite + redirect, a program that
// does nothing, and one that remembers each new flow in an LRU hash before
// redirecting; for dsrlb-bench under real load (attached with tcx)
// floor_vip, the MAC rewrite + redirect of frames to one VIP, and
// floor_vip_track, the same with each flow remembered, and floor_vip_slot,
// the same with each flow's 5-tuple in one slot of a plain array.
package floor

//go:generate go tool bpf2go -cc clang -strip llvm-strip -target bpfel -cflags "-O2 -g -Wall -Werror -mcpu=v3 -nostdinc -isystem ../../../bpf/include" floor ../../../bpf/bench/floor.c

import (
	"fmt"
	"math/bits"
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
	// Only these: the programs for real traffic are loaded by LoadVIP and
	// LoadVIPTrack with their settings.
	var objs struct {
		Redirect *ebpf.Program `ebpf:"floor_redirect"`
		Noop     *ebpf.Program `ebpf:"floor_noop"`
		Track    *ebpf.Program `ebpf:"floor_track"`
		Flows    *ebpf.Map     `ebpf:"floor_ct"`
	}
	if err := loadFloorObjects(&objs, nil); err != nil {
		return nil, fmt.Errorf("load floor programs: %w", err)
	}
	return &Programs{Redirect: objs.Redirect, Noop: objs.Noop, Track: objs.Track, Flows: objs.Flows}, nil
}

// LoadVIP loads floor_vip for vip (IPv4), writing dst (the backend's MAC)
// and src (the balancer interface's) into frames for vip: the reference
// program for real traffic. The caller closes it.
func LoadVIP(vip netip.Addr, dst, src net.HardwareAddr) (*ebpf.Program, error) {
	var objs struct {
		Prog *ebpf.Program `ebpf:"floor_vip"`
	}
	if err := loadVIP("floor_vip", vip, dst, src, &objs, nil); err != nil {
		return nil, err
	}
	return objs.Prog, nil
}

// VIPTrack is floor_vip_track and the LRU hash it remembers flows in.
type VIPTrack struct {
	Prog  *ebpf.Program
	Flows *ebpf.Map // floor_vip_ct: key 16 B, value 16 B
}

// LoadVIPTrack loads floor_vip_track, floor_vip plus an LRU lookup (and
// insert on a miss) of each TCP/UDP flow to vip in a table of size
// entries (0: the 65,536 compiled in): the reference for real traffic of
// a balancer that remembers flows, sized as the balancer's table is. The
// caller closes it.
func LoadVIPTrack(vip netip.Addr, dst, src net.HardwareAddr, size uint32) (*VIPTrack, error) {
	var objs struct {
		Prog  *ebpf.Program `ebpf:"floor_vip_track"`
		Flows *ebpf.Map     `ebpf:"floor_vip_ct"`
	}
	err := loadVIP("floor_vip_track", vip, dst, src, &objs, func(spec *ebpf.CollectionSpec) {
		if size > 0 {
			spec.Maps[floorMapFloorVipCt].MaxEntries = size
		}
	})
	if err != nil {
		return nil, err
	}
	return &VIPTrack{Prog: objs.Prog, Flows: objs.Flows}, nil
}

// LoadVIPSlot loads floor_vip_slot, floor_vip plus one per-flow slot of a
// plain array read (and written on a miss) for each TCP/UDP frame to vip,
// in an array of size entries rounded up to a power of two (0 or 1: the
// 65,536 compiled in): the least per-flow state any balancer can look up. The
// caller closes it.
func LoadVIPSlot(vip netip.Addr, dst, src net.HardwareAddr, size uint32) (*VIPTrack, error) {
	var objs struct {
		Prog  *ebpf.Program `ebpf:"floor_vip_slot"`
		Flows *ebpf.Map     `ebpf:"floor_vip_slots"`
	}
	var err error
	lerr := loadVIP("floor_vip_slot", vip, dst, src, &objs, func(spec *ebpf.CollectionSpec) {
		if size <= 1 {
			return
		}
		b := bits.Len32(size - 1)
		spec.Maps[floorMapFloorVipSlots].MaxEntries = 1 << b
		err = spec.Variables[floorVarFloorVipSlotBits].Set(uint32(b))
	})
	if err != nil {
		return nil, fmt.Errorf("set floor_vip_slot size: %w", err)
	}
	if lerr != nil {
		return nil, lerr
	}
	return &VIPTrack{Prog: objs.Prog, Flows: objs.Flows}, nil
}

// Close releases the program and its map.
func (t *VIPTrack) Close() error {
	t.Prog.Close()
	return t.Flows.Close()
}

// loadVIP sets floor_vip's settings (shared by the programs for real
// traffic), lets adjust change the spec further (nil: nothing), and loads
// into objs what it names; name is for errors.
func loadVIP(name string, vip netip.Addr, dst, src net.HardwareAddr, objs any, adjust func(*ebpf.CollectionSpec)) error {
	if !vip.Is4() || len(dst) != 6 || len(src) != 6 {
		return fmt.Errorf("load %s: want an IPv4 VIP and two Ethernet addresses, got %s %s %s", name, vip, dst, src)
	}
	spec, err := loadFloor()
	if err != nil {
		return err
	}
	var macs [12]byte
	copy(macs[:6], dst)
	copy(macs[6:], src)
	if err := spec.Variables[floorVarFloorVipAddr].Set(vip.As4()); err != nil {
		return fmt.Errorf("set %s address: %w", name, err)
	}
	if err := spec.Variables[floorVarFloorVipMacs].Set(macs); err != nil {
		return fmt.Errorf("set %s MACs: %w", name, err)
	}
	if adjust != nil {
		adjust(spec)
	}
	if err := spec.LoadAndAssign(objs, nil); err != nil {
		return fmt.Errorf("load %s: %w", name, err)
	}
	return nil
}

// Close releases the programs.
func (p *Programs) Close() error {
	p.Redirect.Close()
	p.Track.Close()
	p.Flows.Close()
	return p.Noop.Close()
}
