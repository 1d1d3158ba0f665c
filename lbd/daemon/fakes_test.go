package daemon

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dsrlb/dsrlb/lbd/bgp"
	"github.com/dsrlb/dsrlb/lbd/datapath"
	"github.com/dsrlb/dsrlb/lbd/health"
	"github.com/dsrlb/dsrlb/lbd/neigh"
	"github.com/dsrlb/dsrlb/lbd/vip"
	"github.com/dsrlb/dsrlb/shared/config"
)

// fakeHost is the outside world of an in-process Run (seams.go): an
// in-memory data plane, neighbour table, health checker and VIP table
// that record what the daemon asked of them, and a fixed clock. The
// kernel-facing packages have their own tests against the real kernel;
// these test the daemon's lifecycle around them.
type fakeHost struct {
	steps  *steps
	dp     *fakeDataplane
	neigh  *fakeNeigh
	health *fakeHealth
	vips   *fakeVIPs
	bgp    *fakeBGP // started in BGP mode only
	// offLink are addresses the route lookup says are not on-link.
	offLink map[netip.Addr]bool
	// privileges, when set, is what the privilege check says.
	privileges error
	now        time.Time
	clock      sync.Mutex // guards now once lbd runs (advance)
	// attachEvery, when set, replaces the loop's 10ms attach check (and
	// VIP retry) period.
	attachEvery time.Duration
}

// advance moves the fake clock on by dt while lbd runs.
func (h *fakeHost) advance(dt time.Duration) {
	h.clock.Lock()
	h.now = h.now.Add(dt)
	h.clock.Unlock()
}

func newFakeHost() *fakeHost {
	ev := &steps{}
	dp := &fakeDataplane{steps: ev}
	return &fakeHost{
		steps:   ev,
		dp:      dp,
		bgp:     &fakeBGP{steps: ev, dp: dp, routes: map[netip.Addr]bgp.Route{}},
		neigh:   &fakeNeigh{macs: map[netip.Addr]net.HardwareAddr{}},
		health:  &fakeHealth{states: map[string]health.State{}},
		vips:    &fakeVIPs{owned: map[netip.Addr]bool{}, steps: ev},
		offLink: map[netip.Addr]bool{},
		now:     time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC),
	}
}

// steps is the order of the kernel-facing steps of a run across the
// fakes (open, apply, attach, VIPs, notifications).
type steps struct {
	mu   sync.Mutex
	list []string
}

func (s *steps) add(step string) { s.mu.Lock(); s.list = append(s.list, step); s.mu.Unlock() }

// index is the position of the first step named step, -1 when none.
func (s *steps) index(step string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Index(s.list, step)
}

// first is the first n steps.
func (s *steps) first(n int) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.list[:min(n, len(s.list))])
}

func (h *fakeHost) system() *system {
	return &system{
		checkInterface:  func(*config.Config) error { return nil },
		checkPrivileges: func() error { return h.privileges },
		ensureBPFFS:     func(string, *slog.Logger) error { return nil },
		onLink: func(ifname string, a netip.Addr) error {
			if h.offLink[a] {
				return fmt.Errorf("%s is not on-link from %s", a, ifname)
			}
			return nil
		},
		openDataplane: func(datapath.Options, *slog.Logger) (dataPlane, error) {
			h.dp.mu.Lock()
			defer h.dp.mu.Unlock()
			h.dp.opened++
			h.steps.add("open")
			if h.dp.openErr != nil {
				return nil, h.dp.openErr
			}
			return h.dp, nil
		},
		newNeighbours: func(_ context.Context, o neigh.Options) (neighbours, error) {
			h.neigh.mu.Lock()
			defer h.neigh.mu.Unlock()
			h.neigh.onChange = o.OnChange
			return h.neigh, nil
		},
		newHealth: func(_ context.Context, o health.Options) healthChecks {
			h.health.mu.Lock()
			defer h.health.mu.Unlock()
			h.health.onChange = o.OnChange
			return h.health
		},
		startBGP: func(_ context.Context, cfg config.BGP, iface string, _ *slog.Logger) (bgpSpeaker, error) {
			h.bgp.mu.Lock()
			defer h.bgp.mu.Unlock()
			h.bgp.started++
			h.bgp.cfg, h.bgp.iface = cfg, iface
			h.steps.add("bgp start")
			if h.bgp.startErr != nil {
				return nil, h.bgp.startErr
			}
			return h.bgp, nil
		},
		vips:        h.vips,
		now:         func() time.Time { h.clock.Lock(); defer h.clock.Unlock(); return h.now },
		attachEvery: cmp.Or(h.attachEvery, 10*time.Millisecond),
	}
}

