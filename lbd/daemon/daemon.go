// Package daemon is lbd's control plane: it keeps the eBPF data plane
// equal to the configuration filtered by what is observed (health checks,
// neighbour resolution), reloads the configuration on demand and talks to
// systemd.
//
// Lifecycle (DESIGN §4): validate the config → load or adopt the pinned data
// plane → check every backend is on-link → resolve MACs → start checks →
// program the maps → attach → take the VIPs (gratuitous ARP / unsolicited
// NA; not with balancer.vip_owner external, where keepalived or the BGP
// routers bring the traffic) → READY=1. On an adopted data plane the maps
// are programmed last instead (goLiveAdopted), so a start that fails
// leaves them as found. Stopping leaves program, maps and VIPs in place,
// so forwarding continues until a new lbd adopts them.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dsrlb/dsrlb/lbd/datapath"
	"github.com/dsrlb/dsrlb/lbd/health"
	"github.com/dsrlb/dsrlb/lbd/neigh"
	"github.com/dsrlb/dsrlb/lbd/vip"
	"github.com/dsrlb/dsrlb/shared/config"
)

// Options configure Run.
type Options struct {
	ConfigPath string
	Logger     *slog.Logger
	// Notify sends a systemd notification ("READY=1", ...); nil sends none.
	Notify func(state string)
	// Watchdog is the systemd watchdog period; 0 disables pings.
	Watchdog time.Duration
	// Reload delivers reload requests (SIGHUP).
	Reload <-chan struct{}
	// ReplaceIncompatible discards pinned maps of another layout instead of
	// refusing to start.
	ReplaceIncompatible bool
	// ForceClsact attaches with clsact + cls_bpf even when tcx exists.
	ForceClsact bool
	// RunningCopy, when set, receives a copy of the configuration in force
	// after each start and successful reload (for `lbd reload --dry-run`).
	RunningCopy string
	// Ready, when not nil, is closed once the data plane is programmed.
	Ready chan<- struct{}
	// Config, when set, is ConfigPath already loaded by the caller (for
	// its PID file): parsing 1,000 services takes ~0.1 s, not worth
	// doing twice at start. nil loads ConfigPath.
	Config *config.Config
	// Loader, when set, is the Loader Config came from: reloads reuse
	// the services it parsed, so the first reload already parses only
	// what changed. nil starts a new one.
	Loader *config.Loader
	// BGPStatusFile, when set and BGP is configured, receives the BGP
	// sessions and announced VIPs as JSON (for `lbd status`), refreshed
	// every few seconds and removed on a clean stop.
	BGPStatusFile string
	// VIPRecord, when set, is the file where lbd records the VIPs it added
	// and those it did not take (see VIPRecord).
	VIPRecord string
	// ReasonsFile, when set, receives why each backend is out of rotation
	// (reasons.go), for `lbd status`.
	ReasonsFile string

	// ControlSocket, when set, is the unix socket `lbd reload` talks to
	// (see lbd/control and control.go).
	ControlSocket string
	// Version is lbd's version, for the control socket's ping.
	Version string
	// StallLimit is how long one loop step may run before the watchdog
	// pings stop (watchdog.go); 0 means DefaultStallLimit.
	StallLimit time.Duration

	// sys replaces the host in tests (seams.go); nil is the real one.
	sys *system
}

