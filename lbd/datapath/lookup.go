package datapath

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/dsrlb/dsrlb/internal/netorder"
)

// Slot is the Go model of the program's consistent choice: the Maglev
// table slot it reads for flow f of a service using scheduler s (source:
// client address; otherwise the 5-tuple), tableSize being that service's
// table size (maglev.TableSize). The program stores slot i at index 1 + i.
func Slot(s Scheduler, f Flow, tableSize uint32) uint32 {
	if s == Source {
		return HashSource(f.Src.Addr()) % tableSize
	}
	return HashFlow(f) % tableSize
}

// FlowInfo explains where the program sends a flow's next packet.
type FlowInfo struct {
	Service string     // "" when no service matches
	Backend string     // "" when none: the packet passes to the host
	Addr    netip.Addr // of Backend
	Tracked bool       // a valid conntrack entry decides
	State   CTState    // of the conntrack entry, when Tracked
	Why     string     // human-readable reason
}

// LookupFlow explains which backend the next non-SYN packet of f reaches
// and why: its conntrack entry if valid, else the service's Maglev slot.
// (A new flow of a roundrobin service takes the next round-robin slot.) A
// SYN's choice pending in a CPU's flow cache is not read: after a table
// change between a SYN and its ACK, the ACK on that CPU follows the SYN's
// backend, not the slot this reports.
func (d *Datapath) LookupFlow(f Flow) (FlowInfo, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var svc bpfLbService
	key := serviceKey(f.Dst.Addr(), f.Proto, f.Dst.Port())
	if err := d.objs.LbServices.Lookup(&key, &svc); err != nil {
		key.Port = 0
		if err := d.objs.LbServices.Lookup(&key, &svc); err != nil {
			return FlowInfo{Why: "no service for this VIP, protocol and port: passed to the host"}, nil
		}
	}
	st := d.state.services[svc.Id]
	info := FlowInfo{Service: fmt.Sprintf("service%d", svc.Id)}
	if st != nil {
		info.Service = st.name
	}
	if id, state, ok := d.trackedBackend(f); ok {
		d.describe(&info, id)
		info.Tracked, info.State, info.Why = true, state, "conntrack entry ("+state.String()+")"
		return info, nil
	}
	n, slot, id, err := d.tableSlot(svc.Id, Scheduler(svc.Sched), f)
	if errors.Is(err, ebpf.ErrKeyNotExist) || (err == nil && n == 0) {
		info.Why = "no usable backend: passed to the host"
		return info, nil
	}
	if err != nil {
		return FlowInfo{}, err
	}
	d.describe(&info, id)
	info.Why = fmt.Sprintf("%s table slot %d of %d", Scheduler(svc.Sched), slot, n)
	if Scheduler(svc.Sched) == RoundRobin {
		info.Why = fmt.Sprintf("untracked: maglev fallback slot %d of %d (a new flow takes the next round-robin slot)", slot, n)
	}
	return info, nil
}

func (d *Datapath) describe(info *FlowInfo, id uint32) {
	if b := d.state.backends[id]; b != nil {
		info.Backend, info.Addr = b.name, b.addr
		return
	}
	info.Backend = fmt.Sprintf("backend%d", id)
}

// trackedBackend mirrors lb_ct_lookup's validity rules.
func (d *Datapath) trackedBackend(f Flow) (uint32, CTState, bool) {
	var ct bpfLbCtEntry
	key := flowKey(f)
	if err := d.ctLookup(key, &ct); err != nil {
		return 0, 0, false
	}
	if !d.ctLive(f.Proto, &ct, monotonicNow()) {
		return 0, 0, false
	}
	var be bpfLbBackend
	if err := d.objs.LbBackends.Lookup(ct.BackendId, &be); err != nil || be.Cookie != ct.Cookie ||
		(State(be.State) != Up && State(be.State) != Drain) {
		return 0, 0, false
	}
	return ct.BackendId, CTState(ct.State), true
}

func flowKey(f Flow) bpfLbFlow {
	var k bpfLbFlow
	k.Saddr.B = f.Src.Addr().As16()
	k.Daddr.B = f.Dst.Addr().As16()
	k.Sport, k.Dport, k.Proto = netorder.Htons(f.Src.Port()), netorder.Htons(f.Dst.Port()), uint8(f.Proto)
	return k
}

// tableSlot reads the service's Maglev table as the program does: its
// size n, the slot Slot gives for f, and the backend id there. The inner
// table is opened by id (read-only for a Reader), so a reader never holds
// a writable fd.
func (d *Datapath) tableSlot(svc uint32, s Scheduler, f Flow) (n, slot, id uint32, err error) {
	var innerID ebpf.MapID
	if err := d.objs.LbMaglev.Lookup(svc, &innerID); err != nil {
		return 0, 0, 0, fmt.Errorf("read maglev table of service %d: %w", svc, err)
	}
	inner, err := d.openMapByID(innerID)
	if err != nil {
		return 0, 0, 0, fmt.Errorf("open maglev table of service %d: %w", svc, err)
	}
	defer inner.Close()
	if err := inner.Lookup(uint32(0), &n); err != nil {
		return 0, 0, 0, fmt.Errorf("read maglev table size of service %d: %w", svc, err)
	}
	if n == 0 {
		return 0, 0, 0, nil
	}
	slot = Slot(s, f, n)
	if err := inner.Lookup(1+slot, &id); err != nil {
		return n, slot, 0, fmt.Errorf("read maglev slot %d: %w", slot, err)
	}
	return n, slot, id, nil
}

// monotonicNow is bpf_ktime_get_ns's clock.
func monotonicNow() uint64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return uint64(ts.Nano())
}
