package arpguard

import (
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/dsrlb/dsrlb/lbd/vip"
)

// Conflict is a MAC seen answering for a VIP it may not answer for.
type Conflict struct {
	VIP      netip.Addr
	MAC      net.HardwareAddr
	Backends []Backend     // the configured servers with that MAC; none for another host
	Kind     vip.ClaimKind // how it was last seen
	Since    time.Time     // first seen, this time
	LastSeen time.Time
	Seen     uint64 // frames seen
}

// What the tracker tells its caller to log.
type event uint8

const (
	evNone     event = iota
	evNew            // a conflict begins: ERROR
	evRepeat         // still going, RepeatLog after the last line: ERROR again
	evCleared        // not seen for the hold time: INFO
	evNewOwner       // same VIP and MAC, but now known as a backend
	evOverflow       // MaxConflicts reached: not tracked, logged at most every repeat
)

// MaxConflicts bounds the conflicts tracked (and so the metric's series
// and the log): a host spraying claims from random MACs must not grow
// lbd's memory without limit.
const MaxConflicts = 256

type key struct {
	vip netip.Addr
	mac string
}

// tracker holds the conflicts and decides what is logged: each new one
// once, then again at most every repeat while it lasts, and once when it
// ends. Not safe for concurrent use (Guard locks around it).
type tracker struct {
	repeat    time.Duration
	conflicts map[key]*Conflict
	logged    map[key]time.Time
	limit     int
	overflow  time.Time // when evOverflow was last returned
	dropped   uint64    // sightings not tracked for the limit
}

func newTracker(repeat time.Duration) *tracker {
	return &tracker{repeat: repeat, conflicts: map[key]*Conflict{}, logged: map[key]time.Time{}, limit: MaxConflicts}
}

// seen records a sighting judged reportable and says what to log.
func (t *tracker) seen(s vip.Sighting, bs []Backend, now time.Time) (Conflict, event) {
	k := key{s.VIP, s.MAC.String()}
	c, ok := t.conflicts[k]
	if !ok && len(t.conflicts) >= t.limit {
		t.dropped++
		if now.Sub(t.overflow) < t.repeat {
			return Conflict{VIP: s.VIP, MAC: s.MAC, Backends: bs, Kind: s.Kind}, evNone
		}
		t.overflow = now
		return Conflict{VIP: s.VIP, MAC: s.MAC, Backends: bs, Kind: s.Kind, Seen: t.dropped}, evOverflow
	}
	if !ok {
		c = &Conflict{VIP: s.VIP, MAC: s.MAC, Since: now}
		t.conflicts[k] = c
	}
	ev := evNone
	switch {
	case !ok:
		ev = evNew
	case len(bs) > 0 && len(c.Backends) == 0:
		ev = evNewOwner // the neighbour table learnt the MAC since
	case now.Sub(t.logged[k]) >= t.repeat:
		ev = evRepeat
	}
	c.Backends, c.Kind, c.LastSeen = bs, s.Kind, now
	c.Seen++
	if ev != evNone {
		t.logged[k] = now
	}
	return *c, ev
}

// expire removes the conflicts not seen for hold and returns them.
func (t *tracker) expire(now time.Time, hold time.Duration) []Conflict {
	var out []Conflict
	for k, c := range t.conflicts {
		if now.Sub(c.LastSeen) >= hold {
			out = append(out, *c)
			delete(t.conflicts, k)
			delete(t.logged, k)
		}
	}
	sortConflicts(out)
	return out
}

// list is the conflicts, by VIP then MAC.
func (t *tracker) list() []Conflict {
	out := make([]Conflict, 0, len(t.conflicts))
	for _, c := range t.conflicts {
		out = append(out, *c)
	}
	sortConflicts(out)
	return out
}

func sortConflicts(cs []Conflict) {
	slices.SortFunc(cs, func(a, b Conflict) int {
		if c := a.VIP.Compare(b.VIP); c != 0 {
			return c
		}
		return slices.Compare(a.MAC, b.MAC)
	})
}
