package daemon

import (
	"net"
	"net/netip"
	"time"

	"github.com/dsrlb/dsrlb/lbd/datapath"
	"github.com/dsrlb/dsrlb/lbd/health"
	"github.com/dsrlb/dsrlb/shared/config"
)

// observed is what the daemon knows about the backends besides the
// configuration: health and neighbour resolution, and the operator's
// transient settings (lbd set, admin.go).
type observed struct {
	health map[string]health.State         // by health.Key(service, server)
	macs   map[netip.Addr]net.HardwareAddr // resolved MACs; static ones come from the config
	admin  map[string]adminSetting         // by health.Key; nil: none
	// fresh is when a start that found no pinned data plane began (zero
	// otherwise): its primaries start down, and fallbacks wait for them
	// to have had their rise checks (fallbackHeld).
	fresh time.Time
	// checkWhy is the error of a down backend's last failed check (e.g.
	// "VIP ... not answered ...: is hostprep applied (VIP on lo)?"), by key.
	checkWhy map[string]string
}

// why tells, for one backend, what kept it out of rotation ("" when nothing).
type why map[string]string

// desired turns the configuration and what was observed into the data
// plane's services. A backend is Down when its checks fail (Drain with
// on_failure: drain) or when it has no MAC (a frame cannot be addressed to
// it); weight 0 is Drain. lbd set drain is Drain and maint is Down, and a
// weight set there replaces the configured one. Fallback servers stand by
// (Drain: flows they hold stay) while any primary takes new flows.
func desired(cfg *config.Config, obs observed) ([]datapath.Service, why) {
	reasons := why{}
	out := make([]datapath.Service, 0, len(cfg.Services))
	for i := range cfg.Services {
		s := &cfg.Services[i]
		svc := datapath.Service{
			Name:      s.Name,
			VIP:       s.VIP,
			Proto:     protoOf(s.Protocol),
			Ports:     s.Ports,
			Scheduler: schedulerOf(s.Balance),
		}
		for j := range s.Servers {
			b, r := backendOf(s, &s.Servers[j], obs)
			if r != "" {
				reasons[health.Key(s.Name, b.Name)] = r
			}
			svc.Backends = append(svc.Backends, b)
		}
		standBy(s, svc.Backends, reasons, fallbackHeld(s, obs.fresh))
		out = append(out, svc)
	}
	return out, reasons
}

// backendOf is one server's backend and why it is not up ("" when it is).
func backendOf(s *config.Service, srv *config.Server, obs observed) (datapath.Backend, string) {
	key := health.Key(s.Name, srv.Name)
	set := obs.admin[key]
	b := datapath.Backend{Name: srv.Name, Addr: srv.Address, Weight: srv.Weight, MAC: srv.MAC, State: datapath.Up}
	if set.Weight != nil {
		b.Weight = *set.Weight
	}
	if b.MAC == nil {
		b.MAC = obs.macs[srv.Address]
	}
	failing := obs.health[key] != health.Up
	var r string
	switch {
	case b.MAC == nil:
		b.State, r = datapath.Down, "no MAC: "+srv.Address.String()+" does not answer ARP/ND on the balancer interface"
	case set.State == adminMaint:
		b.State, r = datapath.Down, reasonMaint
	case failing && s.OnFailure == config.FailDrain:
		b.State, r = datapath.Drain, drainReason(obs.checkWhy[key])
	case failing:
		b.State, r = datapath.Down, checkReason(obs.checkWhy[key])
	case set.State == adminDrain:
		b.State, r = datapath.Drain, reasonDrain
	case b.Weight == 0 && set.Weight != nil:
		b.State, r = datapath.Drain, "weight 0 (admin): draining"
	case b.Weight == 0:
		b.State, r = datapath.Drain, "weight 0: draining"
	}
	return b, r
}

// Reasons shown for lbd set's states (lbd status matches them).
const (
	reasonDrain    = "drain (admin)"
	reasonMaint    = "maint (admin)"
	reasonStandby  = "fallback standing by: a primary server takes new flows"
	reasonHeld     = "fallback standing by: lbd just started, the primary servers' checks are rising"
	fallbackActive = "fallback active: no primary server takes new flows"
)

