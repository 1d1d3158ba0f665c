package daemon

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dsrlb/dsrlb/lbd/arpguard"
	"github.com/dsrlb/dsrlb/lbd/statusjson"
	"github.com/dsrlb/dsrlb/shared/config"
)

// The ARP/ND guard (lbd/arpguard) runs for the daemon's life on
// balancer.interface: it reports any MAC the VIP owner does not allow
// answering for a VIP, naming the backend when the MAC is one's (static
// `mac:` or the neighbour table). A guard that cannot start (no packet
// socket) is logged and shown in status; forwarding does not depend on it.

// guardState is the daemon's guard, or why there is none.
type guardState struct {
	mu    sync.Mutex
	g     *arpguard.Guard
	err   string // why the guard is not running
	since time.Time
}

var descARPConflict = prometheus.NewDesc("dsrlb_arp_conflict",
	"1 while a MAC other than this balancer's is seen answering ARP/ND for the VIP (backend names the configured server with that MAC, empty for another host); cleared after 3 probe rounds unseen.",
	[]string{"vip", "mac", "backend"}, nil)

var descARPGuardUp = prometheus.NewDesc("dsrlb_arp_guard_up",
	"1 while the ARP/ND guard watches balancer.interface, 0 when it could not start (see the log).", nil, nil)

// guardMode is who may answer for the VIPs besides this balancer.
func guardMode(b config.Balancer) arpguard.Mode {
	switch {
	case b.BGP != nil:
		return arpguard.OwnerBGP
	case b.TakesVIPs():
		return arpguard.OwnerLBD
	}
	return arpguard.OwnerExternal
}

// guardTargets is what the guard watches now: the configured VIPs and the
// backends' MACs, static or resolved.
func (d *Daemon) guardTargets() arpguard.Targets {
	d.mu.Lock()
	defer d.mu.Unlock()
	pol := arpguard.Policy{Mode: guardMode(d.cfg.Balancer), Backends: map[string][]arpguard.Backend{}}
	for _, s := range d.cfg.Services {
		for _, srv := range s.Servers {
			mac := srv.MAC
			if mac == nil {
				mac = d.obs.macs[srv.Address]
			}
			if mac != nil {
				pol.Backends[mac.String()] = append(pol.Backends[mac.String()], arpguard.Backend{Service: s.Name, Name: srv.Name, Addr: srv.Address})
			}
		}
	}
	return arpguard.Targets{VIPs: d.cfg.VIPs(), Policy: pol}
}

// startARPGuard starts the guard; a failure leaves lbd running without it.
func (d *Daemon) startARPGuard(ctx context.Context) {
	g, err := arpguard.Start(ctx, arpguard.Options{
		Interface: d.cfg.Balancer.Interface,
		Targets:   d.guardTargets,
		Logger:    d.log.With("component", "arpguard"),
	})
	d.guard.mu.Lock()
	defer d.guard.mu.Unlock()
	d.guard.since = time.Now()
	if err != nil {
		d.guard.err = err.Error()
		d.log.Error("ARP guard not running: a backend answering ARP for a VIP will go unnoticed", "err", err)
		return
	}
	d.guard.g = g
	d.log.Info("ARP guard watching", "interface", d.cfg.Balancer.Interface, "vip_owner", guardMode(d.cfg.Balancer).String(),
		"interval", arpguard.DefaultInterval.String())
}

func (d *Daemon) stopARPGuard() {
	d.guard.mu.Lock()
	g := d.guard.g
	d.guard.g = nil
	d.guard.mu.Unlock()
	if g != nil {
		g.Close()
	}
}

// arpConflicts are the guard's current findings (none without a guard).
func (d *Daemon) arpConflicts() []arpguard.Conflict {
	d.guard.mu.Lock()
	g := d.guard.g
	d.guard.mu.Unlock()
	if g == nil {
		return nil
	}
	return g.Conflicts()
}

// StatusARPGuard converts the guard's findings into the status schema.
func StatusARPGuard(mode arpguard.Mode, running bool, note string, cs []arpguard.Conflict) *statusjson.ARPGuard {
	out := &statusjson.ARPGuard{Running: running, Mode: mode.String(), Note: note, Conflicts: []statusjson.ARPConflict{}}
	for _, c := range cs {
		ac := statusjson.ARPConflict{VIP: c.VIP.String(), MAC: macText(c.MAC), SeenAs: c.Kind.String(),
			Since: c.Since.UTC(), LastSeen: c.LastSeen.UTC(), Frames: c.Seen}
		for _, b := range c.Backends {
			ac.Backends = append(ac.Backends, statusjson.ARPBackend{Service: b.Service, Name: b.Name, Address: b.Addr.String()})
		}
		out.Conflicts = append(out.Conflicts, ac)
	}
	return out
}

// arpGuardStatus is the guard's part of the status document (nil before
// the configuration is loaded).
func (d *Daemon) arpGuardStatus() *statusjson.ARPGuard {
	d.mu.Lock()
	if d.cfg == nil {
		d.mu.Unlock()
		return nil
	}
	mode := guardMode(d.cfg.Balancer)
	d.mu.Unlock()
	d.guard.mu.Lock()
	running, note := d.guard.g != nil, d.guard.err
	d.guard.mu.Unlock()
	return StatusARPGuard(mode, running, note, d.arpConflicts())
}

// arpCollector serves the guard's metrics.
type arpCollector struct{ d *Daemon }

func (c arpCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descARPConflict
	ch <- descARPGuardUp
}

func (c arpCollector) Collect(ch chan<- prometheus.Metric) {
	c.d.guard.mu.Lock()
	up := 0.0
	if c.d.guard.g != nil {
		up = 1
	}
	c.d.guard.mu.Unlock()
	ch <- prometheus.MustNewConstMetric(descARPGuardUp, prometheus.GaugeValue, up)
	for _, cf := range c.d.arpConflicts() {
		names := make([]string, len(cf.Backends))
		for i, b := range cf.Backends {
			names[i] = b.Service + "/" + b.Name
		}
		be := strings.Join(names, ",")
		ch <- prometheus.MustNewConstMetric(descARPConflict, prometheus.GaugeValue, 1, cf.VIP.String(), cf.MAC.String(), be)
	}
}

// arpText is a conflict's line on the status page and in lbd status.
func arpText(c statusjson.ARPConflict) string {
	names := make([]string, len(c.Backends))
	for i, b := range c.Backends {
		names[i] = b.Service + "/" + b.Name + " (" + b.Address + ")"
	}
	who := ", another host: it takes the VIP's traffic"
	if len(names) > 0 {
		who = " = backend " + strings.Join(names, ", ") + ": arp_ignore/arp_announce reset? run hostprep"
	}
	return "VIP " + c.VIP + " ANSWERED BY " + c.MAC + who + " (" + c.SeenAs + ", since " + c.Since.Format("15:04:05") + ")"
}

// ARPText is arpText for lbd status.
func ARPText(c statusjson.ARPConflict) string { return arpText(c) }

// arpGuardText is the guard's summary line.
func arpGuardText(g *statusjson.ARPGuard) string {
	if !g.Running {
		return "ARP guard: not running"
	}
	if n := len(g.Conflicts); n > 0 {
		return fmt.Sprintf("ARP guard (vip_owner %s): %d conflict(s)", g.Mode, n)
	}
	return "ARP guard (vip_owner " + g.Mode + "): no other MAC answers for a VIP"
}
