package arpguard

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/mdlayher/packet"

	"github.com/dsrlb/dsrlb/lbd/vip"
)

// Defaults of Options.
const (
	// DefaultInterval is how often each VIP is asked for (at most): a
	// backend that answers only when asked is found within it.
	DefaultInterval = 5 * time.Second
	// MinGap bounds the probe rate: at most one request every 50 ms
	// (20 frames a second), whatever the number of VIPs; with more than
	// Interval/MinGap VIPs a round takes n×MinGap.
	MinGap = 50 * time.Millisecond
	// DefaultHold is how many rounds a conflict must go unseen to clear.
	DefaultHold = 3
	// DefaultRepeatLog is how often a lasting conflict is logged again.
	DefaultRepeatLog = time.Minute
)

// Targets is what the guard watches, asked for every round and on every
// sighting, so a reload or a newly resolved MAC takes effect without a
// restart.
type Targets struct {
	VIPs   []netip.Addr
	Policy Policy
}

// Options configure a Guard.
type Options struct {
	Interface string
	// Namespace is where Interface is; the zero value is the current one.
	Namespace vip.Namespace
	Interval  time.Duration // DefaultInterval when 0
	Gap       time.Duration // between two requests; MinGap when smaller
	Hold      int           // rounds; DefaultHold when 0
	RepeatLog time.Duration // DefaultRepeatLog when 0
	Targets   func() Targets
	Logger    *slog.Logger
	// OnChange, when set, is called (on the guard's goroutines) after a
	// conflict begins or clears.
	OnChange func()
}

// Guard is a running ARP/ND guard.
type Guard struct {
	opts   Options
	log    *slog.Logger
	seg    *vip.Segment
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	vips    map[netip.Addr]bool // the last round's, for the listeners
	policy  Policy              // the last round's
	track   *tracker
	lastErr string // the last probe error, logged once
}

// Start opens the packet sockets on the interface (CAP_NET_RAW) and runs
// the guard until Close or ctx ends.
func Start(ctx context.Context, opts Options) (*Guard, error) {
	if opts.Targets == nil {
		return nil, errors.New("start ARP guard: no targets")
	}
	if opts.Interval <= 0 {
		opts.Interval = DefaultInterval
	}
	opts.Gap = max(opts.Gap, MinGap)
	if opts.Hold <= 0 {
		opts.Hold = DefaultHold
	}
	if opts.RepeatLog <= 0 {
		opts.RepeatLog = DefaultRepeatLog
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Namespace == (vip.Namespace{}) {
		opts.Namespace = vip.Current() // the zero handle is fd 0, not "current"
	}
	seg, err := opts.Namespace.OpenSegment(opts.Interface, true, true)
	if err != nil {
		return nil, fmt.Errorf("start ARP guard on %s: %w", opts.Interface, err)
	}
	if !seg.Ethernet() {
		seg.Close()
		return nil, fmt.Errorf("start ARP guard on %s: not an Ethernet interface", opts.Interface)
	}
	ctx, cancel := context.WithCancel(ctx)
	g := &Guard{opts: opts, log: opts.Logger, seg: seg, ctx: ctx, cancel: cancel, track: newTracker(opts.RepeatLog), vips: map[netip.Addr]bool{}}
	g.refreshVIPs()
	for _, c := range []*packet.Conn{seg.ARP, seg.ND} {
		g.wg.Add(1)
		go func() {
			defer g.wg.Done()
			g.listen(c)
		}()
	}
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		g.probeLoop(ctx)
	}()
	go func() { // a cancelled context closes the sockets, ending the listeners
		<-ctx.Done()
		seg.Close()
	}()
	return g, nil
}

// Close stops the guard and waits for its goroutines.
func (g *Guard) Close() {
	g.cancel()
	g.wg.Wait()
}

// Conflicts are the MACs currently seen answering for a VIP, by VIP.
func (g *Guard) Conflicts() []Conflict {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.track.list()
}

// refreshVIPs takes the current targets for the listeners (once a round:
// building the policy walks every configured server) and returns them.
func (g *Guard) refreshVIPs() Targets {
	t := g.opts.Targets()
	set := make(map[netip.Addr]bool, len(t.VIPs))
	for _, v := range t.VIPs {
		set[v.Unmap()] = true
	}
	g.mu.Lock()
	g.vips, g.policy = set, t.Policy
	g.mu.Unlock()
	return t
}

func (g *Guard) isVIP(a netip.Addr) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.vips[a.Unmap()]
}

// listen reads claims until the socket is closed.
func (g *Guard) listen(c *packet.Conn) {
	buf := make([]byte, 1514)
	for {
		n, _, err := c.ReadFrom(buf)
		if err != nil {
			if g.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			// A transient read error (ENOBUFS...): keep listening, without
			// spinning on one that repeats.
			sleep(g.ctx, 100*time.Millisecond)
			continue
		}
		if s, ok := vip.ParseSighting(buf[:n], g.seg.Ifi.HardwareAddr, g.isVIP); ok {
			g.judge(s, time.Now())
		}
	}
}

