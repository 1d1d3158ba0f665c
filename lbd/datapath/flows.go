package datapath

import (
	"errors"
	"fmt"
	"time"

	"github.com/cilium/ebpf"
)

// CTState is the state of a tracked flow, from the client's half of the
// connection (the balancer never sees the server's packets), as IPVS
// tracks connections for direct routing.
type CTState uint8

// Conntrack states; values are the C enum lb_ct_state.
const (
	// Established: TCP after the handshake's ACK, and every UDP flow. Active.
	Established = CTState(bpfLbCtStateLB_CT_ESTABLISHED)
	// SynSeen: a TCP SYN, no ACK yet. Inactive.
	SynSeen = CTState(bpfLbCtStateLB_CT_SYN_SEEN)
	// Closing: the client sent a FIN. Inactive.
	Closing = CTState(bpfLbCtStateLB_CT_CLOSING)
	// Closed: the client sent a RST. Inactive.
	Closed = CTState(bpfLbCtStateLB_CT_CLOSED)
)

func (s CTState) String() string {
	switch s {
	case Established:
		return "established"
	case SynSeen:
		return "syn_seen"
	case Closing:
		return "closing"
	case Closed:
		return "closed"
	}
	return fmt.Sprintf("ct_state(%d)", uint8(s))
}

// ctTimeout mirrors lb_ct_timeout.
func (d *Datapath) ctTimeout(proto Proto, state CTState) time.Duration {
	switch {
	case proto != TCP:
		return d.opts.UDPTimeout
	case state == Established:
		return d.opts.TCPTimeout
	}
	return d.opts.TCPClosingTimeout
}

// ctLive mirrors the age check of lb_ct_lookup.
func (d *Datapath) ctLive(proto Proto, ct *bpfLbCtEntry, now uint64) bool {
	// Signed, as the program: an entry may be a tick younger than now.
	return int64(now-ct.LastSeenNs) < int64(d.ctTimeout(proto, CTState(ct.State)))
}

// ActiveFlows counts, per backend, the conntrack entries that still decide
// their flow's backend (within their timeout, backend slot not reused,
// backend up or draining): established ones as ActiveFlows, the others
// (TCP SYN seen, closing after a client FIN, closed after a RST) as
// InactiveFlows, as IPVS's ActiveConn and InActConn. It walks the whole
// conntrack map (about a second for a default one 90 % full), without
// holding up data plane updates. The counts are filled into st's
// BackendStats.
func (d *Datapath) ActiveFlows(st *Stats) error {
	perID, err := d.flowsPerBackend()
	if err != nil {
		return err
	}
	d.mu.Lock()
	byAddr := map[uint32]map[[16]byte]flowCounts{} // service id -> backend address -> flows
	for at, n := range perID {
		// The same cookie: the id was not given to another backend
		// since the walk read it.
		if b := d.state.backends[at.id]; b != nil && b.cookie == at.cookie {
			if byAddr[b.svc] == nil {
				byAddr[b.svc] = map[[16]byte]flowCounts{}
			}
			c := byAddr[b.svc][b.addr.As16()]
			c.active += n.active
			c.inactive += n.inactive
			byAddr[b.svc][b.addr.As16()] = c
		}
	}
	svcByKey := map[string]uint32{}
	for id, s := range d.state.services {
		svcByKey[s.vip.String()+"/"+s.proto.String()+fmt.Sprint(s.ports)] = id
	}
	d.mu.Unlock()
	for i := range st.Services {
		s := &st.Services[i]
		flows := byAddr[svcByKey[s.VIP.String()+"/"+s.Proto.String()+fmt.Sprint(s.Ports)]]
		for j := range s.Backends {
			c := flows[s.Backends[j].Addr.As16()]
			s.Backends[j].ActiveFlows, s.Backends[j].InactiveFlows = c.active, c.inactive
		}
	}
	return nil
}

type flowCounts struct{ active, inactive uint64 }

// backendAt is a backend id with the cookie it had when counted.
type backendAt struct{ id, cookie uint32 }

