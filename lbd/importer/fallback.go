package importer

import (
	"fmt"
	"strings"

	"github.com/dsrlb/dsrlb/shared/config"
)

// onFailure maps keepalived's inhibit_on_failure (weight 0 instead of
// removal: established connections stay) onto on_failure: drain. dsrlb
// sets it per service: on the service, or on every real server, it is
// carried as is; on some servers only, drain applies to all and a note
// says so (a server that keeps its flows when failing hurts less than one
// that loses them unexpectedly).
func (mp *mapper) onFailure(s *Service) string {
	if s.Inhibit.set() {
		return string(config.FailDrain)
	}
	var some []string
	var first Value
	for i := range s.Servers {
		if v := s.Servers[i].Inhibit; v.set() {
			if len(some) == 0 {
				first = v
			}
			some = append(some, serverLabel(&s.Servers[i]))
		}
	}
	switch {
	case len(some) == 0:
		return ""
	case len(some) < len(s.Servers):
		mp.notes.add(first.At, first.What, "on_failure is per service in dsrlb: drain now applies to every server of the service, not only to %s", strings.Join(some, ", "))
	}
	return string(config.FailDrain)
}

// fallbacks maps sorry servers (keepalived sorry_server, ALOHA/HAProxy
// server ... sorry|backup) onto fallback: servers, which take new flows only
// while no real server is up. A sorry server the source does not check is
// check: false (always up) like such real servers; one that is also a real
// server is left out, as a backend is either a primary or a fallback.
func (mp *mapper) fallbacks(s *Service, o *outService) []outServer {
	names := map[string]int{}
	addrs := map[string]bool{}
	for _, srv := range o.Servers {
		names[srv.Name]++
		addrs[srv.Address] = true
	}
	checked := o.Check != nil && o.Check.Type != string(config.CheckNone)
	var out []outServer
	for i := range s.Sorry {
		srv := &s.Sorry[i]
		addr := mp.serverAddr(srv)
		if addr != "" && addrs[addr] {
			mp.notes.add(srv.At, "sorry server "+serverLabel(srv), "not carried: it is also a real server of the service; dsrlb lists a backend once, as a server or as a fallback")
			continue
		}
		addrs[addr] = true
		fb := outServer{Name: uniqueIn(names, srv.Name, serverName(srv)), Address: addr, Weight: srv.Weight}
		if checked && srv.Check == nil {
			fb.Check = new(bool)
		}
		if srv.Port != 0 && len(s.Ports) == 1 && srv.Port != s.Ports[0] {
			mp.notes.add(srv.PortAt, fmt.Sprintf("sorry server port %d", srv.Port), "not carried: DSR does not rewrite ports, so the fallback gets the clients' port %d and must listen on it", s.Ports[0])
		}
		out = append(out, fb)
	}
	return out
}
