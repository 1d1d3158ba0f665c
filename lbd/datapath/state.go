package datapath

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"

	"github.com/cilium/ebpf"

	"github.com/dsrlb/dsrlb/internal/netorder"
)

// state mirrors what the maps hold, so Apply writes only differences and
// keeps service and backend ids (which conntrack entries refer to) stable.
type state struct {
	services map[uint32]*svcState       // by service id
	keyOwner map[bpfLbServiceKey]uint32 // service key -> service id
	backends map[uint32]*beState        // by backend id, over all services
	svcIDs   allocator
	beIDs    allocator
	cookie   uint32 // last backend cookie handed out
	// vipFilter is lb_vip_filter as last written (nil: not read yet).
	vipFilter filterBits
}

type svcState struct {
	id          uint32
	name        string
	vip         netip.Addr
	proto       Proto
	ports       []uint16
	sched       Scheduler
	keys        []bpfLbServiceKey
	backends    map[netip.Addr]uint32 // backend address -> backend id
	fingerprint string                // of the tables last written; "" = unknown
	rrTable     bool                  // lb_rr may hold a non-empty table for it
}

type beState struct {
	svc    uint32
	name   string
	addr   netip.Addr
	mac    net.HardwareAddr
	weight uint32
	state  State // as written in lb_backends
	cookie uint32
}

// allocator hands out free ids of [min, max), lowest first after a free,
// in O(1) amortized while ids are only taken.
type allocator struct {
	used     map[uint32]bool
	min, max uint32
	next     uint32 // no id below next is free
}

func newAllocator(min, max uint32) allocator {
	return allocator{used: map[uint32]bool{}, min: min, max: max, next: min}
}

var errFull = errors.New("no free id")

func (a *allocator) take() (uint32, error) {
	for id := max(a.next, a.min); id < a.max; id++ {
		if !a.used[id] {
			a.used[id] = true
			a.next = id + 1
			return id, nil
		}
	}
	return 0, errFull
}

func (a *allocator) free(id uint32) {
	delete(a.used, id)
	a.next = min(a.next, id)
}

func serviceKey(vip netip.Addr, proto Proto, port uint16) bpfLbServiceKey {
	var k bpfLbServiceKey
	k.Vip.B = vip.As16()
	k.Port = netorder.Htons(port)
	k.Proto = uint8(proto)
	return k
}

func addrFrom16(b [16]byte) netip.Addr { return netip.AddrFrom16(b).Unmap() }

// initState reads what the maps hold (empty after a fresh load; the
// previous lbd's services and backends after an adopt).
func (d *Datapath) initState() error {
	st := &state{
		services: map[uint32]*svcState{},
		keyOwner: map[bpfLbServiceKey]uint32{},
		backends: map[uint32]*beState{},
		svcIDs:   newAllocator(0, d.opts.MaxServices),
		beIDs:    newAllocator(1, d.opts.MaxBackends), // 0 never used
	}
	var (
		key bpfLbServiceKey
		val bpfLbService
	)
	it := d.objs.LbServices.Iterate()
	for it.Next(&key, &val) {
		s := st.services[val.Id]
		if s == nil {
			s = &svcState{id: val.Id, vip: addrFrom16(key.Vip.B), proto: Proto(key.Proto),
				sched: Scheduler(val.Sched), backends: map[netip.Addr]uint32{}, name: fmt.Sprintf("service%d", val.Id),
				rrTable: Scheduler(val.Sched) == RoundRobin}
			st.services[val.Id] = s
			st.svcIDs.used[val.Id] = true
		}
		s.keys = append(s.keys, key)
		if port := netorder.Htons(key.Port); port != 0 {
			s.ports = append(s.ports, port)
		}
		st.keyOwner[key] = val.Id
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("read pinned services: %w", err)
	}
	for _, s := range st.services {
		slices.Sort(s.ports)
	}
	if err := d.readBackends(st); err != nil {
		return err
	}
	st.cookie = max(st.cookie, d.cookieFloor)
	d.state = st
	if d.adopted {
		d.log.Info("adopted pinned data plane", "pin_path", d.opts.PinPath,
			"services", len(st.services), "backends", len(st.backends))
	}
	return nil
}

func (d *Datapath) readBackends(st *state) error {
	return d.eachBackend(func(id uint32, be *bpfLbBackend) {
		if be.State == uint8(bpfLbBackendStateLB_BACKEND_UNUSED) {
			return
		}
		s := st.services[be.ServiceId]
		if s == nil {
			return // orphan of a half-finished Apply: the slot is reused
		}
		addr := addrFrom16(be.Addr.B)
		st.backends[id] = &beState{svc: be.ServiceId, addr: addr, name: addr.String(),
			mac: net.HardwareAddr(slices.Clone(be.Mac[:])), state: State(be.State), cookie: be.Cookie}
		s.backends[addr] = id
		st.beIDs.used[id] = true
		st.cookie = max(st.cookie, be.Cookie)
	})
}

// eachBackend reads lb_backends by batch lookups of 4,096 entries: one
// kernel call per entry made Open cost ~200 ms for 65,536 backend ids.
func (d *Datapath) eachBackend(f func(id uint32, be *bpfLbBackend)) error {
	const chunk = 4096
	keys := make([]uint32, chunk)
	vals := make([]bpfLbBackend, chunk)
	var cursor ebpf.MapBatchCursor
	for {
		n, err := d.objs.LbBackends.BatchLookup(&cursor, keys, vals, nil)
		for i := range n {
			f(keys[i], &vals[i])
		}
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read pinned backends: %w", err)
		}
	}
}

// zeroPerCPU resets the per-CPU counter slots of newly allocated ids, in
// one batch update.
func zeroPerCPU(m *ebpf.Map, ids []uint32) error {
	n, err := ebpf.PossibleCPU()
	if err != nil {
		return fmt.Errorf("count CPUs: %w", err)
	}
	if _, err := m.BatchUpdate(ids, make([]bpfLbCounters, n*len(ids)), nil); err != nil {
		return fmt.Errorf("reset %d counters of %s: %w", len(ids), m, err)
	}
	return nil
}