// fakeDataplane keeps every Apply, in order.
type fakeDataplane struct {
	steps   *steps
	mu      sync.Mutex
	adopted bool
	pinned  []datapath.ServiceStats // what an adopted data plane holds
	openErr error
	// attachErr, applyErr and reattachErr fail those calls while set;
	// detached makes CheckAttached fail until a Reattach succeeds.
	attachErr, applyErr, reattachErr error
	// fitsErr fails Fits (and so a reload) while set.
	fitsErr    error
	detached   bool
	reattached int
	// foundDetached: an adopted data plane Open found not attached.
	// foundAttached: a data plane Open did not adopt found with an
	// earlier program attached; replaced: Open made fresh maps for its
	// incompatible ones (under next/, the old ones still pinned).
	foundDetached, foundAttached, replaced bool
	// detaches counts Detach calls (a failed start undoing its attach),
	// restores RestoreSettings calls.
	detaches, restores int

	opened, attached          int
	applied                   [][]datapath.Service
	removed, unpinned, closed bool
	attachedErr               error // Attached cannot tell
	checks                    int   // CheckAttached calls: the loop's attach ticks
}

func (f *fakeDataplane) Adopted() bool { f.mu.Lock(); defer f.mu.Unlock(); return f.adopted }

func (f *fakeDataplane) Replaced() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.replaced
}

// Stats is what was pinned, then what was last applied.
func (f *fakeDataplane) Stats() (datapath.Stats, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.applied) == 0 {
		return datapath.Stats{Services: slices.Clone(f.pinned)}, nil
	}
	var st datapath.Stats
	for _, s := range f.applied[len(f.applied)-1] {
		ss := datapath.ServiceStats{Name: s.Name, VIP: s.VIP, Proto: s.Proto, Ports: s.Ports}
		for _, b := range s.Backends {
			ss.Backends = append(ss.Backends, datapath.BackendStats{Name: b.Name, Addr: b.Addr, MAC: b.MAC, State: b.State, Weight: b.Weight})
		}
		st.Services = append(st.Services, ss)
	}
	return st, nil
}

func (f *fakeDataplane) Apply(svcs []datapath.Service) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	// Past the commit point the services are in force all the same.
	if f.applyErr != nil && !errors.Is(f.applyErr, datapath.ErrCommitted) {
		return f.applyErr
	}
	f.applied = append(f.applied, slices.Clone(svcs))
	f.steps.add("apply")
	return f.applyErr
}

func (f *fakeDataplane) Fits([]datapath.Service) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.fitsErr
}

func (f *fakeDataplane) Attach() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.attachErr != nil {
		return f.attachErr
	}
	f.attached++
	f.steps.add("attach")
	return nil
}

// Attached is whether the data plane is attached: by this run, or, for
// an adopted one, as found.
func (f *fakeDataplane) Attached() (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.attachedErr != nil {
		return false, f.attachedErr
	}
	return f.attached > 0 || f.adopted && !f.foundDetached || f.foundAttached, nil
}

func (f *fakeDataplane) Detach() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.detaches++
	f.steps.add("detach")
	return nil
}

func (f *fakeDataplane) RestoreSettings() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.restores++
	return nil
}

// CheckAttached fails while detached is set, as after `bpftool link
// detach`; Reattach clears it unless reattachErr is set.
func (f *fakeDataplane) CheckAttached() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.checks++
	if f.detached {
		return errors.New("program detached")
	}
	return nil
}

func (f *fakeDataplane) Reattach() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reattached++
	if f.reattachErr != nil {
		return f.reattachErr
	}
	f.detached = false
	return nil
}

func (f *fakeDataplane) ActiveFlows(*datapath.Stats) error { return nil }
func (f *fakeDataplane) ConntrackLimit() uint32            { return 1024 }
func (f *fakeDataplane) ConntrackEntries() (uint64, error) { return 0, nil }
func (f *fakeDataplane) Remove() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.removed = true
	f.steps.add("remove")
	return nil
}

