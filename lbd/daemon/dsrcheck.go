package daemon

import (
	"net"
	"net/netip"

	"github.com/dsrlb/dsrlb/lbd/health"
)

// dsrOptions set up the health checks that go through the DSR path
// (check.via: vip): out of balancer.interface, framed to the MAC the
// neighbour resolver found for the backend (a static mac: is carried by
// the target itself).
func (d *Daemon) dsrOptions() health.DSROptions {
	return health.DSROptions{
		Interface: d.cfg.Balancer.Interface,
		Logger:    d.log,
		Neighbor: func(a netip.Addr) net.HardwareAddr {
			if d.res == nil {
				return nil
			}
			if n, ok := d.res.Lookup(a); ok {
				return n.MAC
			}
			return nil
		},
	}
}

// staticMAC is a server's configured mac: as a health target carries it
// (all zero: none, or not an Ethernet MAC).
func staticMAC(mac net.HardwareAddr) (out [6]byte) {
	if len(mac) == len(out) {
		copy(out[:], mac)
	}
	return out
}

// noteCheck keeps the reason a backend's checks took it down, for `lbd
// status`; a backend that came up has none. Called with d.mu held.
func (o *observed) noteCheck(key string, s health.State, reason string) {
	if s == health.Up {
		delete(o.checkWhy, key)
		return
	}
	if o.checkWhy == nil {
		o.checkWhy = map[string]string{}
	}
	o.checkWhy[key] = reason
}

// checkReason is the reason shown for a backend whose checks fail.
func checkReason(why string) string {
	if why == "" {
		return "health check failing"
	}
	return "health check failing: " + why
}
