package datapath

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/cilium/ebpf"

	"github.com/dsrlb/dsrlb/lbd/maglev"

	"github.com/dsrlb/dsrlb/internal/netorder"
)

// Apply makes the data plane forward exactly services: the whole desired
// state, not a delta. It keeps the ids of services (matched by any of their
// keys) and backends (matched by address within their service), so tracked
// flows stay put, and writes only what differs from the last Apply: an
// unchanged service costs no kernel call.
//
// It is one transaction (see the package documentation): new and changed
// backends are written, then every changed table is switched by one batch
// update per outer map, then the service keys; only then are backends
// leaving "up" marked and removed ones freed. If a step fails, the steps
// done are undone, so the previous state keeps serving, and the Go mirror
// is re-read from the maps. A failure after the keys are written cannot be
// undone and says so: the error wraps ErrCommitted.
func (d *Datapath) Apply(services []Service) error {
	if err := validate(services); err != nil {
		return fmt.Errorf("apply services: %w", err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	err := d.apply(services)
	if err != nil {
		d.cookieFloor = max(d.cookieFloor, d.state.cookie)
		if rerr := d.initState(); rerr != nil {
			err = errors.Join(err, fmt.Errorf("re-read data plane state: %w", rerr))
		}
		return fmt.Errorf("apply services: %w", err)
	}
	return nil
}

// ApplyStats counts what the last Apply wrote.
type ApplyStats struct {
	Services int // services whose backends, tables or keys changed
	Tables   int // tables switched (Maglev and round-robin)
	Backends int // backend entries written
	Keys     int // service keys written or deleted
}

// LastApply returns what the last successful Apply wrote.
func (d *Datapath) LastApply() ApplyStats {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.last
}

func (d *Datapath) apply(services []Service) error {
	tx := &txn{d: d, prevSched: map[uint32]Scheduler{}}
	defer tx.close()
	ids, err := d.matchServices(tx, services)
	if err != nil {
		return err
	}
	before := maps.Clone(d.state.keyOwner)
	// New VIPs pass the filter before their keys exist; old ones stop
	// passing only once their keys are gone.
	filter := vipFilter(services)
	if err := d.writeVIPFilter(filter.union(d.state.vipFilter)); err != nil {
		return err
	}
	keep := map[uint32]bool{}
	for i := range services {
		keep[ids[i]] = true
		if err := tx.planService(ids[i], &services[i]); err != nil {
			return fmt.Errorf("service %s: %w", services[i].Name, err)
		}
	}
	for id := range d.state.services {
		if !keep[id] {
			if err := tx.planRemoval(id); err != nil {
				return fmt.Errorf("remove service %s: %w", d.state.services[id].name, err)
			}
		}
	}
	if err := tx.planKeys(services, ids); err != nil {
		return err
	}
	err = tx.commit()
	if errors.Is(err, ErrCommitted) {
		d.keepUnpurged(before)
	}
	if err != nil {
		return err
	}
	d.last = tx.stats()
	d.keepUnpurged(before)
	if err := d.writeVIPFilter(filter); err != nil {
		return fmt.Errorf("%w: %w", ErrCommitted, err)
	}
	if err := d.purgeUnserved(d.unpurged); err != nil {
		return fmt.Errorf("%w: %w", ErrCommitted, err)
	}
	d.unpurged = nil
	return nil
}

// keepUnpurged adds the keys before held that the committed services no
// longer have to d.unpurged, and drops those served again: their
// conntrack entries are purged by this Apply or, if its purge fails, by
// the next one.
func (d *Datapath) keepUnpurged(before map[bpfLbServiceKey]uint32) {
	for k, id := range before {
		if _, ok := d.state.keyOwner[k]; !ok {
			if d.unpurged == nil {
				d.unpurged = map[bpfLbServiceKey]uint32{}
			}
			d.unpurged[k] = id
		}
	}
	maps.DeleteFunc(d.unpurged, func(k bpfLbServiceKey, _ uint32) bool {
		_, served := d.state.keyOwner[k]
		return served
	})
}

// matchServices finds the existing id of each service (by any key it
// shares with a running service) or allocates one.
func (d *Datapath) matchServices(tx *txn, services []Service) ([]uint32, error) {
	ids := make([]uint32, len(services))
	claimed := map[uint32]bool{}
	var fresh []int
	for i := range services {
		if id, ok := d.matchedID(&services[i], claimed); ok {
			ids[i] = id
		} else {
			fresh = append(fresh, i)
		}
	}
	for _, i := range fresh {
		id, err := d.state.svcIDs.take()
		if err != nil {
			return nil, fmt.Errorf("allocate service id (max %d): %w: %w", d.opts.MaxServices, ErrCapacity, err)
		}
		tx.newSvcs = append(tx.newSvcs, id)
		ids[i] = id
	}
	return ids, nil
}

// txn is one Apply: what to write, in order, and how to undo it.
type txn struct {
	d       *Datapath
	newSvcs []uint32 // fresh service ids: counters and round-robin position reset
	newBes  []uint32 // fresh backend ids: counters reset

	// Backend entries written before the tables switch (new, newly up,
	// moved MAC; a backend leaving "up" stays up), with what they held.
	beIDs  []uint32
	beVals []bpfLbBackend
	beOld  []bpfLbBackend
	// Written once no table names them: final states, and zero (freed).
	finIDs  []uint32
	finVals []bpfLbBackend
	freed   []uint32 // backend ids returned to the allocator at the end
	removed []uint32 // service ids removed

	maglev, rr tableSwitch
	jobs       []tableJob // tables to build before the switch

	putKeys []bpfLbServiceKey
	putVals []bpfLbService
	delKeys []bpfLbServiceKey
	keyOld  map[bpfLbServiceKey]bpfLbService // before this Apply, for undo

	changed   map[uint32]bool      // services with anything to write
	prevSched map[uint32]Scheduler // schedulers this Apply changes, as they were
	undo      []func() error
}

// oldKey is the value key k had before this Apply, owned by owner.
func (tx *txn) oldKey(owner uint32) bpfLbService {
	sched, ok := tx.prevSched[owner]
	if !ok {
		sched = tx.d.state.services[owner].sched
	}
	return bpfLbService{Id: owner, Sched: uint8(sched)}
}

func (tx *txn) close() {
	tx.maglev.close()
	tx.rr.close()
}

func (tx *txn) stats() ApplyStats {
	return ApplyStats{Services: len(tx.changed), Tables: len(tx.maglev.keys) + len(tx.rr.keys),
		Backends: len(tx.beIDs) + len(tx.finIDs), Keys: len(tx.putKeys) + len(tx.delKeys)}
}

func (tx *txn) mark(id uint32) {
	if tx.changed == nil {
		tx.changed = map[uint32]bool{}
	}
	tx.changed[id] = true
}

// planService records what service s (id) needs written and updates the
// mirror to the state after the transaction.
func (tx *txn) planService(id uint32, s *Service) error {
	d := tx.d
	st := d.state.services[id]
	if st == nil {
		st = &svcState{id: id, backends: map[netip.Addr]uint32{}}
		d.state.services[id] = st
		tx.mark(id)
	}
	schedChanged := st.sched != s.Scheduler
	if schedChanged {
		tx.prevSched[id] = st.sched // for the keys' undo
	}
	st.name, st.vip, st.proto, st.sched = s.Name, s.VIP, s.Proto, s.Scheduler
	st.ports = slices.Sorted(slices.Values(s.Ports))
	ids, err := tx.planBackends(st, s.Backends)
	if err != nil {
		return err
	}
	if err := tx.planTables(st, s, ids, schedChanged); err != nil {
		return err
	}
	if schedChanged {
		st.keys = nil // every key's value changes: planKeys rewrites them
	}
	return nil
}

// planBackends allocates and records every backend of one service. A
// backend leaving "up" stays up until its tables no longer name it.
func (tx *txn) planBackends(st *svcState, backends []Backend) ([]uint32, error) {
	d := tx.d
	ids := make([]uint32, len(backends))
	listed := map[uint32]bool{}
	for i := range backends {
		b := &backends[i]
		id, ok := st.backends[b.Addr]
		if !ok {
			var err error
			if id, err = tx.newBackend(st, b.Addr); err != nil {
				return nil, err
			}
		}
		ids[i], listed[id] = id, true
		cur := d.state.backends[id]
		cur.name, cur.weight = b.Name, b.Weight
		mac := b.MAC
		if mac == nil {
			mac = make(net.HardwareAddr, 6)
		}
		first := b.State
		if cur.state == Up && !b.usable() {
			first = Up
		}
		if cur.state != first || !slices.Equal(cur.mac, mac) {
			tx.beIDs = append(tx.beIDs, id)
			tx.beOld = append(tx.beOld, cur.value())
			cur.state, cur.mac = first, slices.Clone(mac)
			tx.beVals = append(tx.beVals, cur.value())
			tx.mark(st.id)
		}
		if cur.state != b.State {
			cur.state = b.State
			tx.finIDs = append(tx.finIDs, id)
			tx.finVals = append(tx.finVals, cur.value())
		}
	}
	for addr, id := range st.backends {
		if !listed[id] {
			tx.free(id)
			delete(st.backends, addr)
			tx.mark(st.id)
		}
	}
	return ids, nil
}

func (tx *txn) free(id uint32) {
	// A zero value is state "unused" with cookie 0: tracked flows of the
	// backend no longer match and are rescheduled.
	tx.finIDs = append(tx.finIDs, id)
	tx.finVals = append(tx.finVals, bpfLbBackend{})
	tx.freed = append(tx.freed, id)
}

func (tx *txn) newBackend(st *svcState, addr netip.Addr) (uint32, error) {
	d := tx.d
	id, err := d.state.beIDs.take()
	if err != nil {
		return 0, fmt.Errorf("allocate backend id (max %d): %w: %w", d.opts.MaxBackends, ErrCapacity, err)
	}
	d.state.cookie++
	if d.state.cookie == 0 {
		d.state.cookie++
	}
	d.state.backends[id] = &beState{svc: st.id, addr: addr, cookie: d.state.cookie}
	st.backends[addr] = id
	tx.newBes = append(tx.newBes, id)
	return id, nil
}

// value is the lb_backends entry of b.
func (b *beState) value() bpfLbBackend {
	v := bpfLbBackend{State: uint8(b.state), Cookie: b.cookie, ServiceId: b.svc}
	copy(v.Mac[:], b.mac)
	v.Addr.B = b.addr.As16()
	return v
}

// planTables builds the service's tables from its usable backends when
// they differ from the last ones written. Each table is sized from the
// number of backends listed, whatever their state, so health changes
// never resize it (maglev.TableSize).
func (tx *txn) planTables(st *svcState, s *Service, ids []uint32, schedChanged bool) error {
	d := tx.d
	size := maglev.TableSize(len(s.Backends), d.opts.MaglevTableSize)
	var pop []maglev.Backend
	var popIDs []uint32
	var fp strings.Builder
	fmt.Fprintf(&fp, "%d/%d;", s.Scheduler, size)
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
	tx.mark(st.id)
	st.fingerprint = fp.String()
	if len(pop) == 0 {
		return tx.emptyTables(st)
	}
	tx.addTable(&tx.maglev, d.objs.LbMaglev, st, func() ([]uint32, error) {
		slots, err := maglev.Build(pop, size)
		if err != nil {
			return nil, fmt.Errorf("build maglev table: %w", err)
		}
		return idsOf(slots, popIDs), nil
	})
	switch {
	case s.Scheduler == RoundRobin:
		st.rrTable = true
		tx.addTable(&tx.rr, d.objs.LbRr, st, func() ([]uint32, error) {
			return idsOf(roundRobinTable(pop, size), popIDs), nil
		})
	case st.rrTable:
		st.rrTable = false
		return tx.addEmpty(&tx.rr, d.objs.LbRr, st.id)
	}
	return nil
}

// emptyTables gives the service the empty table (no usable backend: the
// program passes its packets to the host).
func (tx *txn) emptyTables(st *svcState) error {
	if err := tx.addEmpty(&tx.maglev, tx.d.objs.LbMaglev, st.id); err != nil {
		return err
	}
	if st.rrTable {
		st.rrTable = false
		return tx.addEmpty(&tx.rr, tx.d.objs.LbRr, st.id)
	}
	return nil
}

// addTable queues a table for st, built by buildTables from ids: the
// backend id of each slot.
func (tx *txn) addTable(sw *tableSwitch, outer *ebpf.Map, st *svcState, ids func() ([]uint32, error)) {
	sw.outer, sw.held = outer, tx.d.heldTables(outer)
	sw.add(st.id, nil)
	tx.jobs = append(tx.jobs, tableJob{sw: sw, idx: len(sw.keys) - 1, name: st.name, ids: ids})
}

func idsOf(slots, ids []uint32) []uint32 {
	out := make([]uint32, len(slots))
	for i, s := range slots {
		out[i] = ids[s]
	}
	return out
}

// tableJob is one table to build and create.
type tableJob struct {
	sw   *tableSwitch
	idx  int // of the table in sw
	name string
	ids  func() ([]uint32, error)
}

// buildTables computes and creates the queued tables on every CPU: for
// 100 services of 100 backends, building 16,381-slot Maglev tables is
// most of an Apply. Nothing the program reads changes here.
func (tx *txn) buildTables() error {
	errs := make([]error, len(tx.jobs))
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), len(tx.jobs)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				errs[i] = tx.build(&tx.jobs[i])
			}
		}()
	}
	for i := range tx.jobs {
		next <- i
	}
	close(next)
	wg.Wait()
	return errors.Join(errs...)
}

