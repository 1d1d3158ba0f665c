package health

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sort"
	"sync"
	"time"

	"github.com/dsrlb/dsrlb/shared/config"
)

// DefaultLogEvery is the least time between two transition log lines of
// one backend.
const DefaultLogEvery = 10 * time.Second

// Options configure a Manager.
type Options struct {
	// Logger receives one line per state change (rate-limited per
	// backend). nil discards.
	Logger *slog.Logger
	// OnChange receives every state change, unthrottled. It must not
	// call Update or Close. nil ignores changes (Status still works).
	OnChange ChangeFunc
	// LogEvery is the least time between two transition log lines of one
	// backend; 0 means DefaultLogEvery.
	LogEvery time.Duration
	// OnResult, when set, receives every check result (for the check
	// duration histogram). It runs on the checker's goroutine: keep it short.
	OnResult func(t Target, r Result)
	// DSR sets up checks through the DSR path (check.via: vip); without an
	// Interface such checks fail saying so.
	DSR DSROptions
}

// Manager runs one checker per target and reconciles them with the
// desired set on Update.
type Manager struct {
	ctx      context.Context
	cancel   context.CancelFunc
	log      *slog.Logger
	onChange ChangeFunc
	onResult func(Target, Result)
	logEvery time.Duration
	wg       sync.WaitGroup
	dsr      *dsrPath // shared by every DSR-path check

	updateMu sync.Mutex // serialises Update and Close
	cbMu     sync.Mutex // serialises OnChange calls

	mu      sync.Mutex // guards entries
	entries map[string]*entry
	closed  bool
}

// entry is a target and either its running checker or, for a check of
// type none, nothing (always up).
type entry struct {
	t     Target
	c     *checker // nil: always up
	since time.Time
}

func (e *entry) status() Status {
	if e.c != nil {
		return e.c.status()
	}
	return Status{Target: e.t, State: Up, Since: e.since}
}

// New returns a Manager with no targets. Cancelling ctx stops every
// checker; Close also waits for them.
func New(ctx context.Context, opts Options) *Manager {
	ctx, cancel := context.WithCancel(ctx)
	m := &Manager{
		ctx:      ctx,
		cancel:   cancel,
		log:      opts.Logger,
		onChange: opts.OnChange,
		onResult: opts.OnResult,
		logEvery: opts.LogEvery,
		entries:  map[string]*entry{},
	}
	if opts.DSR.Logger == nil {
		opts.DSR.Logger = opts.Logger
	}
	m.dsr = newDSRPath(opts.DSR)
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	if m.logEvery <= 0 {
		m.logEvery = DefaultLogEvery
	}
	return m
}

// ErrClosed is returned by Update after Close.
var ErrClosed = errors.New("health manager closed")

// Update makes targets the set being checked. Targets checked as before
// (SameCheck: Addr, Check, VIP and MAC unchanged) keep their checker, state and rise/fall counters
// (their Initial is ignored). A target whose Check changed is restarted in
// its current state; one whose Addr changed is a new backend and starts in
// its Initial state. Removed targets stop without an event.
//
// OnChange is called, after the set is in place, for every target whose
// state differs from what the caller knows: its Initial for a new target
// (e.g. a type none target given Initial Down is Up), or the carried state
// if a check switched to or from type none. An invalid target makes
// Update return an error and change nothing.
func (m *Manager) Update(targets []Target) error {
	if err := validate(targets); err != nil {
		return err
	}
	m.updateMu.Lock()
	defer m.updateMu.Unlock()

	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return ErrClosed
	}
	old := m.entries
	m.mu.Unlock()
	m.dsr.setVIPs(vipsOf(targets))

	next := make(map[string]*entry, len(targets))
	type change struct {
		t Target
		s State
	}
	var changes []change
	for _, t := range targets {
		prev, had := old[t.Key]
		if had && SameCheck(prev.t, t) {
			next[t.Key] = prev
			continue
		}
		// known is the state the caller holds for this backend.
		known := t.Initial
		if had && sameBackend(prev.t, t) {
			prev.stop()
			known = prev.status().State
		}
		e := m.newEntry(t, known)
		next[t.Key] = e
		if s := e.status().State; s != known {
			changes = append(changes, change{t, s})
		}
	}
	// Stop removed and replaced checkers before publishing the new set,
	// so no event of an old checker arrives after Update returns.
	for k, e := range old {
		if n, ok := next[k]; !ok || n != e {
			e.stop()
		}
	}
	m.mu.Lock()
	m.entries = next
	m.mu.Unlock()
	for _, e := range next {
		if e.c != nil && e.c.cancel == nil {
			e.c.start(m.ctx, &m.wg)
		}
	}
	for _, ch := range changes {
		m.deliver(m.ctx, ch.t, ch.s, "check disabled: always up")
	}
	return nil
}