// standBy keeps the fallbacks of s (the backends after its primaries) out
// of new flows while a primary takes them: an up fallback becomes Drain,
// so flows it took while it was needed finish there (HAProxy's backup
// servers do the same) rather than break by moving to a primary.
func standBy(s *config.Service, bs []datapath.Backend, reasons why, held bool) {
	n := s.Primaries()
	if n == len(bs) {
		return
	}
	reason := reasonStandby
	switch {
	case primaryUsable(bs[:n]):
	case held:
		reason = reasonHeld
	default:
		return
	}
	for i := n; i < len(bs); i++ {
		if bs[i].State == datapath.Up {
			bs[i].State = datapath.Drain
			reasons[health.Key(s.Name, bs[i].Name)] = reason
		}
	}
}

// fallbackHeld reports whether, after a fresh start at fresh, the
// primaries of s may still be rising: every server starts down until rise
// checks pass, and a fallback that passed its checks first would take the
// new flows meanwhile (and keep them: it drains when a primary is up).
func fallbackHeld(s *config.Service, fresh time.Time) bool {
	return !fresh.IsZero() && time.Since(fresh) < fallbackGrace(s)
}

// fallbackGrace is how long a fresh start keeps the fallbacks of s
// standing by: the time the primaries' rise checks take, and a second.
func fallbackGrace(s *config.Service) time.Duration {
	if s.Check.Type == config.CheckNone {
		return 0
	}
	return s.Check.Interval*time.Duration(s.Check.Rise) + s.Check.Timeout + time.Second
}

// primaryUsable reports whether one of the primaries takes new flows.
func primaryUsable(primaries []datapath.Backend) bool {
	for _, b := range primaries {
		if b.State == datapath.Up && b.Weight > 0 {
			return true
		}
	}
	return false
}

// FallbackActive reports whether the fallbacks of s take the new flows:
// none of its primaries is up in svc (its data plane service, in
// configuration order) and a fallback is.
func FallbackActive(s *config.Service, svc datapath.Service) bool {
	n := s.Primaries()
	if n == len(s.Servers) || len(svc.Backends) <= n {
		return false
	}
	return !primaryUsable(svc.Backends[:n]) && primaryUsable(svc.Backends[n:])
}

func protoOf(p config.Protocol) datapath.Proto {
	if p == config.UDP {
		return datapath.UDP
	}
	return datapath.TCP
}

func schedulerOf(b config.Balance) datapath.Scheduler {
	switch b {
	case config.RoundRobin:
		return datapath.RoundRobin
	case config.Source:
		return datapath.Source
	}
	return datapath.Maglev
}

// healthTargets lists the health checks the configuration asks for. initial
// gives the state a new target starts in: what the pinned data plane says,
// so a restart keeps healthy backends in rotation.
func healthTargets(cfg *config.Config, initial func(service string, addr netip.Addr) health.State) []health.Target {
	ts := make([]health.Target, 0, cfg.ServerCount())
	eachTarget(cfg, func(s *config.Service, srv *config.Server, t health.Target) {
		t.Initial = initial(s.Name, srv.Address)
		ts = append(ts, t)
	})
	return ts
}

// eachTarget calls f with the health target of every server of cfg, its
// Initial state left to f.
func eachTarget(cfg *config.Config, f func(*config.Service, *config.Server, health.Target)) {
	for i := range cfg.Services {
		s := &cfg.Services[i]
		for j := range s.Servers {
			srv := &s.Servers[j]
			chk := s.Check
			if !srv.Check {
				chk.Type, chk.Via = config.CheckNone, ""
			}
			if srv.CheckAddress.IsValid() && chk.Via == config.ViaVIP {
				// A check sent to another address than the server's
				// (a management address) cannot go the DSR path, which
				// frames to the server's own MAC.
				chk.Via = config.ViaAddress
			}
			f(s, srv, health.Target{
				Key:   health.Key(s.Name, srv.Name),
				Addr:  srv.CheckTarget(&chk), // check_address, check_port
				Check: chk,
				VIP:   s.VIP,
				MAC:   staticMAC(srv.MAC),
			})
		}
	}
}

// targetSet is the targets of one health.Manager.Update, indexed by key
// (by position: a map of whole targets allocates each one).
type targetSet struct {
	list  []health.Target
	index map[string]int
}

func newTargetSet(ts []health.Target) targetSet {
	s := targetSet{list: ts, index: make(map[string]int, len(ts))}
	for i, t := range ts {
		s.index[t.Key] = i
	}
	return s
}

func (s *targetSet) add(t health.Target) {
	s.index[t.Key] = len(s.list)
	s.list = append(s.list, t)
}

func (s *targetSet) get(key string) (health.Target, bool) {
	i, ok := s.index[key]
	if !ok {
		return health.Target{}, false
	}
	return s.list[i], true
}