// Daemon is one running lbd.
type Daemon struct {
	opts    Options
	log     *slog.Logger
	sys     *system // the host acted on (seams.go)
	dp      dataPlane
	checks  healthChecks
	res     neighbours
	metrics *metrics
	more    moreMetrics // check durations and reload results, ready before metrics start
	bgp     bgpSpeaker  // nil in ARP mode
	guard   guardState  // the ARP/ND guard (arpguard.go)
	marks   stateMarks  // since when each backend is in its state (live.go)
	// metricsLn is bound before the first kernel change, so a taken port
	// fails the start before anything changed.
	metricsLn net.Listener
	// startAdded are the VIPs this start added: undone if it fails.
	startAdded []netip.Addr
	// startAttached: this start attached an adopted data plane it found
	// detached; undone if it fails.
	startAttached bool
	// startOverFound: Open adopted no maps, yet a program was attached
	// (an earlier lbd's, whose maps --replace-incompatible replaces): it
	// forwards with its own maps, still pinned, until this start's Attach
	// replaces it and moves the fresh maps over them
	// (startReplacedFound). A failed start leaves it (undoOverFound).
	startOverFound, startReplacedFound bool
	// served are the VIPs of the adopted data plane as found: a start
	// takes or announces only those before it programs the maps.
	served map[netip.Addr]bool
	// bgpStopped: the VIPs were withdrawn (stopBGP), once.
	bgpStopped bool

	// loader parses the file on every reload, again only for the
	// services whose text changed.
	loader *config.Loader
	// targets are the health targets of the last Update: a reload
	// compares with them (loop only, and start before it).
	targets targetSet

	mu  sync.Mutex // guards cfg and obs, written by event callbacks
	cfg *config.Config
	obs observed
	out why // last reasons backends were out of rotation, to log changes once
	// reasonsUnwritten: the last reasons file write failed; retried on
	// the next apply even when the reasons did not change.
	reasonsUnwritten bool
	// conflicts are the VIPs not taken because another host answers for them.
	conflicts []vip.Conflict
	// vipsUntaken are VIPs new in the configuration an adopted start could
	// not take after programming the maps (drawNew): the loop retries them,
	// no sooner than vipRetryAt, the wait doubling to a minute. Start and
	// loop only.
	vipsUntaken  []netip.Addr
	vipRetryAt   time.Time
	vipRetryWait time.Duration
	// untaken is vipsUntaken with the last error and the times, for the
	// VIP record, status and metrics (guarded by mu; noteUntaken).
	untaken []VIPUntaken
	// detached is why the program was last found not attached; "" when it is.
	detached string
	repairs  uint64 // re-attachments after the program was found detached
	// reattachErr is the last re-attach failure, to log each once (loop only).
	reattachErr string
	dirty       chan struct{}

	// Runtime control and health (control.go, watchdog.go).
	reloadReqs chan chan error // control socket reloads, answered by the loop
	live       liveness        // the loop's heartbeat for the watchdog
	status     atomic.Value    // string: the last STATUS= line sent
	lastReload atomic.Value    // string: the last reload's outcome
	adm        adminHooks      // lbd set, notify, fallback logging (admin.go)
}

// Run starts lbd and blocks until ctx ends. It returns an error only when
// lbd cannot start; later failures are logged and retried.
func Run(ctx context.Context, opts Options) error { return newDaemon(opts).run(ctx) }

// newDaemon is the lbd Run runs (in-process tests keep it to look inside).
func newDaemon(opts Options) *Daemon {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Notify == nil {
		opts.Notify = func(string) {}
	}
	d := &Daemon{opts: opts, log: opts.Logger, dirty: make(chan struct{}, 1), loader: opts.Loader, sys: opts.sys}
	if d.loader == nil {
		d.loader = new(config.Loader)
	}
	return d
}

func (d *Daemon) run(ctx context.Context) error {
	closeControl, err := d.openControl()
	if err != nil {
		return err
	}
	defer closeControl()
	if err := d.start(ctx); err != nil {
		// The routers are told first and given withdraw_wait while this
		// balancer still forwards; only then is anything detached.
		d.stopBGP()
		d.undoStart()
		d.stop()
		return err
	}
	defer d.stop()
	return d.loop(ctx)
}

func (d *Daemon) start(ctx context.Context) error {
	cfg, err := d.opts.Config, error(nil)
	if cfg == nil {
		cfg, err = loadConfig(d.loader, d.opts.ConfigPath)
	} else if err = cfg.RequireBalancer(); err == nil {
		err = cfg.CheckFiles()
	}
	if err != nil {
		return err
	}
	// Preflight: everything that can fail is checked before the first
	// kernel change (mounting a missing bpffs aside).
	if err := d.host().checkInterface(cfg); err != nil {
		return err
	}
	if err := d.host().checkPrivileges(); err != nil {
		return err
	}
	if err := d.host().ensureBPFFS(cfg.Balancer.PinPath, d.log); err != nil {
		return err
	}
	if err := checkOnLinkVia(d.host().onLink, cfg); err != nil {
		return err
	}
	if err := checkWebConfig(cfg.Balancer.MetricsWebConfig); err != nil {
		return err // before anything is attached
	}
	// The first line of a start that got through preflight: which binary
	// runs, for the journal. A start refused earlier prints its one error
	// line and nothing else.
	d.log.Info("lbd starting", "version", d.opts.Version, "config", d.opts.ConfigPath, "pid", os.Getpid())
	d.cfg = cfg
	b := cfg.Balancer
	if d.metricsLn, err = listenMetrics(b.MetricsListen); err != nil {
		return err
	}
	// Probing for the VIPs waits for answers (~0.6 s): done while the data
	// plane loads, taken only once it is attached.
	probed := d.prepareVIPs(b, cfg.VIPs())
	dpOpts := DataplaneOptions(b)
	dpOpts.ForceClsact, dpOpts.ReplaceIncompatible = d.opts.ForceClsact, d.opts.ReplaceIncompatible
	d.dp, err = d.host().openDataplane(dpOpts, d.log)
	if errors.Is(err, datapath.ErrIncompatible) {
		return fmt.Errorf("open data plane: %w: the maps pinned under %s were written by another lbd version or size; "+
			"run `lbd run --replace-incompatible` to start afresh (established flows fall back to the Maglev table) or `lbd detach` first", err, b.PinPath)
	}
	if err != nil {
		return fmt.Errorf("open data plane: %w", err)
	}
	if d.obs, err = d.seedFromDataplane(); err != nil {
		return err
	}
	if d.dp.Adopted() {
		d.log.Info("adopted the pinned data plane: forwarding continues", "pin_path", b.PinPath)
	} else {
		d.noteFoundAttached()
	}
	if err := d.startObservers(ctx); err != nil {
		return err
	}
	if d.dp.Adopted() {
		err = d.goLiveAdopted(ctx, probed)
	} else {
		err = d.goLiveFresh(ctx, probed)
	}
	if err != nil {
		return err
	}
	d.saveDeferredAdmin()
	d.saveRunning()
	d.dropStaleVIPNotes()
	// From here on, a failure is not the start's.
	d.startAdded, d.startAttached, d.startOverFound, d.startReplacedFound = nil, false, false, false
	d.log.Info("lbd ready", "interface", b.Interface, "vip_owner", string(b.VIPOwner), "services", len(cfg.Services), "servers", cfg.ServerCount())
	d.opts.Notify("READY=1\nSTATUS=" + d.statusLine())
	if d.opts.Ready != nil {
		close(d.opts.Ready)
	}
	return nil
}

