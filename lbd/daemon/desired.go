package daemon

import (
	"net"
	"net/netip"

	"github.com/dsrlb/dsrlb/lbd/datapath"
	"github.com/dsrlb/dsrlb/lbd/health"
	"github.com/dsrlb/dsrlb/shared/config"
)

// observed is what the daemon knows about the backends besides the
// configuration: health and neighbour resolution.
type observed struct {
	health map[string]health.State         // by health.Key(service, server)
	macs   map[netip.Addr]net.HardwareAddr // resolved MACs; static ones come from the config
	// checkWhy is the error of a down backend's last failed check (e.g.
	// "VIP ... not answered ...: is hostprep applied (VIP on lo)?"), by key.
	checkWhy map[string]string
}

// why tells, for one backend, what kept it out of rotation ("" when nothing).
type why map[string]string

// desired turns the configuration and what was observed into the data
// plane's services. A backend is Down when its checks fail or when it has no
// MAC (a frame cannot be addressed to it); weight 0 is Drain.
func desired(cfg *config.Config, obs observed) ([]datapath.Service, why) {
	reasons := why{}
	out := make([]datapath.Service, 0, len(cfg.Services))
	for _, s := range cfg.Services {
		svc := datapath.Service{
			Name:      s.Name,
			VIP:       s.VIP,
			Proto:     protoOf(s.Protocol),
			Ports:     s.Ports,
			Scheduler: schedulerOf(s.Balance),
		}
		for _, srv := range s.Servers {
			key := health.Key(s.Name, srv.Name)
			b := datapath.Backend{Name: srv.Name, Addr: srv.Address, Weight: srv.Weight, MAC: srv.MAC, State: datapath.Up}
			if b.MAC == nil {
				b.MAC = obs.macs[srv.Address]
			}
			switch {
			case b.MAC == nil:
				b.State = datapath.Down
				reasons[key] = "no MAC: " + srv.Address.String() + " does not answer ARP/ND on the balancer interface"
			case obs.health[key] != health.Up:
				b.State = datapath.Down
				reasons[key] = checkReason(obs.checkWhy[key])
			case srv.Weight == 0:
				b.State = datapath.Drain
				reasons[key] = "weight 0: draining"
			}
			svc.Backends = append(svc.Backends, b)
		}
		out = append(out, svc)
	}
	return out, reasons
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
				chk.Type = config.CheckNone
			}
			f(s, srv, health.Target{
				Key:   health.Key(s.Name, srv.Name),
				Addr:  netip.AddrPortFrom(srv.Address, chk.Port),
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
