package datapath

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"sort"
	"strings"

	"github.com/cilium/ebpf"

	"github.com/dsrlb/dsrlb/lbd/maglev"
)

// Apply makes the data plane forward exactly services: the whole desired
// state, not a delta. It keeps the ids of services (matched by any of their
// keys) and backends (matched by address within their service), so tracked
// flows stay put, and it changes each table by one atomic map update.
//
// Order within a service: new or newly-up backends are written first, then
// the tables are switched, then backends leaving "up" are marked and removed
// ones freed. The program therefore never reaches a backend through a table
// before its MAC is written, nor after it was freed.
func (d *Datapath) Apply(services []Service) error {
	if err := validate(services); err != nil {
		return fmt.Errorf("apply services: %w", err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	ids, err := d.matchServices(services)
	if err != nil {
		return fmt.Errorf("apply services: %w", err)
	}
	before := maps.Clone(d.state.keyOwner)
	// New VIPs pass the filter before their keys exist; old ones stop
	// passing only once their keys are gone.
	filter := vipFilter(services)
	if err := d.writeVIPFilter(filter.union(d.state.vipFilter)); err != nil {
		return fmt.Errorf("apply services: %w", err)
	}
	keep := map[uint32]bool{}
	for i := range services {
		keep[ids[i]] = true
		if err := d.applyService(ids[i], &services[i]); err != nil {
			return fmt.Errorf("apply service %s: %w", services[i].Name, err)
		}
	}
	for id := range d.state.services {
		if !keep[id] {
			if err := d.removeService(id); err != nil {
				return fmt.Errorf("remove service %s: %w", d.state.services[id].name, err)
			}
		}
	}
	if err := d.writeVIPFilter(filter); err != nil {
		return fmt.Errorf("apply services: %w", err)
	}
	return d.purgeUnserved(before)
}

func (s *Service) keys() []bpfLbServiceKey {
	if len(s.Ports) == 0 {
		return []bpfLbServiceKey{serviceKey(s.VIP, s.Proto, 0)}
	}
	out := make([]bpfLbServiceKey, len(s.Ports))
	for i, p := range s.Ports {
		out[i] = serviceKey(s.VIP, s.Proto, p)
	}
	return out
}

func validate(services []Service) error {
	seenKey := map[bpfLbServiceKey]string{}
	for i := range services {
		s := &services[i]
		if err := validateService(s); err != nil {
			return fmt.Errorf("service %q: %w", s.Name, err)
		}
		for _, k := range s.keys() {
			if other, ok := seenKey[k]; ok {
				return fmt.Errorf("service %q: %s %s port %d already belongs to service %q",
					s.Name, s.VIP, s.Proto, htons(k.Port), other)
			}
			seenKey[k] = s.Name
		}
	}
	return nil
}

func validateService(s *Service) error {
	if !s.VIP.IsValid() || s.VIP.Zone() != "" {
		return fmt.Errorf("VIP %q is not an address", s.VIP)
	}
	if s.Proto != TCP && s.Proto != UDP {
		return fmt.Errorf("protocol %s: want tcp or udp", s.Proto)
	}
	if s.Scheduler != Maglev && s.Scheduler != RoundRobin && s.Scheduler != Source {
		return fmt.Errorf("unknown %s", s.Scheduler)
	}
	if slices.Contains(s.Ports, 0) {
		return errors.New("port 0: leave ports empty for every port")
	}
	seen := map[netip.Addr]bool{}
	for _, b := range s.Backends {
		if !b.Addr.IsValid() || b.Addr.Unmap().Is4() != s.VIP.Unmap().Is4() {
			return fmt.Errorf("backend %s: address %s is not of the VIP's family", b.Name, b.Addr)
		}
		if seen[b.Addr] {
			return fmt.Errorf("backend %s: address %s listed twice", b.Name, b.Addr)
		}
		seen[b.Addr] = true
		if b.State != Up && b.State != Drain && b.State != Down {
			return fmt.Errorf("backend %s: unknown %s", b.Name, b.State)
		}
		if len(b.MAC) != 6 && (b.State != Down || b.MAC != nil) {
			return fmt.Errorf("backend %s: MAC %q is not an Ethernet address (a backend without one must be down)", b.Name, b.MAC)
		}
	}
	return nil
}

// matchServices finds the existing id of each service (by any key it
// shares with a running service) or allocates one.
func (d *Datapath) matchServices(services []Service) ([]uint32, error) {
	ids := make([]uint32, len(services))
	claimed := map[uint32]bool{}
	var fresh []int
	for i := range services {
		found := false
		for _, k := range services[i].keys() {
			if id, ok := d.state.keyOwner[k]; ok && !claimed[id] {
				ids[i], claimed[id], found = id, true, true
				break
			}
		}
		if !found {
			fresh = append(fresh, i)
		}
	}
	for _, i := range fresh {
		id, err := d.state.svcIDs.take()
		if err != nil {
			return nil, fmt.Errorf("allocate service id (max %d): %w", d.opts.MaxServices, err)
		}
		if err := d.initServiceSlot(id); err != nil {
			return nil, err
		}
		ids[i] = id
	}
	return ids, nil
}

func (d *Datapath) initServiceSlot(id uint32) error {
	if err := zeroPerCPU(d.objs.LbSvcStats, id); err != nil {
		return err
	}
	if err := d.objs.LbRrNext.Put(id, uint32(0)); err != nil {
		return fmt.Errorf("reset round-robin position: %w", err)
	}
	return nil
}

func (d *Datapath) applyService(id uint32, s *Service) error {
	st := d.state.services[id]
	if st == nil {
		st = &svcState{id: id, backends: map[netip.Addr]uint32{}}
		d.state.services[id] = st
	}
	schedChanged := st.sched != s.Scheduler
	st.name, st.vip, st.proto, st.sched = s.Name, s.VIP, s.Proto, s.Scheduler
	st.ports = slices.Sorted(slices.Values(s.Ports))

	beIDs, err := d.writeBackends(st, s.Backends)
	if err != nil {
		return err
	}
	if err := d.writeTables(st, s, beIDs, schedChanged); err != nil {
		return err
	}
	if err := d.finishBackends(st, s.Backends, beIDs); err != nil {
		return err
	}
	return d.writeKeys(st, s)
}

// writeBackends allocates and writes every backend of s. A backend leaving
// "up" stays up here; finishBackends marks it once no table names it.
func (d *Datapath) writeBackends(st *svcState, backends []Backend) ([]uint32, error) {
	ids := make([]uint32, len(backends))
	for i := range backends {
		b := &backends[i]
		id, ok := st.backends[b.Addr]
		if !ok {
			var err error
			if id, err = d.newBackend(st, b.Addr); err != nil {
				return nil, err
			}
		}
		ids[i] = id
		cur := d.state.backends[id]
		state := b.State
		if cur.state == Up && !b.usable() {
			state = Up
		}
		if err := d.putBackend(id, cur, b, state); err != nil {
			return nil, err
		}
	}
	return ids, nil
}

func (d *Datapath) newBackend(st *svcState, addr netip.Addr) (uint32, error) {
	id, err := d.state.beIDs.take()
	if err != nil {
		return 0, fmt.Errorf("allocate backend id (max %d): %w", d.opts.MaxBackends, err)
	}
	if err := zeroPerCPU(d.objs.LbBeStats, id); err != nil {
		return 0, err
	}
	d.state.cookie++
	if d.state.cookie == 0 {
		d.state.cookie++
	}
	if err := d.persistCookie(d.state.cookie); err != nil {
		return 0, err
	}
	d.state.backends[id] = &beState{svc: st.id, addr: addr, cookie: d.state.cookie}
	st.backends[addr] = id
	return id, nil
}

// putBackend writes backend id if anything the program reads changed.
func (d *Datapath) putBackend(id uint32, cur *beState, b *Backend, state State) error {
	cur.name, cur.weight = b.Name, b.Weight
	mac := b.MAC
	if mac == nil {
		mac = make(net.HardwareAddr, 6)
	}
	if cur.state == state && slices.Equal(cur.mac, mac) {
		return nil
	}
	v := bpfLbBackend{State: uint8(state), Cookie: cur.cookie, ServiceId: cur.svc}
	copy(v.Mac[:], mac)
	v.Addr.B = cur.addr.As16()
	if err := d.objs.LbBackends.Put(id, &v); err != nil {
		return fmt.Errorf("write backend %s: %w", b.Name, err)
	}
	cur.state, cur.mac = state, slices.Clone(mac)
	return nil
}

// finishBackends writes the final state of backends leaving "up" and frees
// the backends no longer listed, now that no table refers to them.
func (d *Datapath) finishBackends(st *svcState, backends []Backend, ids []uint32) error {
	listed := map[uint32]bool{}
	for i := range backends {
		listed[ids[i]] = true
		cur := d.state.backends[ids[i]]
		if err := d.putBackend(ids[i], cur, &backends[i], backends[i].State); err != nil {
			return err
		}
	}
	for addr, id := range st.backends {
		if listed[id] {
			continue
		}
		if err := d.freeBackend(id); err != nil {
			return err
		}
		delete(st.backends, addr)
	}
	return nil
}

func (d *Datapath) freeBackend(id uint32) error {
	// A zero value is state "unused" with cookie 0: tracked flows of the
	// backend no longer match and are rescheduled.
	if err := d.objs.LbBackends.Put(id, &bpfLbBackend{}); err != nil {
		return fmt.Errorf("free backend %d: %w", id, err)
	}
	delete(d.state.backends, id)
	d.state.beIDs.free(id)
	return nil
}

// writeTables builds the service's tables from its usable backends and
// switches each in with one update, when they differ from the last ones.
func (d *Datapath) writeTables(st *svcState, s *Service, ids []uint32, schedChanged bool) error {
	var pop []maglev.Backend
	var popIDs []uint32
	var fp strings.Builder
	fmt.Fprintf(&fp, "%d;", s.Scheduler)
	for i, b := range s.Backends {
		if b.usable() {
			pop = append(pop, maglev.Backend{Key: b.Addr.String(), Weight: b.Weight})
			popIDs = append(popIDs, ids[i])
		}
	}
	order := make([]int, len(pop))
	for i := range order {
		order[i] = i
	}
	sort.Slice(order, func(a, b int) bool { return pop[order[a]].Key < pop[order[b]].Key })
	for _, i := range order {
		fmt.Fprintf(&fp, "%s=%d/%d;", pop[i].Key, popIDs[i], pop[i].Weight)
	}
	if fp.String() == st.fingerprint && !schedChanged {
		return nil
	}
	if len(pop) == 0 {
		st.fingerprint = fp.String()
		return d.deleteTables(st.id)
	}
	slots, err := maglev.Build(pop, d.opts.MaglevTableSize)
	if err != nil {
		return fmt.Errorf("build maglev table: %w", err)
	}
	if err := d.switchTable(d.objs.LbMaglev, st.id, slots, popIDs); err != nil {
		return err
	}
	if s.Scheduler == RoundRobin {
		if err := d.switchTable(d.objs.LbRr, st.id, roundRobinTable(pop, d.opts.MaglevTableSize), popIDs); err != nil {
			return err
		}
	} else if err := deleteIfPresent(d.objs.LbRr, st.id); err != nil {
		return err
	}
	st.fingerprint = fp.String()
	return nil
}

// switchTable fills a new inner map aside, then swaps it in: the one
// update the program can observe.
func (d *Datapath) switchTable(outer *ebpf.Map, svc uint32, slots []uint32, ids []uint32) error {
	inner, err := ebpf.NewMap(d.inner)
	if err != nil {
		return fmt.Errorf("create table: %w", err)
	}
	defer inner.Close()
	keys := make([]uint32, len(slots))
	vals := make([]uint32, len(slots))
	for i, s := range slots {
		keys[i], vals[i] = uint32(i), ids[s]
	}
	if _, err := inner.BatchUpdate(keys, vals, nil); err != nil {
		return fmt.Errorf("fill table: %w", err)
	}
	if err := outer.Put(svc, inner); err != nil {
		return fmt.Errorf("switch table: %w", err)
	}
	return nil
}

func (d *Datapath) deleteTables(svc uint32) error {
	return errors.Join(deleteIfPresent(d.objs.LbMaglev, svc), deleteIfPresent(d.objs.LbRr, svc))
}

func deleteIfPresent(m *ebpf.Map, key uint32) error {
	if err := m.Delete(key); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("delete %s entry %d: %w", m, key, err)
	}
	return nil
}

// writeKeys points the service's keys at it, then removes the keys it no
// longer has (unless another service took them in this Apply).
func (d *Datapath) writeKeys(st *svcState, s *Service) error {
	val := bpfLbService{Id: st.id, Sched: uint8(s.Scheduler)}
	keys := s.keys()
	for _, k := range keys {
		if err := d.objs.LbServices.Put(&k, &val); err != nil {
			return fmt.Errorf("write service key: %w", err)
		}
		d.state.keyOwner[k] = st.id
	}
	for _, k := range st.keys {
		if !slices.Contains(keys, k) {
			if err := d.deleteKey(k, st.id); err != nil {
				return err
			}
		}
	}
	st.keys = keys
	return nil
}

func (d *Datapath) deleteKey(k bpfLbServiceKey, owner uint32) error {
	if d.state.keyOwner[k] != owner {
		return nil
	}
	if err := d.objs.LbServices.Delete(&k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("delete service key: %w", err)
	}
	delete(d.state.keyOwner, k)
	return nil
}

func (d *Datapath) removeService(id uint32) error {
	st := d.state.services[id]
	for _, k := range st.keys {
		if err := d.deleteKey(k, id); err != nil {
			return err
		}
	}
	if err := d.deleteTables(id); err != nil {
		return err
	}
	for _, bid := range st.backends {
		if err := d.freeBackend(bid); err != nil {
			return err
		}
	}
	delete(d.state.services, id)
	d.state.svcIDs.free(id)
	return nil
}

// persistCookie records the highest cookie handed out in the pinned config,
// before any backend carries it, so the next lbd continues above it. Only
// last_cookie changes; the fields the program reads are rewritten with
// their current values, so a concurrent reader sees no torn value.
func (d *Datapath) persistCookie(c uint32) error {
	var cfg bpfLbConfig
	if err := d.objs.LbCfg.Lookup(uint32(0), &cfg); err != nil {
		return fmt.Errorf("read data plane config: %w", err)
	}
	cfg.LastCookie = c
	if err := d.objs.LbCfg.Put(uint32(0), &cfg); err != nil {
		return fmt.Errorf("record backend cookie: %w", err)
	}
	return nil
}