// goLiveFresh brings a data plane this start created (or whose
// incompatible maps it replaced) into service: the maps are programmed
// before the program is attached (it never forwards with empty maps), and
// traffic is drawn (VIPs taken, BGP announced) only once it forwards. A
// failure is undone by removing the data plane and releasing the VIPs it
// added (undoStart), or, over a program found attached, as undoOverFound
// says.
func (d *Daemon) goLiveFresh(ctx context.Context, probed <-chan probeResult) error {
	b := d.cfg.Balancer
	if err := d.apply(); err != nil {
		return err
	}
	if err := d.attach(); err != nil {
		return err
	}
	d.startReplacedFound = d.startOverFound
	switch {
	case b.BGP != nil:
		if err := d.startBGP(ctx); err != nil {
			return err
		}
	case b.TakesVIPs():
		p := <-probed
		if p.err != nil {
			return fmt.Errorf("take VIPs on %s: %w", b.Interface, p.err)
		}
		if err := d.takeVIPs(p.prepared); err != nil {
			return err
		}
	default:
		d.warnLeftVIPs()
	}
	d.startARPGuard(ctx)
	return d.startMetrics(ctx)
}

// goLiveAdopted brings an adopted data plane under this lbd with its maps
// programmed last: every other step that can fail runs first, so a start
// that fails leaves the pinned services, backends, tables and conntrack
// entries as the previous lbd left them (issue 12; undoStart releases the
// VIPs it added and detaches a data plane it found detached). The old
// maps keep forwarding meanwhile, under this lbd's program once attached:
// adoption requires the same ABI. Before the Apply only the VIPs those
// maps serve draw traffic (drawServed); a VIP new in this configuration
// is taken or announced once the Apply put its service in the maps
// (drawNew), since until then its packets would pass to the stack.
func (d *Daemon) goLiveAdopted(ctx context.Context, probed <-chan probeResult) error {
	p, err := d.prepareAdopted(ctx, probed)
	if err != nil {
		return err
	}
	svcs, reasons := d.desiredNow()
	served, fresh := p.Split(d.servedVIP)
	if err := d.drawServed(svcs, served); err != nil {
		return err
	}
	if err := d.programLast(svcs, reasons); err != nil {
		return err
	}
	d.drawNew(svcs, fresh)
	d.writeBGPStatus(ctx)
	d.startARPGuard(ctx)
	return nil
}

// prepareAdopted runs what can fail before anything draws traffic: the
// BGP speaker (announcing nothing) or the VIP probe, the metrics server
// and the attach.
func (d *Daemon) prepareAdopted(ctx context.Context, probed <-chan probeResult) (vip.Prepared, error) {
	b := d.cfg.Balancer
	var p probeResult
	switch {
	case b.BGP != nil:
		if err := d.startSpeaker(ctx); err != nil {
			return vip.Prepared{}, err
		}
	case b.TakesVIPs():
		if p = <-probed; p.err != nil {
			return vip.Prepared{}, fmt.Errorf("take VIPs on %s: %w", b.Interface, p.err)
		}
	}
	// After the speaker: scrapes read d.bgp.
	if err := d.startMetrics(ctx); err != nil {
		return vip.Prepared{}, err
	}
	return p.prepared, d.attachAdopted()
}

