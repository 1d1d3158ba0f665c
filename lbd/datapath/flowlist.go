package datapath

import (
	"net/netip"
	"time"

	"github.com/dsrlb/dsrlb/internal/netorder"
)

// TrackedFlow is one conntrack entry that still decides its flow's backend.
type TrackedFlow struct {
	Flow Flow
	// ServiceVIP, ServiceProto and ServicePorts identify the service of
	// the backend (names live in the configuration).
	ServiceVIP   netip.Addr
	ServiceProto Proto
	ServicePorts []uint16
	Backend      netip.Addr
	State        CTState
	Idle         time.Duration // since the flow's last packet
}

// TrackedFlows lists up to limit live conntrack entries (those that still
// decide their flow's backend, see ActiveFlows), in map order, and how
// many live entries there are in all. It walks the whole map.
func (d *Datapath) TrackedFlows(limit int) ([]TrackedFlow, int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var (
		be    bpfLbBackend
		out   []TrackedFlow
		total int
	)
	now := monotonicNow()
	err := d.eachFlow(func(key bpfLbFlow, ct *bpfLbCtEntry) { // both families (ctmaps.go)
		proto := Proto(key.Proto)
		if !d.ctLive(proto, ct, now) {
			return
		}
		if err := d.objs.LbBackends.Lookup(ct.BackendId, &be); err != nil || be.Cookie != ct.Cookie ||
			(State(be.State) != Up && State(be.State) != Drain) {
			return
		}
		b := d.state.backends[ct.BackendId]
		if b == nil {
			return
		}
		total++
		if len(out) >= limit {
			return
		}
		f := TrackedFlow{
			Flow: Flow{Proto: proto,
				Src: netip.AddrPortFrom(netip.AddrFrom16(key.Saddr.B).Unmap(), netorder.Htons(key.Sport)),
				Dst: netip.AddrPortFrom(netip.AddrFrom16(key.Daddr.B).Unmap(), netorder.Htons(key.Dport))},
			Backend: b.addr, State: CTState(ct.State),
		}
		if int64(now-ct.LastSeenNs) > 0 {
			f.Idle = time.Duration(now - ct.LastSeenNs)
		}
		if s := d.state.services[b.svc]; s != nil {
			f.ServiceVIP, f.ServiceProto, f.ServicePorts = s.vip, s.proto, s.ports
		}
		out = append(out, f)
	})
	if err != nil {
		return nil, 0, err
	}
	return out, total, nil
}

// TrackedFlows lists live conntrack entries. See Datapath.TrackedFlows.
func (r *Reader) TrackedFlows(limit int) ([]TrackedFlow, int, error) { return r.d.TrackedFlows(limit) }
