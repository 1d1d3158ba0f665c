package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
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
