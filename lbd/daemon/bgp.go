package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/dsrlb/dsrlb/lbd/bgp"
	"github.com/dsrlb/dsrlb/lbd/datapath"
	"github.com/dsrlb/dsrlb/shared/config"
)

// startBGP starts the speaker once the data plane is attached, and
// announces the VIPs whose services qualify: a VIP is never announced
// before this balancer can forward it.
func (d *Daemon) startBGP(ctx context.Context) error {
	if err := d.startSpeaker(ctx); err != nil {
		return err
	}
	if err := d.apply(); err != nil {
		return err
	}
	d.writeBGPStatus(ctx)
	return nil
}

// startSpeaker starts the BGP speaker, announcing nothing yet.
func (d *Daemon) startSpeaker(ctx context.Context) error {
	// The speaker outlives ctx: stop() withdraws through it after ctx ends.
	s, err := d.host().startBGP(context.WithoutCancel(ctx), *d.cfg.Balancer.BGP, d.cfg.Balancer.Interface, d.log)
	if err != nil {
		return err
	}
	d.bgp = s
	return nil
}

// errAnnounce marks an apply whose data plane update held but whose BGP
// announcements failed.
var errAnnounce = errors.New("update BGP announcements")

// announce makes the BGP announcements follow svcs (BGP mode only).
func (d *Daemon) announce(svcs []datapath.Service) error { return d.announceIf(svcs, nil) }

// announceIf is announce for the VIPs keep holds for only (nil: all).
func (d *Daemon) announceIf(svcs []datapath.Service, keep func(netip.Addr) bool) error {
	if d.bgp == nil {
		return nil
	}
	d.mu.Lock()
	routes := announcements(d.cfg, svcs)
	d.mu.Unlock()
	if keep != nil {
		routes = slices.DeleteFunc(routes, func(r bgp.Route) bool { return !keep(r.VIP) })
	}
	if err := d.bgp.Announce(routes); err != nil {
		return fmt.Errorf("%w: %w", errAnnounce, err)
	}
	return nil
}

// stopBGP withdraws every VIP, waits bgp.withdraw_wait for the routers to
// move traffic away while this balancer still forwards, and closes the
// sessions; once, in BGP mode only.
func (d *Daemon) stopBGP() {
	if d.bgp == nil || d.bgpStopped {
		return
	}
	d.bgpStopped = true
	d.bgp.Stop(d.cfg.Balancer.BGP.WithdrawWait)
	if d.opts.BGPStatusFile != "" {
		os.Remove(d.opts.BGPStatusFile)
	}
}

// announcements lists the VIPs to announce: those with at least one
// service having announce.min_healthy backends up in the data plane.
func announcements(cfg *config.Config, svcs []datapath.Service) []bgp.Route {
	var out []bgp.Route
	seen := map[string]bool{}
	for i, s := range cfg.Services {
		if seen[s.VIP.String()] || i >= len(svcs) {
			continue
		}
		up := 0
		for _, b := range svcs[i].Backends {
			if b.State == datapath.Up {
				up++
			}
		}
		if up >= s.Announce.MinHealthy {
			seen[s.VIP.String()] = true
			out = append(out, bgp.Route{VIP: s.VIP, Communities: s.Announce.Communities, MED: s.Announce.MED})
		}
	}
	return out
}

// BGPStatus is what lbd writes to Options.BGPStatusFile.
type BGPStatus struct {
	PID     int       `json:"pid"`
	Updated time.Time `json:"updated"`
	bgp.Status
}

// writeBGPStatus writes the sessions and announcements for `lbd status`
// (temp file and rename: a reader never sees half a file).
func (d *Daemon) writeBGPStatus(ctx context.Context) {
	path := d.opts.BGPStatusFile
	if d.bgp == nil || path == "" {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	b, _ := json.MarshalIndent(BGPStatus{PID: os.Getpid(), Updated: time.Now(), Status: d.bgp.Status(ctx)}, "", "  ")
	err := os.MkdirAll(filepath.Dir(path), 0o755)
	if err == nil {
		err = os.WriteFile(path+".tmp", append(b, '\n'), 0o644)
	}
	if err == nil {
		err = os.Rename(path+".tmp", path)
	}
	if err != nil {
		d.log.Warn("cannot write the BGP status for lbd status", "err", fmt.Errorf("write %s: %w", path, err))
	}
}
