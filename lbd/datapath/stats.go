package datapath

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"

	"github.com/cilium/ebpf"
)

// Counters are summed over CPUs. Packets count GRO segments.
type Counters struct {
	Packets   uint64
	Bytes     uint64
	NewFlows  uint64 // flows scheduled: a SYN without ACK, a UDP packet without an entry
	NoBackend uint64 // service packets passed for lack of a usable backend
}

// Stats is a snapshot of every counter.
type Stats struct {
	Reasons  map[Reason]Counters // every packet the program saw, by verdict reason
	Services []ServiceStats      // forwarded traffic, in service id order
}

// ServiceStats are the counters of one service and its backends.
type ServiceStats struct {
	Name     string
	VIP      netip.Addr
	Proto    Proto
	Ports    []uint16
	Counters Counters
	Backends []BackendStats
}

// BackendStats are the counters of one backend.
type BackendStats struct {
	Name  string
	Addr  netip.Addr
	MAC   net.HardwareAddr
	State State
	// Weight as last applied by this process; a process that adopted the
	// maps does not know it (the program never reads it) and reports 0.
	Weight   uint32
	Counters Counters
	// ActiveFlows (established) and InactiveFlows (TCP SYN seen, closing,
	// closed) are filled by ActiveFlows, not by Stats: it walks conntrack.
	ActiveFlows   uint64
	InactiveFlows uint64
}

// Stats reads every counter.
func (d *Datapath) Stats() (Stats, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	st := Stats{Reasons: map[Reason]Counters{}}
	for _, r := range Reasons() {
		if uint32(r) >= d.objs.LbGlobalStats.MaxEntries() {
			continue // pinned by an lbd that had fewer reasons: none counted
		}
		c, err := sumCounters(d.objs.LbGlobalStats, uint32(r))
		if err != nil {
			return Stats{}, err
		}
		st.Reasons[r] = c
	}
	ids := make([]uint32, 0, len(d.state.services))
	for id := range d.state.services {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	read := sumCounters
	if len(d.state.backends) > batchStatsFrom {
		all, err := d.allCounters()
		if err != nil {
			return Stats{}, err
		}
		read = func(m *ebpf.Map, key uint32) (Counters, error) { return all[m][key], nil }
	}
	for _, id := range ids {
		ss, err := d.serviceStats(d.state.services[id], read)
		if err != nil {
			return Stats{}, err
		}
		st.Services = append(st.Services, ss)
	}
	return st, nil
}

func (d *Datapath) serviceStats(s *svcState, read func(*ebpf.Map, uint32) (Counters, error)) (ServiceStats, error) {
	c, err := read(d.objs.LbSvcStats, s.id)
	if err != nil {
		return ServiceStats{}, err
	}
	ss := ServiceStats{Name: s.name, VIP: s.vip, Proto: s.proto, Ports: slices.Clone(s.ports), Counters: c}
	bids := make([]uint32, 0, len(s.backends))
	for _, id := range s.backends {
		bids = append(bids, id)
	}
	slices.Sort(bids)
	for _, id := range bids {
		b := d.state.backends[id]
		c, err := read(d.objs.LbBeStats, id)
		if err != nil {
			return ServiceStats{}, err
		}
		ss.Backends = append(ss.Backends, BackendStats{Name: b.name, Addr: b.addr,
			MAC: slices.Clone(b.mac), State: b.state, Weight: b.weight, Counters: c})
	}
	return ss, nil
}

func sumCounters(m *ebpf.Map, key uint32) (Counters, error) {
	var per []bpfLbCounters
	if err := m.Lookup(key, &per); err != nil {
		return Counters{}, fmt.Errorf("read counters %s[%d]: %w", m, key, err)
	}
	var c Counters
	for _, p := range per {
		c.Packets += p.Packets
		c.Bytes += p.Bytes
		c.NewFlows += p.NewFlows
		c.NoBackend += p.NoBackend
	}
	return c, nil
}

// batchStatsFrom is the number of backends above which Stats reads the
// counter arrays whole, by batch lookups, rather than one entry per call:
// 10,000 backends cost 10,000 calls (an adopting lbd reads them at start).
const batchStatsFrom = 256

// allCounters reads every entry of the service and backend counters.
func (d *Datapath) allCounters() (map[*ebpf.Map][]Counters, error) {
	ncpu, err := ebpf.PossibleCPU()
	if err != nil {
		return nil, fmt.Errorf("count CPUs: %w", err)
	}
	out := map[*ebpf.Map][]Counters{}
	for _, m := range []*ebpf.Map{d.objs.LbSvcStats, d.objs.LbBeStats} {
		sums := make([]Counters, m.MaxEntries())
		const chunk = 4096
		keys := make([]uint32, chunk)
		vals := make([]bpfLbCounters, chunk*ncpu)
		var cursor ebpf.MapBatchCursor
		for {
			n, err := m.BatchLookup(&cursor, keys, vals, nil)
			for i := range n {
				c := &sums[keys[i]]
				for _, p := range vals[i*ncpu : (i+1)*ncpu] {
					c.Packets += p.Packets
					c.Bytes += p.Bytes
					c.NewFlows += p.NewFlows
					c.NoBackend += p.NoBackend
				}
			}
			if errors.Is(err, ebpf.ErrKeyNotExist) {
				break
			}
			if err != nil {
				return nil, fmt.Errorf("read counters %s: %w", m, err)
			}
		}
		out[m] = sums
	}
	return out, nil
}