// servedVIP reports whether the adopted data plane served a as found.
func (d *Daemon) servedVIP(a netip.Addr) bool { return d.served[a.Unmap()] }

// drawServed draws traffic before the maps are programmed, for the VIPs
// the adopted data plane already serves only: it announces those of svcs
// over BGP or takes those of p (vip_owner lbd); with an external owner it
// only warns about VIPs left on the interface.
func (d *Daemon) drawServed(svcs []datapath.Service, p vip.Prepared) error {
	b := d.cfg.Balancer
	switch {
	case b.BGP != nil:
		return d.announceIf(svcs, d.servedVIP)
	case b.TakesVIPs():
		if len(p.Missing()) == 0 {
			d.recordVIPs(nil, nil, nil) // nothing missing, so no conflict either
			return nil
		}
		return d.takeVIPs(p)
	}
	d.warnLeftVIPs()
	return nil
}

// drawNew draws traffic for the VIPs new in this configuration, once the
// maps serve them: every announcement of svcs, or the VIPs of p. The
// adopted data plane is programmed by then and a failed start could no
// longer leave it as found, so a failure is reported and the start goes
// on, as a reload's would: the loop retries the announcements; a VIP not
// taken is taken by the next `lbd reload`.
func (d *Daemon) drawNew(svcs []datapath.Service, p vip.Prepared) {
	b := d.cfg.Balancer
	switch {
	case b.BGP != nil:
		if err := d.announce(svcs); err != nil {
			d.log.Error("data plane programmed, but announcing the VIPs failed; retrying", "err", err)
			d.markDirty()
		}
	case b.TakesVIPs() && len(p.Missing()) > 0:
		t, err := d.host().vips.TakePrepared(p, d.log)
		d.recordMoreTaken(t)
		if err != nil {
			d.vipRetryWait = 0
			d.noteUntaken(untaken(p.Missing(), t), err)
			d.log.Error("VIPs new in the configuration not all taken: no traffic is drawn to those; retrying",
				"interface", b.Interface, "vips", d.vipsUntaken, "err", err)
		}
	}
}

// recordMoreTaken records a take after the start's first: what it added,
// and its conflicts besides those recorded already.
func (d *Daemon) recordMoreTaken(t vip.Taken) {
	d.mu.Lock()
	prior := slices.Clone(d.conflicts)
	d.mu.Unlock()
	d.recordVIPs(t.Added, nil, append(prior, t.Conflicts...))
}

// untaken is what of want t neither added nor found answered elsewhere.
func untaken(want []netip.Addr, t vip.Taken) []netip.Addr {
	return slices.DeleteFunc(slices.Clone(want), func(a netip.Addr) bool {
		return slices.Contains(t.Added, a) || slices.ContainsFunc(t.Conflicts, func(c vip.Conflict) bool { return c.VIP == a })
	})
}

// retryVIPs takes the VIPs a start could not take (vipsUntaken), as a
// reload takes new ones: those another host answers for are reported, not
// taken, and not retried; a failure doubles the wait before the next try.
func (d *Daemon) retryVIPs() {
	if len(d.vipsUntaken) == 0 || d.host().now().Before(d.vipRetryAt) {
		return
	}
	ifname := d.cfg.Balancer.Interface
	t, err := d.host().vips.Claim(ifname, d.vipsUntaken, d.log)
	d.recordMoreTaken(t)
	if err != nil {
		// A take probes the segment first (~0.6 s): back off so that the
		// loop is not kept busy by a failure that stays.
		d.vipRetryWait = min(max(2*d.vipRetryWait, d.host().attachEvery), time.Minute)
		d.vipRetryAt = d.host().now().Add(d.vipRetryWait)
	}
	left := untaken(d.vipsUntaken, t)
	if err == nil {
		// Claim is idempotent: a VIP it found on the interface already
		// (put there by hand, or by a reload that failed on another) is
		// neither added nor a conflict, and held all the same.
		left = nil
	}
	d.noteUntaken(left, err)
	switch {
	case err != nil:
		d.log.Warn("VIPs still not taken; retrying", "interface", ifname, "vips", d.vipsUntaken, "in", d.vipRetryWait, "err", err)
	case len(d.vipsUntaken) == 0:
		d.log.Info("VIPs taken on retry", "interface", ifname, "vips", t.Added)
	}
}

// programLast programs the adopted data plane, the start's last step that
// can fail. An Apply that failed past its commit point has put svcs in
// force: they are noted as applied and the start goes on, since failing
// would leave them with no lbd; the loop finishes what Apply could not.
func (d *Daemon) programLast(svcs []datapath.Service, reasons why) error {
	err := d.dp.Apply(svcs)
	if err != nil && !errors.Is(err, datapath.ErrCommitted) {
		return fmt.Errorf("program data plane: %w", err)
	}
	d.noteStates(svcs, reasons)
	d.noteApplied(svcs, reasons)
	if err != nil {
		d.log.Warn(applyFailure(err), "err", err)
		d.markDirty()
	}
	return nil
}

