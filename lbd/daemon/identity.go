package daemon

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/dsrlb/dsrlb/lbd/datapath"
	"github.com/dsrlb/dsrlb/shared/config"
)

// Identity is the one mapping from what the pinned maps hold to the
// configuration's names. The maps know a service by (VIP, protocol,
// ports) and a backend by its address within the service; names live only
// in the configuration. lbd run uses it to adopt a pinned data plane, lbd
// status and lbd flows to name what they read.
type Identity struct {
	services map[serviceID]*config.Service
	cfg      *config.Config
}

type serviceID struct {
	vip   netip.Addr
	proto datapath.Proto
	ports string // sorted, as text: the same set in any order is one service
}

func idOf(vip netip.Addr, proto datapath.Proto, ports []uint16) serviceID {
	ps := slices.Clone(ports)
	slices.Sort(ps)
	return serviceID{vip, proto, fmt.Sprint(ps)}
}

// IdentityOf indexes cfg's services by what identifies them in the maps.
func IdentityOf(cfg *config.Config) Identity {
	id := Identity{services: make(map[serviceID]*config.Service, len(cfg.Services)), cfg: cfg}
	for i := range cfg.Services {
		s := &cfg.Services[i]
		k := idOf(s.VIP, protoOf(s.Protocol), s.Ports)
		if _, dup := id.services[k]; !dup {
			id.services[k] = s
		}
	}
	return id
}

// Service is the configured service a pinned one (VIP, protocol, ports)
// is, nil when the configuration has none.
func (id Identity) Service(vip netip.Addr, proto datapath.Proto, ports []uint16) *config.Service {
	return id.services[idOf(vip, proto, ports)]
}

// ServiceFor is the configured service a packet to dst takes: the one with
// dst's port listed, else the every-port service of the VIP; nil for none.
func (id Identity) ServiceFor(proto datapath.Proto, dst netip.AddrPort) *config.Service {
	var all *config.Service
	for i := range id.cfg.Services {
		s := &id.cfg.Services[i]
		if s.VIP != dst.Addr() || protoOf(s.Protocol) != proto {
			continue
		}
		if slices.Contains(s.Ports, dst.Port()) {
			return s
		}
		if s.AllPorts() && all == nil {
			all = s
		}
	}
	return all
}

// Server is the server of s at addr, nil when s has none.
func Server(s *config.Service, addr netip.Addr) *config.Server {
	if s == nil {
		return nil
	}
	for i := range s.Servers {
		if s.Servers[i].Address == addr {
			return &s.Servers[i]
		}
	}
	return nil
}
