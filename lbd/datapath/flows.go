package datapath

import "fmt"

// ActiveFlows counts, per backend, the conntrack entries that still decide
// their flow's backend (within their idle timeout, backend slot not reused,
// backend up or draining). It walks the whole conntrack map, so it is for
// `lbd status`, not for every metrics scrape. The counts are filled into
// st's BackendStats.
func (d *Datapath) ActiveFlows(st *Stats) error {
	d.mu.Lock()
	counts := map[uint32]uint64{}
	var (
		key bpfLbFlow
		ct  bpfLbCtEntry
		be  bpfLbBackend
	)
	now := monotonicNow()
	cookies := map[uint32]*bpfLbBackend{}
	it := d.objs.LbConntrack.Iterate()
	for it.Next(&key, &ct) {
		timeout := d.opts.UDPTimeout
		if Proto(key.Proto) == TCP {
			timeout = d.opts.TCPTimeout
		}
		if now-ct.LastSeenNs > uint64(timeout) {
			continue
		}
		b, ok := cookies[ct.BackendId]
		if !ok {
			if err := d.objs.LbBackends.Lookup(ct.BackendId, &be); err == nil {
				cp := be
				b = &cp
			}
			cookies[ct.BackendId] = b
		}
		if b != nil && b.Cookie == ct.Cookie && (State(b.State) == Up || State(b.State) == Drain) {
			counts[ct.BackendId]++
		}
	}
	err := it.Err()
	byAddr := map[uint32]map[[16]byte]uint64{} // service id -> backend address -> flows
	for id, n := range counts {
		if b := d.state.backends[id]; b != nil {
			if byAddr[b.svc] == nil {
				byAddr[b.svc] = map[[16]byte]uint64{}
			}
			byAddr[b.svc][b.addr.As16()] += n
		}
	}
	svcByKey := map[string]uint32{}
	for id, s := range d.state.services {
		svcByKey[s.vip.String()+"/"+s.proto.String()+fmt.Sprint(s.ports)] = id
	}
	d.mu.Unlock()
	if err != nil {
		return fmt.Errorf("walk conntrack: %w", err)
	}
	for i := range st.Services {
		s := &st.Services[i]
		flows := byAddr[svcByKey[s.VIP.String()+"/"+s.Proto.String()+fmt.Sprint(s.Ports)]]
		for j := range s.Backends {
			s.Backends[j].ActiveFlows = flows[s.Backends[j].Addr.As16()]
		}
	}
	return nil
}