// attach attaches the program to the balancer interface, the error
// naming it.
func (d *Daemon) attach() error {
	if err := d.dp.Attach(); err != nil {
		return fmt.Errorf("attach data plane to %s: %w", d.cfg.Balancer.Interface, err)
	}
	return nil
}

// attachAdopted attaches this program to the adopted data plane (a pinned
// tcx link is updated in place), noting whether it was found detached:
// then a failed start detaches it again. In doubt it counts as attached,
// since detaching a plane that forwards would be the worse mistake.
func (d *Daemon) attachAdopted() error {
	found, err := d.dp.Attached()
	if err != nil {
		d.log.Warn("cannot tell whether the adopted data plane is attached; a failed start will leave it attached", "err", err)
		found = true
	}
	d.startAttached = !found
	return d.attach()
}

// takeVIPs takes the probed VIPs, recording those added for undoStart.
func (d *Daemon) takeVIPs(p vip.Prepared) error {
	t, err := d.host().vips.TakePrepared(p, d.log)
	d.startAdded = t.Added
	d.recordVIPs(t.Added, nil, t.Conflicts)
	if err != nil {
		return fmt.Errorf("take VIPs on %s: %w", d.cfg.Balancer.Interface, err)
	}
	return nil
}

// probeResult is what prepareVIPs delivers.
type probeResult struct {
	prepared vip.Prepared
	err      error
}

// prepareVIPs probes, in the background, for the VIPs lbd will take (none
// with BGP or an external owner); the channel delivers the one result.
func (d *Daemon) prepareVIPs(b config.Balancer, vips []netip.Addr) <-chan probeResult {
	c := make(chan probeResult, 1)
	if b.BGP != nil || !b.TakesVIPs() {
		close(c)
		return c
	}
	go func() {
		p, err := d.host().vips.Prepare(b.Interface, vips, d.log)
		c <- probeResult{p, err}
	}()
	return c
}

// undoStart takes back what a failed start changed: the VIPs it added and,
// when it created the data plane rather than adopting one, the program,
// link and maps. An adopted data plane stays as found: its maps were not
// programmed (goLiveAdopted does that last), it keeps forwarding, and
// undoAdopt restores its settings and detaches one found detached. A
// program found attached over maps Open did not adopt stays attached
// (undoOverFound). BGP announcements were withdrawn before (stopBGP).
func (d *Daemon) undoStart() {
	if len(d.startAdded) > 0 {
		if err := d.host().vips.ReleaseAdded(d.cfg.Balancer.Interface, d.startAdded, d.log); err != nil {
			d.log.Error("failed start: could not release the VIPs it added; remove them (ip addr del VIP dev "+d.cfg.Balancer.Interface+")",
				"vips", d.startAdded, "err", err)
		}
		d.recordVIPs(nil, d.startAdded, nil)
	}
	switch {
	case d.dp == nil:
	case d.dp.Adopted():
		d.undoAdopt()
	case d.startOverFound:
		d.undoOverFound()
	default:
		if err := d.dp.Remove(); err != nil {
			d.log.Error("failed start: could not remove the data plane it created; run `lbd detach`", "err", err)
		}
		d.dp = nil
		d.log.Info("failed start undone: the data plane it created is detached and unpinned")
	}
}

// undoAdopt puts an adopted data plane back as this start found it: the
// settings Open wrote (conntrack timeouts, interface MAC of this
// configuration) and, when it was found detached, detached again.
func (d *Daemon) undoAdopt() {
	if err := d.dp.RestoreSettings(); err != nil {
		d.log.Error("failed start: could not restore the adopted data plane's settings (conntrack timeouts, interface MAC): "+
			"they stay this configuration's until an lbd starts again on it", "err", err)
	}
	if !d.startAttached {
		return
	}
	if err := d.dp.Detach(); err != nil {
		d.log.Error("failed start: could not detach the adopted data plane it found detached and attached: "+
			"it forwards with no lbd checking the backends; run `lbd detach` to stop it", "err", err)
		return
	}
	d.log.Info("failed start undone: the adopted data plane, found detached, is detached again")
}

// noteFoundAttached notes, for a data plane Open did not adopt, whether a
// program is attached already: an earlier lbd's whose maps are being
// replaced (--replace-incompatible), or one whose maps are not pinned (an
// older lbd's failed replacing start unpinned them). In doubt,
// maps Open replaced count as attached (a failed start then detaches
// nothing) and fresh ones as not (a failed start removes what it made).
func (d *Daemon) noteFoundAttached() {
	found, err := d.dp.Attached()
	if err != nil {
		found = d.dp.Replaced()
		d.log.Warn("cannot tell whether a program is attached already; assuming so only over replaced maps", "replaced", found, "err", err)
	}
	d.startOverFound = found
}

