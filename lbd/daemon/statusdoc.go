package daemon

import (
	"net"
	"slices"
	"time"

	"github.com/dsrlb/dsrlb/lbd/bgp"
	"github.com/dsrlb/dsrlb/lbd/datapath"
	"github.com/dsrlb/dsrlb/lbd/statusjson"
	"github.com/dsrlb/dsrlb/shared/config"
)

// StatusServices turns data plane stats (named, active flows counted) into
// the services of the status schema; the scheduler comes from cfg, matched
// by service name.
func StatusServices(cfg *config.Config, st datapath.Stats) []statusjson.Service {
	sched := map[string]string{}
	conf := map[string]*config.Service{}
	if cfg != nil {
		for i, s := range cfg.Services {
			sched[s.Name] = string(s.Balance)
			conf[s.Name] = &cfg.Services[i]
		}
	}
	out := make([]statusjson.Service, 0, len(st.Services))
	for _, s := range st.Services {
		svc := statusjson.Service{Name: s.Name, VIP: s.VIP.String(), Protocol: s.Proto.String(),
			Ports: slices.Clone(s.Ports), Scheduler: sched[s.Name], Counters: statusCounters(s.Counters),
			Backends: make([]statusjson.Backend, 0, len(s.Backends))}
		if svc.Ports == nil {
			svc.Ports = []uint16{}
		}
		for _, b := range s.Backends {
			svc.ActiveFlows += b.ActiveFlows
			svc.InactiveFlows += b.InactiveFlows
			svc.Backends = append(svc.Backends, statusjson.Backend{Name: b.Name, Address: b.Addr.String(),
				MAC: macText(b.MAC), State: b.State.String(), Weight: b.Weight, ActiveFlows: b.ActiveFlows,
				InactiveFlows: b.InactiveFlows, Counters: statusCounters(b.Counters)})
		}
		markFallbacks(conf[s.Name], &svc) // admin.go
		out = append(out, svc)
	}
	return out
}

// StatusVerdicts are the packets counted per verdict reason.
func StatusVerdicts(st datapath.Stats) map[string]uint64 {
	v := make(map[string]uint64, len(st.Reasons))
	for r, c := range st.Reasons {
		v[r.String()] = c.Packets
	}
	return v
}

// StatusConntrack converts conntrack counters.
func StatusConntrack(ct datapath.ConntrackStats, limit uint64) *statusjson.Conntrack {
	return &statusjson.Conntrack{Entries: ct.Entries, Limit: limit, Inserted: ct.Inserted, Renewed: ct.Renewed, Dropped: ct.Dropped, Evicted: ct.Evicted}
}

// StatusBGP converts the speaker's status.
func StatusBGP(asn uint32, bs bgp.Status) *statusjson.BGP {
	out := &statusjson.BGP{ASN: asn, Running: true, Peers: []statusjson.BGPPeer{}, Announced: []string{}}
	if bs.RouterID.IsValid() {
		out.RouterID = bs.RouterID.String()
	}
	for _, p := range bs.Peers {
		sp := statusjson.BGPPeer{Address: p.Address.String(), ASN: p.ASN, Up: p.Up, State: p.State, Advertised: p.Advertised}
		if !p.Since.IsZero() {
			since := p.Since.UTC()
			sp.Since = &since
		}
		out.Peers = append(out.Peers, sp)
	}
	for _, v := range bs.Announced {
		out.Announced = append(out.Announced, v.String())
	}
	return out
}

func statusCounters(c datapath.Counters) statusjson.Counters {
	return statusjson.Counters{Packets: c.Packets, Bytes: c.Bytes, NewFlows: c.NewFlows, NoBackend: c.NoBackend}
}

// macText writes a MAC as aa:bb:cc:dd:ee:ff, "" when unknown.
func macText(m net.HardwareAddr) string {
	if len(m) == 0 {
		return ""
	}
	return m.String()
}

// rateOf is the per-second change of a counter over dt; a counter that
// went back (maps re-created) gives 0.
func rateOf(now, before uint64, dt time.Duration) float64 {
	if now < before || dt <= 0 {
		return 0
	}
	return float64(now-before) / dt.Seconds()
}

// StatusUntaken is the document's list of the VIPs awaiting a retry
// (never nil); running says an lbd runs to retry them, else NextTry is
// left out.
func StatusUntaken(us []VIPUntaken, running bool) []statusjson.VIPUntaken {
	out := []statusjson.VIPUntaken{}
	for _, u := range us {
		su := statusjson.VIPUntaken{VIP: u.VIP.String(), Error: u.Error, Since: u.Since}
		if running {
			next := u.NextTry
			su.NextTry = &next
		}
		out = append(out, su)
	}
	return out
}