func (tx *txn) build(j *tableJob) error {
	if tx.d.badTable != "" && j.name == tx.d.badTable {
		m, err := badTableMap()
		j.sw.tables[j.idx] = m
		return err
	}
	ids, err := j.ids()
	if err != nil {
		return fmt.Errorf("service %s: %w", j.name, err)
	}
	m, err := tx.d.newTable(ids)
	if err != nil {
		return fmt.Errorf("service %s: %w", j.name, err)
	}
	j.sw.tables[j.idx] = m
	return nil
}

func (tx *txn) addEmpty(sw *tableSwitch, outer *ebpf.Map, svc uint32) error {
	m, err := tx.d.emptyTable()
	if err != nil {
		return err
	}
	sw.outer, sw.empty, sw.held = outer, m, tx.d.heldTables(outer)
	sw.add(svc, m)
	return nil
}

// planRemoval empties the tables of a service no longer configured and
// frees its backends; planKeys deletes its keys.
func (tx *txn) planRemoval(id uint32) error {
	st := tx.d.state.services[id]
	tx.mark(id)
	if err := tx.emptyTables(st); err != nil {
		return err
	}
	for _, bid := range st.backends {
		tx.free(bid)
	}
	tx.removed = append(tx.removed, id)
	return nil
}

// planKeys points every key at its service, writing only keys whose value
// changed, and deletes the keys no service has any more.
func (tx *txn) planKeys(services []Service, ids []uint32) error {
	d := tx.d
	tx.keyOld = map[bpfLbServiceKey]bpfLbService{}
	want := map[bpfLbServiceKey]bool{}
	for i := range services {
		st := d.state.services[ids[i]]
		val := bpfLbService{Id: st.id, Sched: uint8(st.sched)}
		keys := services[i].keys()
		for _, k := range keys {
			want[k] = true
			owner, ok := d.state.keyOwner[k]
			if ok && owner == st.id && slices.Contains(st.keys, k) {
				continue
			}
			if ok {
				tx.keyOld[k] = tx.oldKey(owner)
			}
			tx.putKeys = append(tx.putKeys, k)
			tx.putVals = append(tx.putVals, val)
			tx.mark(st.id)
		}
		st.keys = keys
	}
	for k, owner := range d.state.keyOwner {
		if !want[k] {
			tx.keyOld[k] = tx.oldKey(owner)
			tx.delKeys = append(tx.delKeys, k)
			tx.mark(owner)
		}
	}
	return nil
}

