package daemon

import (
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"slices"

	"github.com/dsrlb/dsrlb/lbd/health"
	"github.com/dsrlb/dsrlb/shared/config"
)

// doReload re-reads the configuration. A bad file, or a change that needs a
// restart, is reported with every reason and the running config stays: a
// reload never stops or degrades the data plane. The error is the verdict
// for whoever asked (the control socket); SIGHUP only logs it.
func (d *Daemon) doReload() (err error) {
	d.opts.Notify("RELOADING=1")
	defer func() {
		d.recordReload(err)
		d.opts.Notify("READY=1\nSTATUS=" + d.statusLine())
	}()
	d.log.Info("reloading configuration", "file", d.opts.ConfigPath)
	next, err := loadConfig(d.loader, d.opts.ConfigPath)
	if err == nil {
		err = restartOnly(d.cfg, next)
	}
	if err == nil {
		err = checkOnLinkVia(d.host().onLink, next)
	}
	if err != nil {
		logReject(d, err)
		return err
	}
	if err := d.switchTo(next); err != nil {
		logReject(d, err)
		return err
	}
	d.saveRunning()
	d.more.reloaded(true)
	d.log.Info("configuration reloaded", "services", len(next.Services), "servers", next.ServerCount())
	return nil
}

func logReject(d *Daemon, err error) {
	var es config.Errors
	if errors.As(err, &es) {
		for _, e := range es {
			d.log.Error("reload rejected: "+e.Error(), "file", e.File, "line", e.Line)
		}
	} else {
		d.log.Error("reload rejected", "err", err)
	}
	d.log.Warn("running configuration kept")
	d.more.reloaded(false)
	if d.metrics != nil {
		d.metrics.reloadFailures.Inc()
	}
}

// RestartOnly returns, as config errors of next, the changes from cur that
// a reload refuses because they take a restart (for `lbd reload --dry-run`).
func RestartOnly(cur, next *config.Config) error { return restartOnly(cur, next) }

// restartOnly refuses changes the running data plane cannot take: they size
// or place its maps, so applying them means a restart (which is safe: the
// pinned data plane keeps forwarding while lbd restarts).
func restartOnly(cur, next *config.Config) error {
	var errs config.Errors
	c, n := cur.Balancer, next.Balancer
	add := func(field string, changed bool) {
		if changed {
			errs = append(errs, &config.Error{File: next.File, Path: "balancer." + field,
				Msg: "changed; this takes a restart (systemctl restart lbd), not a reload" + resize(field)})
		}
	}
	add("interface", c.Interface != n.Interface)
	add("pin_path", c.PinPath != n.PinPath)
	add("maglev_table_size", c.MaglevTableSize != n.MaglevTableSize)
	add("conntrack", c.Conntrack != n.Conntrack)
	add("metrics.listen", c.MetricsListen != n.MetricsListen)
	add("metrics.web_config", c.MetricsWebConfig != n.MetricsWebConfig)
	add("bgp", !reflect.DeepEqual(c.BGP, n.BGP))
	// Taking or leaving the VIPs while running would race the other owner
	// (keepalived) for the address. Adding or removing bgp already says
	// restart, and changes the owner with it.
	add("vip_owner", c.VIPOwner != n.VIPOwner && (c.BGP == nil) == (n.BGP == nil))
	if len(errs) > 0 {
		return errs
	}
	return nil
}

// vipChanges is what a reload from cur to next does to the interface's
// addresses when lbd owns the VIPs: take every VIP of next (Take skips
// those already there), then release the VIPs that left. With vip_owner
// external (keepalived, or BGP where apply announces them) it is nothing
// at all: the interface's addresses are not lbd's business.
func vipChanges(cur, next *config.Config) (take, release []netip.Addr) {
	if !next.Balancer.TakesVIPs() {
		return nil, nil
	}
	take = next.VIPs()
	for _, a := range cur.VIPs() {
		if !slices.Contains(take, a) {
			release = append(release, a)
		}
	}
	return take, release
}

// resize explains what a restart does to maps whose size changed.
func resize(field string) string {
	if field != "maglev_table_size" && field != "conntrack" {
		return ""
	}
	return "; the new size replaces the pinned maps (lbd run --replace-incompatible, as the unit does) and established flows fall back to the Maglev table"
}