// flowsPerBackend counts the live entries of each backend id (see
// ActiveFlows). It walks on its own descriptors of the maps, without d.mu:
// the walk takes about a microsecond an entry, and an Apply (a health
// change, a reload) waiting that long behind it would be late by seconds.
func (d *Datapath) flowsPerBackend() (map[backendAt]flowCounts, error) {
	d.mu.Lock()
	ct4, err4 := d.objs.LbCt4.Clone()
	other, err6 := d.objs.LbConntrack.Clone()
	bes, errb := d.objs.LbBackends.Clone()
	d.mu.Unlock()
	defer func() { ct4.Close(); other.Close(); bes.Close() }() // nil-safe
	if err := errors.Join(err4, err6, errb); err != nil {
		return nil, fmt.Errorf("walk conntrack: %w", err)
	}
	perID := map[backendAt]flowCounts{}
	now := monotonicNow()
	cookies := map[uint32]*bpfLbBackend{}
	var be bpfLbBackend
	err := eachFlowIn(ct4, other, func(key bpfLbFlow, ct *bpfLbCtEntry) {
		if !d.ctLive(Proto(key.Proto), ct, now) { // d.opts: set at Open, never written after
			return
		}
		b, ok := cookies[ct.BackendId]
		if !ok {
			if err := bes.Lookup(ct.BackendId, &be); err == nil {
				cp := be
				b = &cp
			}
			cookies[ct.BackendId] = b
		}
		if b == nil || b.Cookie != ct.Cookie || (State(b.State) != Up && State(b.State) != Drain) {
			return
		}
		at := backendAt{ct.BackendId, ct.Cookie}
		c := perID[at]
		if CTState(ct.State) == Established {
			c.active++
		} else {
			c.inactive++
		}
		perID[at] = c
	})
	return perID, err
}

// purgeUnserved deletes the conntrack entries of flows no service takes any
// more, when Apply removed a service key that was in before. The program
// honours a valid entry without looking the service up (one hash lookup
// per packet instead of two), so without this a port removed from a
// service that keeps its backends would still be forwarded until idle.
// No entry for such a flow is created after its key is gone (creating one
// needs the service), except from a SYN's choice pending in the flow cache
// (a late-tracked flow, bpf/lib/sched.h): the cache generation is bumped
// before the walk, so that no such choice is committed after it. Called
// with d.mu held.
func (d *Datapath) purgeUnserved(before map[bpfLbServiceKey]uint32) error {
	removed := false
	for k := range before {
		if _, ok := d.state.keyOwner[k]; !ok {
			removed = true
			break
		}
	}
	if !removed {
		return nil
	}
	if err := d.fault("purge"); err != nil {
		return err
	}
	if err := d.invalidateFlowCache(); err != nil {
		return err
	}
	var dead []bpfLbFlow
	err := d.eachFlow(func(key bpfLbFlow, _ *bpfLbCtEntry) {
		k := bpfLbServiceKey{Vip: key.Daddr, Port: key.Dport, Proto: key.Proto}
		if _, ok := d.state.keyOwner[k]; ok {
			return
		}
		k.Port = 0
		if _, ok := d.state.keyOwner[k]; !ok {
			dead = append(dead, key)
		}
	})
	if err != nil {
		return err
	}
	for _, k := range dead {
		err := d.ctDelete(k)
		if err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("delete conntrack entry of a removed service: %w", err)
		}
		if err == nil {
			d.purged++
		}
	}
	if len(dead) == 0 {
		return nil
	}
	return d.invalidateFlowCache()
}

// ConntrackStats is the flow table's churn since its map was created.
type ConntrackStats struct {
	Entries  uint64 // entries present (any state, expired ones too)
	Inserted uint64 // entries created by the program for new flows
	Renewed  uint64 // stale entries a new flow of the same 5-tuple reused in place
	Dropped  uint64 // stale entries the program deleted
	// Evicted are entries the kernel's LRU dropped to make room for new
	// ones: Inserted - Dropped - Entries - what lbd deleted itself
	// (removed services; counted by this process only). An estimate when
	// two CPUs insert one flow at once (counted twice, stored once).
	Evicted uint64
}

// ConntrackStats counts the conntrack entries (ConntrackEntries: about a
// microsecond an entry, without holding up data plane updates).
func (d *Datapath) ConntrackStats() (ConntrackStats, error) {
	entries, err := d.ConntrackEntries()
	if err != nil {
		return ConntrackStats{}, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	var per []bpfLbCtCounters
	if err := d.objs.LbCtStats.Lookup(uint32(0), &per); err != nil {
		return ConntrackStats{}, fmt.Errorf("read conntrack counters: %w", err)
	}
	s := ConntrackStats{Entries: entries}
	for _, p := range per {
		s.Inserted += p.Inserted
		s.Renewed += p.Renewed
		s.Dropped += p.Dropped
	}
	if gone := s.Dropped + s.Entries + d.purged; s.Inserted > gone {
		s.Evicted = s.Inserted - gone
	}
	return s, nil
}
