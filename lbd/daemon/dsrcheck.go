package daemon

import (
	"net"
	"net/netip"
	"strings"

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

// onResult sees every check result: metrics, and the error of a failing
// check, kept as the backend's reason for `lbd status` (a backend that
// starts down and stays down has no transition to carry it). The data
// plane is rewritten only when that text changes other than in its
// numbers (sameShape).
func (d *Daemon) onResult(t health.Target, r health.Result) {
	d.more.observeCheck(t, r)
	if r.OK() {
		return
	}
	d.mu.Lock()
	changed := d.obs.noteFailure(t.Key, r.Err.Error())
	d.mu.Unlock()
	if changed {
		d.markDirty()
	}
}

// noteFailure records why key's last check failed and reports whether
// that changed. Called with d.mu held.
func (o *observed) noteFailure(key, why string) bool {
	if old, ok := o.checkWhy[key]; ok && sameShape(old, why) {
		// "timed out after 1001 ms", an ephemeral port in a Go error: the
		// same failure. Keeping the first text spares an apply, a log line
		// and a reset LAST CHANGE per check of every down backend.
		return false
	}
	if o.checkWhy == nil {
		o.checkWhy = map[string]string{}
	}
	o.checkWhy[key] = why
	return true
}

// sameShape reports whether a and b differ in their numbers only.
func sameShape(a, b string) bool { return digitsOut(a) == digitsOut(b) }

// digitsOut replaces every run of digits with one '#'.
func digitsOut(s string) string {
	var b strings.Builder
	digit := false
	for _, r := range s {
		d := r >= '0' && r <= '9'
		if !d {
			b.WriteRune(r)
		} else if !digit {
			b.WriteByte('#')
		}
		digit = d
	}
	return b.String()
}

// noteCheck follows a transition: a backend that came up has no reason
// to be out. Called with d.mu held.
func (o *observed) noteCheck(key string, s health.State) {
	if s == health.Up {
		delete(o.checkWhy, key)
	}
}

// drainReason is the reason shown for a failing backend of a service with
// on_failure: drain (the prefix is what `lbd status` matches while lbd is
// down, see cli's drainReason).
func drainReason(why string) string {
	const r = "health check failing (on_failure: drain: established flows stay, no new ones)"
	if why == "" {
		return r
	}
	return r + ": " + why
}

// checkReason is the reason shown for a backend whose checks fail.
func checkReason(why string) string {
	if why == "" {
		return "health check failing"
	}
	return "health check failing: " + why
}