// sameBackend reports whether two targets check the same address.
func sameBackend(a, b Target) bool { return a.Addr == b.Addr }

func (e *entry) stop() {
	if e.c != nil && e.c.cancel != nil {
		e.c.stop()
	}
}

// vipsOf is the set of the targets' VIPs: addresses no check comes from.
func vipsOf(targets []Target) map[netip.Addr]bool {
	vips := map[netip.Addr]bool{}
	for _, t := range targets {
		if t.VIP.IsValid() {
			vips[t.VIP.Unmap()] = true
		}
	}
	return vips
}

func (m *Manager) newEntry(t Target, initial State) *entry {
	t.dsr = m.dsr
	e := &entry{t: t, since: time.Now()}
	if t.always() {
		return e
	}
	p, _ := newProber(t) // validated
	e.c = newChecker(t, initial, p, m.log, m.logEvery, m.deliver)
	e.c.onResult = m.onResult
	return e
}

// deliver calls OnChange, one call at a time, unless ctx (the checker's)
// has ended: a stopped checker's verdict is stale.
func (m *Manager) deliver(ctx context.Context, t Target, s State, reason string) {
	m.cbMu.Lock()
	defer m.cbMu.Unlock()
	if ctx.Err() != nil || m.onChange == nil {
		return
	}
	m.onChange(t, s, reason)
}

// Status returns a snapshot of every target, sorted by key.
func (m *Manager) Status() []Status {
	m.mu.Lock()
	es := make([]*entry, 0, len(m.entries))
	for _, e := range m.entries {
		es = append(es, e)
	}
	m.mu.Unlock()
	out := make([]Status, 0, len(es))
	for _, e := range es {
		out = append(out, e.status())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Target.Key < out[j].Target.Key })
	return out
}

// State returns the current state of one target.
func (m *Manager) State(key string) (State, bool) {
	m.mu.Lock()
	e, ok := m.entries[key]
	m.mu.Unlock()
	if !ok {
		return Down, false
	}
	return e.status().State, true
}

// Close stops every checker and waits until their goroutines have ended.
func (m *Manager) Close() {
	m.updateMu.Lock()
	defer m.updateMu.Unlock()
	m.mu.Lock()
	m.closed = true
	m.mu.Unlock()
	m.cancel()
	m.wg.Wait()
	m.dsr.close()
}

// validate checks what the Manager relies on; config validation should
// already have refused all of it, so these are programming errors.
func validate(targets []Target) error {
	seen := make(map[string]bool, len(targets))
	var errs []error
	for _, t := range targets {
		if err := validateOne(t); err != nil {
			errs = append(errs, err)
		}
		if seen[t.Key] {
			errs = append(errs, fmt.Errorf("check target %q: duplicate key", t.Key))
		}
		seen[t.Key] = true
	}
	return errors.Join(errs...)
}

func validateOne(t Target) error {
	c := t.Check
	switch {
	case t.Key == "":
		return fmt.Errorf("check target %s: empty key", t.Addr)
	case c.Type == config.CheckNone:
		return nil
	case !knownType(c.Type):
		return fmt.Errorf("check target %s: unknown check type %q (want tcp, http, https, udp, dns, exec or none)", t.Key, c.Type)
	case !t.Addr.IsValid() || t.Addr.Port() == 0 && c.Type != config.CheckExec:
		return fmt.Errorf("check target %s: address %s needs an IP and a non-zero port", t.Key, t.Addr)
	case c.Interval <= 0 || c.Timeout <= 0:
		return fmt.Errorf("check target %s: interval %s and timeout %s must be positive", t.Key, c.Interval, c.Timeout)
	case c.Rise < 1 || c.Fall < 1:
		return fmt.Errorf("check target %s: rise %d and fall %d must be at least 1", t.Key, c.Rise, c.Fall)
	case c.Type == config.CheckExec && c.Command == "":
		return fmt.Errorf("check target %s: exec check without a command", t.Key)
	case c.Type.HTTPLike() && (c.ExpectStatus < 100 || c.ExpectStatus > 599):
		return fmt.Errorf("check target %s: expected status %d is not an HTTP status", t.Key, c.ExpectStatus)
	}
	return nil
}

func knownType(t config.CheckType) bool {
	switch t {
	case config.CheckTCP, config.CheckHTTP, config.CheckHTTPS, config.CheckUDP, config.CheckDNS, config.CheckExec:
		return true
	}
	return false
}