func (f *fakeDataplane) Unpin() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.unpinned = true
	f.steps.add("unpin")
	return nil
}

func (f *fakeDataplane) Close() error { f.mu.Lock(); f.closed = true; f.mu.Unlock(); return nil }
func (f *fakeDataplane) ConntrackStats() (datapath.ConntrackStats, error) {
	return datapath.ConntrackStats{}, nil
}

// applies is how many Apply calls succeeded.
func (f *fakeDataplane) applies() int { f.mu.Lock(); defer f.mu.Unlock(); return len(f.applied) }

// last is the last applied state: service name → backend name → state.
func (f *fakeDataplane) last() map[string]map[string]datapath.State {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]map[string]datapath.State{}
	if len(f.applied) == 0 {
		return out
	}
	for _, s := range f.applied[len(f.applied)-1] {
		out[s.Name] = map[string]datapath.State{}
		for _, b := range s.Backends {
			out[s.Name][b.Name] = b.State
		}
	}
	return out
}

// attachChecks is how many times the loop checked the attach.
func (f *fakeDataplane) attachChecks() int { f.mu.Lock(); defer f.mu.Unlock(); return f.checks }

func (f *fakeDataplane) state() (attached int, removed, closed bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.attached, f.removed, f.closed
}

// fakeNeigh is a neighbour table the test edits through set.
type fakeNeigh struct {
	mu       sync.Mutex
	macs     map[netip.Addr]net.HardwareAddr
	watched  []netip.Addr
	onChange func(neigh.Neighbor)
	closed   bool
}

func (n *fakeNeigh) SetAddrs(a []netip.Addr) { n.mu.Lock(); n.watched = slices.Clone(a); n.mu.Unlock() }
func (n *fakeNeigh) Close()                  { n.mu.Lock(); n.closed = true; n.mu.Unlock() }

func (n *fakeNeigh) Lookup(a netip.Addr) (neigh.Neighbor, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	mac, ok := n.macs[a]
	return neigh.Neighbor{Addr: a, MAC: mac}, ok
}

// set changes a MAC (nil: resolution failed) and tells the daemon, as the
// resolver does from its own goroutine.
func (n *fakeNeigh) set(a netip.Addr, mac net.HardwareAddr) {
	n.mu.Lock()
	n.macs[a] = mac
	f := n.onChange
	n.mu.Unlock()
	f(neigh.Neighbor{Addr: a, MAC: mac})
}

func (n *fakeNeigh) addrs() []netip.Addr {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.watched)
}

// fakeHealth keeps the targets of every Update; set plays a check result.
type fakeHealth struct {
	mu       sync.Mutex
	targets  []health.Target
	updates  int
	states   map[string]health.State
	onChange health.ChangeFunc
	closed   bool
	// updateErr, when set, makes Update refuse the targets.
	updateErr error
}

// Update keeps the state of unchanged targets, starts new ones in their
// Initial state and, as health.Manager does, reports type none targets
// up at once.
func (h *fakeHealth) Update(ts []health.Target) error {
	h.mu.Lock()
	if h.updateErr != nil {
		h.mu.Unlock()
		return h.updateErr
	}
	old := map[string]health.Target{}
	for _, t := range h.targets {
		old[t.Key] = t
	}
	h.updates++
	h.targets = slices.Clone(ts)
	states := map[string]health.State{}
	var up []health.Target
	for _, t := range ts {
		prev, had := old[t.Key]
		switch {
		case had && prev.Addr == t.Addr && prev.Check == t.Check:
			states[t.Key] = h.states[t.Key]
		case t.Check.Type == config.CheckNone:
			states[t.Key] = health.Up
			up = append(up, t)
		default:
			states[t.Key] = t.Initial
		}
	}
	h.states = states
	f := h.onChange
	h.mu.Unlock()
	for _, t := range up {
		if t.Initial != health.Up {
			f(t, health.Up, "check disabled: always up")
		}
	}
	return nil
}

func (h *fakeHealth) State(key string) (health.State, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	s, ok := h.states[key]
	return s, ok
}

func (h *fakeHealth) Status() []health.Status {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]health.Status, 0, len(h.targets))
	for _, t := range h.targets {
		out = append(out, health.Status{Target: t, State: h.states[t.Key]})
	}
	return out
}

func (h *fakeHealth) Close() { h.mu.Lock(); h.closed = true; h.mu.Unlock() }

