package neigh

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// DefaultRefresh is how often the Resolver asks the kernel to re-resolve
// backends that have no usable MAC or whose entry went stale.
const DefaultRefresh = 5 * time.Second

// Neighbor is what the kernel knows of one backend address.
type Neighbor struct {
	Addr netip.Addr
	// MAC is the backend's MAC, nil when there is none the data plane may
	// use: the entry is absent, FAILED, or still INCOMPLETE on its first
	// resolution. Such a backend must not be in rotation.
	MAC net.HardwareAddr
	// State is the kernel's NUD state (netlink.NUD_*), NUD_NONE when there
	// is no entry.
	State int
}

// StateName returns the `ip neigh` name of State, e.g. "REACHABLE".
func (n Neighbor) StateName() string { return stateName(n.State) }

// usableStates have a MAC the kernel itself would send to. PROBE and DELAY
// are being re-confirmed, which keeps the MAC until it fails.
const usableStates = netlink.NUD_REACHABLE | netlink.NUD_STALE | netlink.NUD_DELAY |
	netlink.NUD_PROBE | netlink.NUD_PERMANENT | netlink.NUD_NOARP

// Options configure a Resolver.
type Options struct {
	// Interface is the balancer interface the backends are on.
	Interface string
	// Netns is the namespace to work in; nil means the current one.
	Netns *netns.NsHandle
	// Logger receives resolution failures and subscription trouble; nil discards.
	Logger *slog.Logger
	// OnChange receives a watched address's Neighbor whenever its MAC
	// changes (to, from or between MACs) and when its resolution fails.
	// It is called from the Resolver's goroutine: keep it short, and do
	// not call the Resolver from it.
	OnChange func(Neighbor)
	// Refresh is the re-resolution period; 0 means DefaultRefresh.
	Refresh time.Duration
}

// Resolver watches the neighbour entries of a set of backend addresses on
// one interface.
type Resolver struct {
	opts    Options
	log     *slog.Logger
	ns      netns.NsHandle
	h       *netlink.Handle
	ifindex int

	wake      chan struct{} // SetAddrs changed the set
	relist    chan struct{} // a dump was interrupted: read the table again
	cancel    context.CancelFunc
	done      chan struct{}
	closeOnce sync.Once

	mu       sync.Mutex
	watched  map[netip.Addr]*watch
	kernel   map[netip.Addr]Neighbor // every entry of the interface
	probeNew []netip.Addr            // watched by SetAddrs, not yet probed
}

// watch is what was last reported for a watched address.
type watch struct {
	n      Neighbor
	failed bool
}

// New reads the interface's neighbour table, subscribes to its changes and
// starts following them until ctx ends or Close is called. It watches
// nothing until SetAddrs.
func New(ctx context.Context, opts Options) (*Resolver, error) {
	r := &Resolver{
		opts:    opts,
		log:     opts.Logger,
		ns:      netns.None(),
		wake:    make(chan struct{}, 1),
		relist:  make(chan struct{}, 1),
		done:    make(chan struct{}),
		watched: map[netip.Addr]*watch{},
		kernel:  map[netip.Addr]Neighbor{},
	}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	r.log = r.log.With("interface", opts.Interface)
	if r.opts.Refresh <= 0 {
		r.opts.Refresh = DefaultRefresh
	}
	if opts.Netns != nil {
		r.ns = *opts.Netns
	}
	h, err := netlink.NewHandleAt(r.ns)
	if err != nil {
		return nil, fmt.Errorf("open netlink handle: %w", err)
	}
	r.h = h
	link, err := h.LinkByName(opts.Interface)
	if err != nil {
		h.Close()
		return nil, fmt.Errorf("find balancer interface %s: %w", opts.Interface, err)
	}
	r.ifindex = link.Attrs().Index
	if err := r.sync(); err != nil {
		h.Close()
		return nil, err
	}
	ch, stop, err := r.subscribe()
	if err != nil {
		h.Close()
		return nil, err
	}
	ctx, r.cancel = context.WithCancel(ctx)
	go r.run(ctx, ch, stop)
	return r, nil
}

// Close stops following the table and waits for the Resolver's goroutine.
// It is safe to call more than once.
func (r *Resolver) Close() {
	r.closeOnce.Do(func() {
		r.cancel()
		<-r.done
		r.h.Close()
	})
}

// SetAddrs makes addrs the set of watched backend addresses. A newly
// watched address the kernel already resolved is visible to Lookup when
// SetAddrs returns and is also reported to OnChange; the others are
// resolved at once and reported when the kernel answers (or gives up).
// Addresses no longer watched are forgotten without an event.
func (r *Resolver) SetAddrs(addrs []netip.Addr) {
	r.mu.Lock()
	next := make(map[netip.Addr]*watch, len(addrs))
	for _, a := range addrs {
		a = a.Unmap()
		if w, ok := r.watched[a]; ok {
			next[a] = w
			continue
		}
		w := &watch{n: Neighbor{Addr: a}}
		if k, ok := r.kernel[a]; ok {
			w.n.State = k.State
			if k.MAC != nil {
				w.n = k
			}
		}
		next[a] = w
		r.probeNew = append(r.probeNew, a)
	}
	r.watched = next
	r.mu.Unlock()
	signal(r.wake)
}