// switchTo makes next the running configuration: new VIPs taken, checks and
// neighbour watches updated, the data plane reprogrammed, and only then
// VIPs that left released.
func (d *Daemon) switchTo(next *config.Config) error {
	ifname := next.Balancer.Interface
	// A change the maps have no room for would fail its Apply on every
	// retry, the health changes of the running services with it: refuse
	// it before anything changes.
	d.mu.Lock()
	svcs, _ := desired(next, d.obs)
	d.mu.Unlock()
	if err := d.dp.Fits(svcs); err != nil {
		return fmt.Errorf("program data plane: %w", err)
	}
	take, release := vipChanges(d.cfg, next)
	var added []netip.Addr // by this reload: the running ones are in take too
	if len(take) > 0 {
		t, err := d.host().vips.Claim(ifname, take, d.log) // answered VIPs are reported, not taken
		added = t.Added
		d.recordVIPs(t.Added, nil, t.Conflicts)
		if err != nil {
			return fmt.Errorf("take VIPs on %s: %w", ifname, err)
		}
	}
	d.mu.Lock()
	prev := d.cfg
	d.cfg = next
	d.mu.Unlock()
	if err := d.updateChecks(prev, next); err != nil {
		d.mu.Lock()
		d.cfg = prev
		d.mu.Unlock()
		if len(added) > 0 { // nothing of the new configuration may stay behind
			if rerr := d.host().vips.ReleaseAdded(ifname, added, d.log); rerr != nil {
				d.log.Warn("could not release the VIPs taken for the rejected configuration", "vips", added, "err", rerr)
			}
			d.mu.Lock()
			conflicts := d.conflicts
			d.mu.Unlock()
			d.recordVIPs(nil, added, conflicts)
		}
		return fmt.Errorf("update health checks: %w", err)
	}
	d.res.SetAddrs(resolvable(next))
	if err := d.apply(); err != nil {
		// The new configuration is in force (checks and watches follow
		// it); writing the maps failed (and was undone, or got past its
		// commit point), or the announcements did. The loop retries.
		d.log.Error("new configuration in force; "+applyFailure(err), "err", err)
		d.markDirty()
	}
	d.noteUntaken(nil, nil) // taken above with every VIP of next, or no longer this lbd's to take
	if len(release) > 0 {
		if err := d.releaseVIPs(ifname, release); err != nil {
			d.log.Warn("could not release VIPs no longer configured", "vips", release, "err", err)
		}
		d.mu.Lock()
		conflicts := d.conflicts
		d.mu.Unlock()
		d.recordVIPs(nil, release, conflicts)
	}
	return nil
}

// updateChecks gives the health checker next's targets and makes the
// observed health follow: states of backends no longer configured are
// forgotten, so a server that returns later starts from its checks, not
// from old news, and new or changed targets take the state they start in.
//
// Only what changed costs more than a comparison: a target whose address
// and check are those of the last Update keeps its checker (the manager
// ignores its Initial) and the state observed for it, so neither the
// initial state nor the manager's is looked up for it.
func (d *Daemon) updateChecks(prev, next *config.Config) error {
	var initial func(string, netip.Addr) health.State // built when first needed
	var fresh []string
	ts := targetSet{list: make([]health.Target, 0, next.ServerCount()), index: make(map[string]int, next.ServerCount())}
	eachTarget(next, func(s *config.Service, srv *config.Server, t health.Target) {
		if old, ok := d.targets.get(t.Key); ok && health.SameCheck(old, t) {
			t.Initial = old.Initial
		} else {
			if initial == nil {
				initial = d.initialFrom(prev)
			}
			t.Initial = initial(s.Name, srv.Address)
			fresh = append(fresh, t.Key)
		}
		ts.add(t)
	})
	// The same targets as last time: Update would keep every checker
	// and change nothing, at the cost of a pass over all of them.
	same := len(fresh) == 0 && len(ts.list) == len(d.targets.list)
	if !same {
		if err := d.checks.Update(ts.list); err != nil {
			return err
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for k := range d.targets.index {
		if _, ok := ts.index[k]; !ok {
			delete(d.obs.health, k)
			delete(d.obs.checkWhy, k)
		}
	}
	for _, k := range fresh {
		if st, ok := d.checks.State(k); ok {
			d.obs.health[k] = st
		}
	}
	d.targets = ts
	return nil
}