// commit writes the transaction. Until the keys are written every step is
// undone on failure; what follows only retires what no table or key
// names any more.
func (tx *txn) commit() error {
	if err := tx.buildTables(); err != nil {
		return fmt.Errorf("build tables: %w", err)
	}
	steps := []struct {
		name string
		run  func() error
	}{
		{"reset counters", tx.resetCounters},
		{"write backends", tx.writeBackends},
		{"switch tables", tx.switchTables},
		{"write service keys", tx.writeKeys},
	}
	for _, s := range steps {
		err := s.run()
		if err == nil {
			err = tx.d.fault(s.name)
		}
		if err != nil {
			return errors.Join(fmt.Errorf("%s: %w", s.name, err), tx.rollback())
		}
	}
	if err := tx.finish(); err != nil {
		return fmt.Errorf("%w: %w", ErrCommitted, err)
	}
	return nil
}

func (tx *txn) rollback() error {
	var errs []error
	for i := len(tx.undo) - 1; i >= 0; i-- {
		if err := tx.undo[i](); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("undo: %w", err)
	}
	return nil
}

// resetCounters zeroes the counters of fresh ids and records the highest
// cookie before any backend carries it. Nothing reads fresh ids yet, so
// this needs no undo.
func (tx *txn) resetCounters() error {
	d := tx.d
	if len(tx.newBes) > 0 {
		if err := d.persistCookie(d.state.cookie); err != nil {
			return err
		}
		if err := zeroPerCPU(d.objs.LbBeStats, tx.newBes); err != nil {
			return err
		}
	}
	if len(tx.newSvcs) > 0 {
		if err := zeroPerCPU(d.objs.LbSvcStats, tx.newSvcs); err != nil {
			return err
		}
		if _, err := d.objs.LbRrNext.BatchUpdate(tx.newSvcs, make([]uint32, len(tx.newSvcs)), nil); err != nil {
			return fmt.Errorf("reset round-robin positions: %w", err)
		}
	}
	return nil
}