// set is a check's verdict changing: the state is kept and the daemon told.
func (h *fakeHealth) set(key string, s health.State) {
	h.mu.Lock()
	h.states[key] = s
	i := slices.IndexFunc(h.targets, func(t health.Target) bool { return t.Key == key })
	f := h.onChange
	var t health.Target
	if i >= 0 {
		t = h.targets[i]
	}
	h.mu.Unlock()
	if i < 0 {
		panic("fakeHealth.set: no target " + key)
	}
	f(t, s, "test")
}

// initial is the Initial of each target of the last Update.
func (h *fakeHealth) initial() map[string]health.State {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := map[string]health.State{}
	for _, t := range h.targets {
		out[t.Key] = t.Initial
	}
	return out
}

// fakeVIPs is the interface's address table; calls are logged in order.
type fakeVIPs struct {
	steps   *steps
	mu      sync.Mutex
	owned   map[netip.Addr]bool
	history []string
	takeErr error
	// takeFails, when set, makes TakePrepared fail having added nothing;
	// claimFails does the same to Claim.
	takeFails, claimFails bool
	// claimAnswered are VIPs another host answers for: Claim reports them
	// as conflicts and does not take them.
	claimAnswered map[netip.Addr]net.HardwareAddr
	// probeErr, when set, fails Prepare (the probe for the VIPs).
	probeErr error
}

func (v *fakeVIPs) log(format string, args ...any) {
	v.history = append(v.history, fmt.Sprintf(format, args...))
	if !strings.HasPrefix(format, "prepare") { // probing runs beside the data plane's load
		v.steps.add(v.history[len(v.history)-1])
	}
}

func (v *fakeVIPs) add(vips []netip.Addr) []netip.Addr {
	var added []netip.Addr
	for _, a := range vips {
		if !v.owned[a] {
			v.owned[a] = true
			added = append(added, a)
		}
	}
	return added
}

func (v *fakeVIPs) Prepare(ifname string, vips []netip.Addr, _ *slog.Logger) (vip.Prepared, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.log("prepare %s %v", ifname, vips)
	var missing []netip.Addr
	for _, a := range vips {
		if !v.owned[a] {
			missing = append(missing, a)
		}
	}
	return vip.Unprobed(ifname, missing), v.probeErr
}

// TakePrepared adds what Prepare found missing; with takeErr it fails
// after adding them, as a netlink error halfway would.
func (v *fakeVIPs) TakePrepared(p vip.Prepared, _ *slog.Logger) (vip.Taken, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.takeFails {
		v.log("take %v failed", p.Missing())
		return vip.Taken{}, errFake
	}
	added := v.add(p.Missing())
	v.log("take %v", added)
	return vip.Taken{Added: added}, v.takeErr
}

func (v *fakeVIPs) Claim(ifname string, vips []netip.Addr, _ *slog.Logger) (vip.Taken, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.claimFails {
		v.log("claim %v failed", vips)
		return vip.Taken{}, errFake
	}
	var t vip.Taken
	for _, a := range vips {
		if mac, ok := v.claimAnswered[a]; ok {
			t.Conflicts = append(t.Conflicts, vip.Conflict{VIP: a, MAC: mac})
		}
	}
	t.Added = v.add(slices.DeleteFunc(slices.Clone(vips), func(a netip.Addr) bool { return v.claimAnswered[a] != nil }))
	v.log("claim %v", t.Added)
	return t, nil
}

func (v *fakeVIPs) release(verb string, vips []netip.Addr) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if len(vips) == 0 {
		return nil
	}
	v.log("%s %v", verb, vips)
	for _, a := range vips {
		delete(v.owned, a)
	}
	return nil
}

func (v *fakeVIPs) Release(_ string, vips []netip.Addr, _ *slog.Logger) error {
	return v.release("release", vips)
}

func (v *fakeVIPs) ReleaseAdded(_ string, vips []netip.Addr, _ *slog.Logger) error {
	return v.release("release-added", vips)
}