// Lookup returns what was last reported for a watched address.
func (r *Resolver) Lookup(addr netip.Addr) (Neighbor, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	w, ok := r.watched[addr.Unmap()]
	if !ok {
		return Neighbor{Addr: addr}, false
	}
	return w.n, true
}

func (r *Resolver) run(ctx context.Context, ch chan netlink.NeighUpdate, stop chan struct{}) {
	defer close(r.done)
	tick := time.NewTicker(r.opts.Refresh)
	defer tick.Stop()
	backoff := 100 * time.Millisecond
	for {
		select {
		case <-ctx.Done():
			unsubscribe(ch, stop)
			return
		case u, ok := <-ch:
			if ok {
				r.apply(u)
				backoff = 100 * time.Millisecond
				continue
			}
			// The subscription ended (its error went to the log):
			// subscribe again, then read the table for what we missed.
			close(stop)
			ch, stop = r.resubscribe(ctx, &backoff)
			if ch == nil {
				return
			}
			r.syncLogged()
		case <-r.relist:
			r.syncLogged()
		case <-r.wake:
			r.resolveNew()
		case <-tick.C:
			r.refresh()
		}
	}
}

// subscribe follows the neighbour table of the namespace, listing the
// existing entries first (`ip monitor neigh`, after `ip neigh show`).
func (r *Resolver) subscribe() (chan netlink.NeighUpdate, chan struct{}, error) {
	ch := make(chan netlink.NeighUpdate, 256)
	stop := make(chan struct{})
	ns := r.ns
	err := netlink.NeighSubscribeWithOptions(ch, stop, netlink.NeighSubscribeOptions{
		Namespace:    &ns,
		ListExisting: true,
		ErrorCallback: func(err error) {
			if errors.Is(err, netlink.ErrDumpInterrupted) {
				signal(r.relist) // the subscription goes on; re-read the table
				return
			}
			select {
			case <-stop: // our own Close
			default:
				r.log.Warn("neighbour subscription failed, resubscribing", "err", err)
			}
		},
	})
	if err != nil {
		close(stop)
		return nil, nil, fmt.Errorf("subscribe to neighbour changes: %w", err)
	}
	return ch, stop, nil
}

func (r *Resolver) resubscribe(ctx context.Context, backoff *time.Duration) (chan netlink.NeighUpdate, chan struct{}) {
	for {
		select {
		case <-ctx.Done():
			return nil, nil
		case <-time.After(*backoff):
		}
		*backoff = min(2**backoff, 5*time.Second)
		ch, stop, err := r.subscribe()
		if err == nil {
			return ch, stop
		}
		r.log.Warn("resubscribe to neighbour changes", "err", err, "retry_in", *backoff)
	}
}

// unsubscribe ends a subscription and drains it: its goroutine blocks on
// sending until someone reads, and closes ch when it ends.
func unsubscribe(ch chan netlink.NeighUpdate, stop chan struct{}) {
	close(stop)
	for range ch {
	}
}

// apply records one kernel update of the interface's table.
func (r *Resolver) apply(u netlink.NeighUpdate) {
	a, ok := r.ours(u.Neigh)
	if !ok {
		return
	}
	if u.Type == unix.RTM_DELNEIGH {
		// The kernel dropped the entry (garbage collection, or an
		// operator's `ip neigh del`): resolve again, keeping the last MAC
		// until resolution says otherwise, so a live backend does not
		// leave rotation because an idle entry was collected.
		r.mu.Lock()
		delete(r.kernel, a)
		_, watched := r.watched[a]
		r.mu.Unlock()
		if watched {
			r.probe(a)
		}
		return
	}
	r.record(neighborOf(a, u.Neigh))
}

// ours returns the address of an entry of our interface, if it is one.
func (r *Resolver) ours(n netlink.Neigh) (netip.Addr, bool) {
	if n.LinkIndex != r.ifindex || (n.Family != unix.AF_INET && n.Family != unix.AF_INET6) || n.Flags&netlink.NTF_PROXY != 0 {
		return netip.Addr{}, false
	}
	a, ok := netip.AddrFromSlice(n.IP)
	return a.Unmap(), ok
}

func neighborOf(a netip.Addr, n netlink.Neigh) Neighbor {
	out := Neighbor{Addr: a, State: n.State}
	if n.State&usableStates != 0 && len(n.HardwareAddr) == 6 {
		out.MAC = n.HardwareAddr
	}
	return out
}

// record stores a kernel entry and reports a watched address's change.
func (r *Resolver) record(n Neighbor) {
	r.mu.Lock()
	r.kernel[n.Addr] = n
	w, watched := r.watched[n.Addr]
	var report bool
	if watched {
		report = w.update(n)
	}
	r.mu.Unlock()
	if report {
		r.report(n)
	}
}