func (tx *txn) writeBackends() error {
	if len(tx.beIDs) == 0 {
		return nil
	}
	n, err := tx.d.objs.LbBackends.BatchUpdate(tx.beIDs, tx.beVals, nil)
	tx.undo = append(tx.undo, func() error {
		if n == 0 {
			return nil
		}
		if _, err := tx.d.objs.LbBackends.BatchUpdate(tx.beIDs[:n], tx.beOld[:n], nil); err != nil {
			return fmt.Errorf("restore %d backends: %w", n, err)
		}
		return nil
	})
	return err
}

func (tx *txn) switchTables() error {
	for _, sw := range []*tableSwitch{&tx.maglev, &tx.rr} {
		err := sw.run()
		tx.undo = append(tx.undo, sw.undo)
		if err != nil {
			return err
		}
	}
	return nil
}

func (tx *txn) writeKeys() error {
	// New keys first, so that a VIP moving from an all-ports service to
	// port services (or back) is served by one or the other throughout;
	// but keys leaving first when the map has no room for both at once
	// (a configuration at the key limit exchanging ports): then a new
	// flow to a key that changes service passes for one system call.
	first, then := tx.putKeysNow, tx.delKeysNow
	if !tx.d.roomForKeys(tx.putKeys) {
		first, then = then, first
	}
	if err := first(); err != nil {
		return err
	}
	return then()
}