// undoOverFound ends a failed start on maps Open did not adopt, with an
// earlier program found attached. Before this start's Attach that program
// forwards with its own maps: it stays attached and only this start's
// maps go (Unpin). Replaced ones were pinned under <pin_path>/next, never
// over the old ones, which stay pinned as found: `lbd status` reads them
// and the next start finds them. Once the Attach replaced the program,
// this one forwards with the maps it programmed, pinned in place of the
// old: detaching it would stop all forwarding, so it stays, attached and
// pinned as a stopped lbd leaves it. Its settings are not restored: the
// earlier ones belong to the replaced maps' layout.
func (d *Daemon) undoOverFound() {
	if d.startReplacedFound {
		d.log.Warn("failed start: its program replaced the one found attached and stays attached, forwarding with the maps it programmed; " +
			"fix the error and start lbd again, or run `lbd detach` to stop forwarding")
		return
	}
	pin := d.cfg.Balancer.PinPath
	switch err := d.dp.Unpin(); {
	case err != nil && d.dp.Replaced():
		d.log.Error("failed start: could not remove the maps it made under "+pin+"/next; the program found attached still forwards "+
			"with its own, pinned as found, and the next start removes them", "err", err)
	case err != nil:
		d.log.Error("failed start: could not unpin the maps it created; the program found attached still forwards, "+
			"but the next start would adopt these maps: delete the files under "+pin+" other than link and program", "err", err)
	}
	d.dp = nil
	d.log.Info("failed start undone: its maps are unpinned; the program found attached keeps forwarding with its own, pinned as found")
}

// warnLeftVIPs reports VIPs an earlier lbd took (vip_owner lbd) that are
// still on the interface now that another program owns the VIPs: they make
// this balancer answer ARP for them, standby or not. lbd does not remove
// them itself, since the owner (keepalived) may be relying on the same
// address; the operator does, once (`ip addr del`, or `lbd detach` before
// the restart).
func (d *Daemon) warnLeftVIPs() {
	ifname := d.cfg.Balancer.Interface
	owned, err := d.host().vips.Owned(ifname)
	if err != nil {
		d.log.Warn("cannot list the addresses of the interface", "interface", ifname, "err", err)
		return
	}
	if len(owned) > 0 {
		d.log.Warn("VIPs taken by an earlier lbd (vip_owner lbd) are still on the interface: this balancer answers ARP for them; "+
			"remove them (ip addr del VIP/32 dev "+ifname+") and let the VIP owner add them", "interface", ifname, "vips", owned)
	}
}

// seedFromDataplane starts from what the adopted data plane holds, so a
// restart keeps up backends up and their MACs known until checks and
// neighbour resolution say otherwise: no flow is moved by a restart.
// Pinned backends are matched to configured servers by Identity.
func (d *Daemon) seedFromDataplane() (observed, error) {
	obs := observed{health: map[string]health.State{}, macs: map[netip.Addr]net.HardwareAddr{}}
	if !d.dp.Adopted() {
		return obs, nil
	}
	st, err := d.dp.Stats()
	if err != nil {
		return obs, fmt.Errorf("read adopted data plane: %w", err)
	}
	id := IdentityOf(d.cfg)
	d.served = map[netip.Addr]bool{}
	// Drain is also what a failing backend of an on_failure: drain service
	// is pinned as: the reasons the last lbd recorded tell it from a
	// drained healthy one, so a restart does not put it back in rotation.
	recorded, _ := ReadReasons(d.opts.ReasonsFile)
	for _, s := range st.Services {
		d.served[s.VIP.Unmap()] = true
		cs := id.Service(s.VIP, s.Proto, s.Ports)
		for _, b := range s.Backends {
			if b.MAC != nil {
				obs.macs[b.Addr] = b.MAC
			}
			srv := Server(cs, b.Addr)
			if srv == nil || b.State == datapath.Down {
				continue
			}
			key := health.Key(cs.Name, srv.Name)
			if b.State == datapath.Drain && strings.HasPrefix(recorded[key], "health check failing") {
				continue
			}
			obs.health[key] = health.Up
		}
	}
	return obs, nil
}