// update applies a kernel entry to what was reported and says whether the
// change must be reported. INCOMPLETE keeps what was there: it is a
// resolution in progress, whose outcome (a MAC or FAILED) is reported.
func (w *watch) update(n Neighbor) bool {
	switch {
	case n.State&netlink.NUD_INCOMPLETE != 0:
		w.n.State = n.State
		return false
	case n.State&netlink.NUD_FAILED != 0:
		first := !w.failed || w.n.MAC != nil
		w.n, w.failed = n, true
		return first
	case n.MAC == nil:
		w.n.State = n.State
		return false
	}
	changed := !bytes.Equal(w.n.MAC, n.MAC)
	w.n, w.failed = n, false
	return changed
}

func (r *Resolver) report(n Neighbor) {
	if n.MAC == nil {
		r.log.Warn("backend MAC resolution failed: the backend is unreachable on the segment",
			"backend", n.Addr.String(), "state", n.StateName())
	} else {
		r.log.Info("backend MAC", "backend", n.Addr.String(), "mac", n.MAC.String(), "state", n.StateName())
	}
	if r.opts.OnChange != nil {
		r.opts.OnChange(n)
	}
}

// resolveNew reports the newly watched addresses the kernel had already
// resolved, and asks it to resolve the others.
func (r *Resolver) resolveNew() {
	r.mu.Lock()
	var reports []Neighbor
	var probes []netip.Addr
	for _, a := range r.probeNew {
		w, ok := r.watched[a]
		switch {
		case !ok: // unwatched again meanwhile
		case w.n.MAC != nil:
			reports = append(reports, w.n)
		default:
			probes = append(probes, a)
		}
	}
	r.probeNew = nil
	r.mu.Unlock()
	for _, n := range reports {
		r.report(n)
	}
	for _, a := range probes {
		r.probe(a)
	}
}

// refresh asks the kernel to resolve every watched address that has no
// MAC, and to re-confirm STALE ones: that detects a backend that left
// even when no traffic (e.g. no health check) goes to it.
func (r *Resolver) refresh() {
	r.mu.Lock()
	var probes []netip.Addr
	for a := range r.watched {
		k, ok := r.kernel[a]
		if !ok || k.MAC == nil || k.State&netlink.NUD_STALE != 0 {
			probes = append(probes, a)
		}
	}
	r.mu.Unlock()
	for _, a := range probes {
		r.probe(a)
	}
}

// probe makes the kernel resolve a (`ip neigh replace ADDR dev IFNAME
// use`): NTF_USE runs the kernel's own resolution, as if a packet were
// waiting for the entry: ARP or ND solicitation for an absent, FAILED or
// STALE entry, nothing for a REACHABLE one. Unlike sending a datagram, it
// needs no socket in the namespace and sends nothing to the backend's
// applications. The entry is an ordinary one, aged and collected as usual.
func (r *Resolver) probe(a netip.Addr) {
	err := r.h.NeighSet(&netlink.Neigh{
		LinkIndex: r.ifindex,
		Family:    family(a),
		IP:        net.IP(a.AsSlice()),
		Flags:     netlink.NTF_USE,
	})
	if err != nil {
		r.log.Warn("trigger neighbour resolution", "backend", a.String(), "err", err)
	}
}

func family(a netip.Addr) int {
	if a.Is4() {
		return netlink.FAMILY_V4
	}
	return netlink.FAMILY_V6
}

// sync reads the interface's whole table (`ip neigh show dev IFNAME`),
// retrying a dump the kernel interrupted, and records it.
func (r *Resolver) sync() error {
	var list []netlink.Neigh
	var err error
	for range 5 {
		list, err = r.h.NeighList(r.ifindex, netlink.FAMILY_ALL)
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("list neighbours of %s: %w", r.opts.Interface, err)
	}
	seen := map[netip.Addr]bool{}
	for _, n := range list {
		if a, ok := r.ours(n); ok {
			seen[a] = true
			r.record(neighborOf(a, n))
		}
	}
	r.mu.Lock()
	for a := range r.kernel {
		if !seen[a] {
			delete(r.kernel, a)
		}
	}
	r.mu.Unlock()
	return nil
}

func (r *Resolver) syncLogged() {
	if err := r.sync(); err != nil {
		r.log.Warn("re-read neighbour table", "err", err)
	}
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

func stateName(s int) string {
	names := []struct {
		bit  int
		name string
	}{
		{netlink.NUD_INCOMPLETE, "INCOMPLETE"}, {netlink.NUD_REACHABLE, "REACHABLE"},
		{netlink.NUD_STALE, "STALE"}, {netlink.NUD_DELAY, "DELAY"}, {netlink.NUD_PROBE, "PROBE"},
		{netlink.NUD_FAILED, "FAILED"}, {netlink.NUD_NOARP, "NOARP"}, {netlink.NUD_PERMANENT, "PERMANENT"},
	}
	for _, n := range names {
		if s&n.bit != 0 {
			return n.name
		}
	}
	return "NONE"
}