// roomForKeys reports whether the service map holds its keys and put at once.
func (d *Datapath) roomForKeys(put []bpfLbServiceKey) bool {
	n := len(d.state.keyOwner)
	for _, k := range put {
		if _, ok := d.state.keyOwner[k]; !ok {
			n++
		}
	}
	return n <= int(d.objs.LbServices.MaxEntries())
}

func (tx *txn) putKeysNow() error {
	if len(tx.putKeys) == 0 {
		return nil
	}
	n, err := tx.d.objs.LbServices.BatchUpdate(tx.putKeys, tx.putVals, nil)
	tx.undo = append(tx.undo, func() error { return tx.restoreKeys(tx.putKeys[:n]) })
	return err
}

func (tx *txn) delKeysNow() error {
	if len(tx.delKeys) == 0 {
		return nil
	}
	n, err := tx.d.objs.LbServices.BatchDelete(tx.delKeys, nil)
	tx.undo = append(tx.undo, func() error { return tx.restoreKeys(tx.delKeys[:n]) })
	return err
}

// restoreKeys gives keys their values from before the transaction,
// deleting those that had none.
func (tx *txn) restoreKeys(keys []bpfLbServiceKey) error {
	var put []bpfLbServiceKey
	var vals []bpfLbService
	var del []bpfLbServiceKey
	for _, k := range keys {
		if v, ok := tx.keyOld[k]; ok {
			put, vals = append(put, k), append(vals, v)
		} else {
			del = append(del, k)
		}
	}
	m := tx.d.objs.LbServices
	if len(put) > 0 {
		if _, err := m.BatchUpdate(put, vals, nil); err != nil {
			return fmt.Errorf("restore %d service keys: %w", len(put), err)
		}
	}
	if len(del) > 0 {
		if _, err := m.BatchDelete(del, nil); err != nil {
			return fmt.Errorf("delete %d service keys: %w", len(del), err)
		}
	}
	return nil
}

// finish marks backends that left "up", frees removed ones and releases
// their ids, now that no table or key refers to them.
func (tx *txn) finish() error {
	d := tx.d
	for i, k := range tx.putKeys {
		d.state.keyOwner[k] = tx.putVals[i].Id
	}
	for _, k := range tx.delKeys {
		delete(d.state.keyOwner, k)
	}
	if len(tx.finIDs) > 0 {
		if _, err := d.objs.LbBackends.BatchUpdate(tx.finIDs, tx.finVals, nil); err != nil {
			return fmt.Errorf("write final backend states: %w", err)
		}
	}
	for _, id := range tx.freed {
		delete(d.state.backends, id)
		d.state.beIDs.free(id)
	}
	for _, id := range tx.removed {
		delete(d.state.services, id)
		d.state.svcIDs.free(id)
	}
	return d.fault("finish")
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
					s.Name, s.VIP, s.Proto, netorder.Htons(k.Port), other)
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