func (d *Daemon) startObservers(ctx context.Context) error {
	var err error
	d.res, err = d.host().newNeighbours(ctx, neigh.Options{
		Interface: d.cfg.Balancer.Interface,
		Logger:    d.log,
		OnChange:  d.onNeighbor,
	})
	if err != nil {
		return fmt.Errorf("watch neighbours on %s: %w", d.cfg.Balancer.Interface, err)
	}
	d.res.SetAddrs(resolvable(d.cfg))
	for _, a := range resolvable(d.cfg) {
		if n, ok := d.res.Lookup(a); ok && n.MAC != nil {
			d.mu.Lock() // the resolver's OnChange may already run
			d.obs.macs[a] = n.MAC
			d.mu.Unlock()
		}
	}
	d.checks = d.host().newHealth(ctx, health.Options{Logger: d.log, OnChange: d.onHealth, OnResult: d.onResult, DSR: d.dsrOptions()})
	targets := healthTargets(d.cfg, d.initialFrom(d.cfg))
	if err := d.checks.Update(targets); err != nil {
		return fmt.Errorf("start health checks: %w", err)
	}
	d.targets = newTargetSet(targets)
	return nil
}

// initialFrom gives the state a health target starts in: what was observed
// for the same service and address under prev, the configuration those
// observations belong to; Down for anything new. A server that keeps its
// name but changes address is a new backend and must earn its way in.
func (d *Daemon) initialFrom(prev *config.Config) func(service string, addr netip.Addr) health.State {
	// Indexed once: a lookup per target over every service made a reload
	// of 1,000 services x 3 servers cost 3 million comparisons.
	type at struct {
		service string
		addr    netip.Addr
	}
	names := map[at]string{}
	for _, s := range prev.Services {
		for _, srv := range s.Servers {
			if _, dup := names[at{s.Name, srv.Address}]; !dup {
				names[at{s.Name, srv.Address}] = srv.Name
			}
		}
	}
	return func(service string, addr netip.Addr) health.State {
		name, ok := names[at{service, addr}]
		if !ok {
			return health.Down
		}
		d.mu.Lock() // checkers write obs.health concurrently
		defer d.mu.Unlock()
		return d.obs.health[health.Key(service, name)]
	}
}

// resolvable lists the backend addresses whose MAC must be looked up:
// those without a static mac in the configuration.
func resolvable(cfg *config.Config) []netip.Addr {
	seen := map[netip.Addr]bool{}
	var out []netip.Addr
	for _, s := range cfg.Services {
		for _, srv := range s.Servers {
			if srv.MAC == nil && !seen[srv.Address] {
				seen[srv.Address] = true
				out = append(out, srv.Address)
			}
		}
	}
	return out
}

func (d *Daemon) onHealth(t health.Target, s health.State, reason string) {
	d.mu.Lock()
	d.obs.health[t.Key] = s
	d.obs.noteCheck(t.Key, s)
	d.mu.Unlock()
	d.markDirty()
}

func (d *Daemon) onNeighbor(n neigh.Neighbor) {
	d.mu.Lock()
	if n.MAC == nil {
		delete(d.obs.macs, n.Addr)
	} else {
		d.obs.macs[n.Addr] = n.MAC
	}
	d.mu.Unlock()
	d.markDirty()
}

// markDirty asks the loop to reprogram the data plane. Events that arrive
// while a write is pending coalesce into it.
func (d *Daemon) markDirty() {
	select {
	case d.dirty <- struct{}{}:
	default:
	}
}

// apply writes the desired state to the data plane and logs each backend
// that enters or leaves rotation, once.
// An Apply that failed past its commit point (ErrCommitted) put svcs in
// force: they are announced and noted as applied, then the error makes
// the caller retry.
func (d *Daemon) apply() error {
	svcs, reasons := d.desiredNow()
	err := d.dp.Apply(svcs)
	if err != nil && !errors.Is(err, datapath.ErrCommitted) {
		return fmt.Errorf("program data plane: %w", err)
	}
	d.noteStates(svcs, reasons)
	if err := d.announce(svcs); err != nil {
		return err
	}
	d.noteApplied(svcs, reasons)
	if err != nil {
		return fmt.Errorf("program data plane: %w", err)
	}
	return nil
}

// applyFailure says what a failed apply left in force, for the log.
func applyFailure(err error) string {
	switch {
	case errors.Is(err, datapath.ErrCommitted):
		return "data plane updated, but retiring what it no longer uses failed; retrying"
	case errors.Is(err, errAnnounce):
		return "data plane updated, but updating the BGP announcements failed; retrying"
	}
	return "data plane update failed and was undone: the previous state keeps forwarding; retrying"
}

// desiredNow is the data plane's services for the configuration and what
// is observed now, and why each backend out of rotation is.
func (d *Daemon) desiredNow() ([]datapath.Service, why) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.syncAdmin() // admin.go
	return desired(d.cfg, d.obs)
}