func (v *fakeVIPs) Owned(string) ([]netip.Addr, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	var out []netip.Addr
	for a := range v.owned {
		out = append(out, a)
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out, nil
}

func (v *fakeVIPs) calls() []string { v.mu.Lock(); defer v.mu.Unlock(); return slices.Clone(v.history) }

// fakeBGP is the speaker: it keeps the announced routes and, as
// bgp.Speaker sends only differences to the peers, records each VIP
// announced or withdrawn (also as a step), and how it was stopped.
type fakeBGP struct {
	steps *steps
	dp    *fakeDataplane // to tell whether Stop came while it still forwarded
	mu    sync.Mutex
	cfg   config.BGP
	iface string
	// startErr fails the start; announceErr, while set, Announce.
	startErr, announceErr error
	started, announces    int
	routes                map[netip.Addr]bgp.Route
	events                []string
	dups                  []netip.Addr // VIPs given twice in one Announce
	stopped               int
	stopWait              time.Duration
	closedAtStop          bool // the data plane's descriptors were closed before Stop
}

func (b *fakeBGP) event(verb string, vip netip.Addr) {
	e := verb + " " + vip.String()
	b.events = append(b.events, e)
	b.steps.add(e)
}

// Announce withdraws what is gone or changed, then announces what is new,
// in address order, as bgp.Speaker does.
func (b *fakeBGP) Announce(routes []bgp.Route) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.announceErr != nil {
		return b.announceErr
	}
	b.announces++
	want := map[netip.Addr]bgp.Route{}
	for _, r := range routes {
		if _, dup := want[r.VIP]; dup {
			b.dups = append(b.dups, r.VIP)
		}
		want[r.VIP] = r
	}
	for _, vip := range slices.SortedFunc(maps.Keys(b.routes), netip.Addr.Compare) {
		if r, ok := want[vip]; !ok || !reflect.DeepEqual(r, b.routes[vip]) {
			delete(b.routes, vip)
			b.event("withdraw", vip)
		}
	}
	for _, vip := range slices.SortedFunc(maps.Keys(want), netip.Addr.Compare) {
		if _, ok := b.routes[vip]; !ok {
			b.routes[vip] = want[vip]
			b.event("announce", vip)
		}
	}
	return nil
}

func (b *fakeBGP) Status(context.Context) bgp.Status {
	b.mu.Lock()
	asn := b.cfg.ASN
	b.mu.Unlock()
	return bgp.Status{ASN: asn, Announced: b.announced()}
}

// Stop withdraws everything, as bgp.Speaker.Stop does before its wait.
func (b *fakeBGP) Stop(wait time.Duration) {
	b.dp.mu.Lock()
	closed := b.dp.closed
	b.dp.mu.Unlock()
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, vip := range slices.SortedFunc(maps.Keys(b.routes), netip.Addr.Compare) {
		delete(b.routes, vip)
		b.event("withdraw", vip)
	}
	b.stopped++
	b.stopWait, b.closedAtStop = wait, closed
	b.steps.add("bgp stop")
}

// announced is the VIPs announced now, sorted.
func (b *fakeBGP) announced() []netip.Addr {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.SortedFunc(maps.Keys(b.routes), netip.Addr.Compare)
}

func (b *fakeBGP) route(vip netip.Addr) (bgp.Route, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	r, ok := b.routes[vip]
	return r, ok
}

// calls is how many Announce calls succeeded (one per apply).
func (b *fakeBGP) calls() int { b.mu.Lock(); defer b.mu.Unlock(); return b.announces }

func (b *fakeBGP) history() []string { b.mu.Lock(); defer b.mu.Unlock(); return slices.Clone(b.events) }

// notes records systemd notifications (the watchdog sends from its own
// goroutine).
type notes struct {
	mu    sync.Mutex
	sent  []string
	steps *steps // READY=1, RELOADING=1 and STOPPING=1 are steps too
}

func (n *notes) notify(s string) {
	n.mu.Lock()
	n.sent = append(n.sent, s)
	n.mu.Unlock()
	if first, _, _ := strings.Cut(s, "\n"); n.steps != nil && (strings.HasSuffix(first, "ING=1") || first == "READY=1") {
		n.steps.add(first)
	}
}

func (n *notes) all() []string { n.mu.Lock(); defer n.mu.Unlock(); return slices.Clone(n.sent) }

// index is the position of the first notification at or after from that
// starts with prefix, -1 when none.
func (n *notes) index(from int, prefix string) int {
	all := n.all()
	for i := from; i < len(all); i++ {
		if strings.HasPrefix(all[i], prefix) {
			return i
		}
	}
	return -1
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

var errFake = errors.New("fake failure")