// judge records a sighting the policy reports, and logs it as the tracker
// says. A MAC the neighbour table learns mid-round is named from the next
// round on (logged again then: evNewOwner).
func (g *Guard) judge(s vip.Sighting, now time.Time) {
	g.mu.Lock()
	pol := g.policy
	report, bs := pol.Judge(g.seg.Ifi.HardwareAddr, s.MAC)
	if probe(s.Kind) && len(bs) == 0 {
		// A probe claims nothing: switches' IP device tracking and any
		// host checking before it takes an address send these. From a
		// backend it is a VIP on an interface other than lo: reported.
		report = false
	}
	var c Conflict
	var ev event
	if report {
		c, ev = g.track.seen(s, bs, now)
	}
	g.mu.Unlock()
	switch ev {
	case evNew, evNewOwner:
		g.log.Error(conflictText(c, pol.Mode), conflictAttrs(c)...)
		if ev == evNew && g.opts.OnChange != nil {
			g.opts.OnChange()
		}
	case evOverflow:
		g.log.Error(fmt.Sprintf("more than %d MACs answering for VIPs: %s and others not tracked (a host spraying ARP/ND claims?)", MaxConflicts, conflictText(c, pol.Mode)),
			append(conflictAttrs(c), "untracked_sightings", c.Seen)...)
	case evRepeat:
		g.log.Error("still: "+conflictText(c, pol.Mode), append(conflictAttrs(c), "since", c.Since.UTC().Format(time.RFC3339), "frames", c.Seen)...)
	}
}

// probe reports whether k only asks about the VIP (RFC 5227 probe, DAD).
func probe(k vip.ClaimKind) bool { return k == vip.ARPProbe || k == vip.DADProbe }

// conflictText is the one line an operator reads: which VIP, which MAC,
// whose, and what to do.
func conflictText(c Conflict, m Mode) string {
	if len(c.Backends) > 0 {
		return fmt.Sprintf("VIP %s answered by %s = backend %s: arp_ignore/arp_announce reset? run hostprep (hostprep check shows the drift)",
			c.VIP, c.MAC, BackendsText(c.Backends))
	}
	who := "another host"
	if m == OwnerBGP {
		who = "a host on the segment (with BGP nobody should)"
	}
	return fmt.Sprintf("VIP %s answered by %s, %s, not this balancer: it takes the VIP's traffic; find it (ip neigh, the switch's MAC table) and remove the VIP from it",
		c.VIP, c.MAC, who)
}

func conflictAttrs(c Conflict) []any {
	return []any{"vip", c.VIP.String(), "mac", c.MAC.String(), "backend", BackendsText(c.Backends), "seen_as", c.Kind.String()}
}

// probeLoop asks for every VIP each round, Gap apart at least, and clears
// the conflicts not seen for Hold rounds.
func (g *Guard) probeLoop(ctx context.Context) {
	for {
		t := g.refreshVIPs()
		round := g.round(ctx, t.VIPs)
		if ctx.Err() != nil {
			return
		}
		g.expire(time.Now(), time.Duration(g.opts.Hold)*round)
	}
}

// round sends one request per VIP (an ARP who-has for IPv4, a neighbour
// solicitation for IPv6) spread over the interval, and returns how long
// the round took (Interval, or n×Gap when longer).
func (g *Guard) round(ctx context.Context, vips []netip.Addr) time.Duration {
	start := time.Now()
	gap := g.opts.Gap
	if n := len(vips); n > 0 {
		gap = max(gap, g.opts.Interval/time.Duration(n))
	}
	src4, src6, err := g.seg.Sources(g.isVIP)
	g.noteErr(err)
	for _, v := range vips {
		if v = v.Unmap(); v.Is4() {
			err = g.seg.SendARP(src4, []netip.Addr{v})
		} else {
			err = g.seg.SendNS(src6, []netip.Addr{v})
		}
		g.noteErr(err)
		if !sleep(ctx, gap) {
			return time.Since(start)
		}
	}
	if rest := g.opts.Interval - time.Since(start); rest > 0 {
		sleep(ctx, rest)
	}
	return max(time.Since(start), g.opts.Interval)
}

// noteErr logs a probe error once, and its end.
func (g *Guard) noteErr(err error) {
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	g.mu.Lock()
	last := g.lastErr
	g.lastErr = msg
	g.mu.Unlock()
	switch {
	case msg != "" && msg != last:
		g.log.Warn("ARP guard: probing failed; still listening", "interface", g.opts.Interface, "err", err)
	case msg == "" && last != "":
		g.log.Info("ARP guard: probing works again", "interface", g.opts.Interface)
	}
}

func (g *Guard) expire(now time.Time, hold time.Duration) {
	g.mu.Lock()
	gone := g.track.expire(now, hold)
	g.mu.Unlock()
	for _, c := range gone {
		g.log.Info(fmt.Sprintf("VIP %s no longer answered by %s: ARP conflict cleared", c.VIP, c.MAC),
			append(conflictAttrs(c), "since", c.Since.UTC().Format(time.RFC3339), "last_seen", c.LastSeen.UTC().Format(time.RFC3339))...)
	}
	if len(gone) > 0 && g.opts.OnChange != nil {
		g.opts.OnChange()
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