// noteApplied logs the backends that entered or left rotation, records
// why they are out and sends the state changes, once svcs is programmed.
func (d *Daemon) noteApplied(svcs []datapath.Service, reasons why) {
	for key, r := range reasons {
		if d.out[key] != r {
			d.logOut(key, r) // admin.go
		}
	}
	for key := range d.out {
		if _, still := reasons[key]; !still {
			d.log.Info("backend in rotation", "backend", key)
		}
	}
	d.recordReasons(reasons)
	d.out = reasons
	d.noteChanges(svcs, reasons) // admin.go
}

func (d *Daemon) loop(ctx context.Context) error {
	wctx, stopWatchdog := context.WithCancel(ctx)
	defer stopWatchdog()
	go d.runWatchdog(wctx)
	d.publishStatus()
	var bgpTick <-chan time.Time
	if d.bgp != nil && d.opts.BGPStatusFile != "" {
		t := time.NewTicker(2 * time.Second)
		defer t.Stop()
		bgpTick = t.C
	}
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	attachTick := time.NewTicker(d.host().attachEvery)
	defer attachTick.Stop()
	for {
		var step func()
		select {
		case <-ctx.Done():
			d.opts.Notify("STOPPING=1")
			d.log.Info("lbd stopping: the data plane stays attached and keeps forwarding")
			return nil
		case <-d.opts.Reload:
			step = func() { d.doReload() } // SIGHUP: the verdict is in the log
		case reply := <-d.reloadReqs:
			step = func() { reply <- d.doReload() }
		case r := <-d.adm.reqs: // lbd set (admin.go)
			step = func() { r.reply <- d.doSet(r.req) }
		case <-d.dirty:
			step = func() {
				if err := d.apply(); err != nil {
					d.log.Error(applyFailure(err), "err", err)
					retry.Reset(time.Second)
				}
			}
		case <-retry.C:
			step = d.markDirty
		case <-bgpTick:
			step = func() { d.writeBGPStatus(ctx) }
		case <-attachTick.C:
			step = func() { d.watchAttach(); d.retryVIPs() }
		}
		d.live.begin()
		step()
		d.publishStatus()
		d.live.end()
	}
}

// stop ends the observers and releases the data plane's file descriptors.
// Program, maps and VIPs stay: forwarding continues without lbd. In BGP
// mode the VIPs are withdrawn first and the routers given
// bgp.withdraw_wait to move traffic away while this balancer still
// forwards.
func (d *Daemon) stop() {
	d.stopARPGuard()
	d.stopBGP()
	if d.metrics != nil {
		d.metrics.close()
	} else if d.metricsLn != nil {
		d.metricsLn.Close() // the start failed before serving
	}
	if d.checks != nil {
		d.checks.Close()
	}
	if d.res != nil {
		d.res.Close()
	}
	if d.dp != nil {
		d.dp.Close()
	}
}

// loadConfig loads the file and checks what lbd needs from it.
func loadConfig(l *config.Loader, path string) (*config.Config, error) {
	cfg, err := l.Load(path)
	if err != nil {
		return nil, err
	}
	if err := cfg.RequireBalancer(); err != nil {
		return nil, err
	}
	// ca_file and command of the checks: a missing one is refused at
	// start, and a reload naming one keeps the running configuration.
	if err := cfg.CheckFiles(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// checkOnLink refuses backends DSR cannot reach: only the destination MAC
// is rewritten, so every backend must be on the interface's segment.
func checkOnLink(cfg *config.Config) error { return checkOnLinkVia(neigh.OnLink, cfg) }

// checkOnLinkVia is checkOnLink asking onLink (the host's route lookup).
func checkOnLinkVia(onLink func(string, netip.Addr) error, cfg *config.Config) error {
	var errs config.Errors
	seen := map[netip.Addr]bool{}
	for _, s := range cfg.Services {
		for _, srv := range s.Servers {
			if seen[srv.Address] {
				continue
			}
			seen[srv.Address] = true
			if err := onLink(cfg.Balancer.Interface, srv.Address); err != nil {
				errs = append(errs, &config.Error{File: cfg.File, Line: srv.Line,
					Path: fmt.Sprintf("service %s, server %s", s.Name, srv.Name), Msg: err.Error()})
			}
		}
	}
	if len(errs) > 0 {
		return errs
	}
	return nil
}

// saveRunning keeps a copy of the configuration in force, so a dry-run
// reload can tell what would change.
func (d *Daemon) saveRunning() {
	if d.opts.RunningCopy == "" {
		return
	}
	b, err := os.ReadFile(d.cfg.File)
	if err == nil {
		err = os.WriteFile(d.opts.RunningCopy, b, 0o644)
	}
	if err != nil {
		d.log.Warn("cannot keep a copy of the running configuration; lbd reload --dry-run will compare with nothing", "err", err)
	}
}
