// Package health runs the balancer's health checks: one goroutine per
// backend that dials it (tcp) or asks it for a page (http) every interval and
// turns the results into an up/down state with HAProxy's rise/fall rule.
//
// Why it looks the way it does:
//
//   - A state change is what the data plane needs, at once: the Manager
//     calls OnChange on every transition and never on a repeated result, so
//     the daemon can rebuild a service's tables the moment a backend goes
//     down. Transitions are never dropped or delayed; only their log lines
//     are rate-limited, so a flapping backend cannot flood the journal.
//   - Restarts and reloads must not drop traffic. A target carries its
//     Initial state: a daemon that adopts a pinned data plane passes the
//     state it found there, so a backend that was up stays up until it
//     fails `fall` checks, and a new backend starts down until it passes
//     `rise` checks. Manager.Update keeps the checkers (and their rise/fall
//     counters) of targets whose address and check did not change.
//   - Checks are spread out: the first one runs at a random offset within
//     the interval and every later one is jittered by up to a tenth of it,
//     so hundreds of backends are not probed in lockstep.
//
// Checks reach a backend either the way client traffic does (check.via:
// vip, the default: to the VIP, framed to the backend's MAC on the balancer
// interface, see dsr.go) or through a plain net.Dialer to the backend's own
// address (check.via: address). Both run in the balancer's network
// namespace.
package health

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/dsrlb/dsrlb/shared/config"
)

// State is the health of a backend as the data plane sees it.
type State uint8

// States. The zero value is Down: a backend nobody vouched for takes no
// traffic.
const (
	Down State = iota
	Up
)

func (s State) String() string {
	if s == Up {
		return "up"
	}
	return "down"
}

// Target is one backend to check. Targets are compared by value on
// Manager.Update, so keep every field comparable.
type Target struct {
	// Key names the backend uniquely across the configuration,
	// e.g. "exchange/exchange1" (service/server, see Key).
	Key string
	// Addr is where the check connects: the server address and the
	// check port (config.Check.Port), or the server's check_address and
	// check_port when it has them (config.Server.CheckTarget).
	Addr netip.AddrPort
	// Check is the service's check. Type none (which the daemon also
	// uses for servers with `check: false`) means always up: no goroutine
	// runs and no event is sent.
	Check config.Check
	// Initial is the state the checker starts in. Pass Up for a backend
	// that was up in the adopted data plane, Down (the zero value) for a
	// new one.
	Initial State
	// VIP is the service's VIP: with Check.Via vip, tcp, http and https
	// checks go to it through the DSR path (dsr.go), framed to the
	// backend's MAC; an exec check gets it as DSRLB_VIP.
	VIP netip.Addr
	// MAC is the backend's static MAC (config servers[].mac); all zero
	// means the one DSROptions.Neighbor resolves.
	MAC [6]byte

	// dsr is the Manager's DSR path, set when the target is checked.
	dsr *dsrPath
}

// Key returns the conventional target key of a server of a service.
func Key(service, server string) string { return service + "/" + server }

// Result is the outcome of one check.
type Result struct {
	At       time.Time     // when the check started
	Duration time.Duration // how long it took
	Err      error         // nil: success
}

// OK reports whether the check succeeded.
func (r Result) OK() bool { return r.Err == nil }

// Status is a snapshot of one target, for `lbd status` and metrics.
type Status struct {
	Target Target
	State  State
	Since  time.Time // last transition (or start)
	Last   Result    // zero until the first check ran
	// Checks and Failures count checks run and failed since the checker started.
	Checks, Failures uint64
	// Transitions counts state changes since the checker started.
	Transitions uint64
}

// ChangeFunc receives every state change. Calls are serialised across all
// targets of a Manager and block the calling checker, so keep it short
// (update a map, signal a channel). reason says which check result caused
// the change, e.g. "3 consecutive failures, last: dial tcp ...: connection refused".
type ChangeFunc func(t Target, s State, reason string)

func (t Target) String() string { return fmt.Sprintf("%s (%s)", t.Key, t.Addr) }

// SameCheck reports whether a and b are checked the same way (all but
// Initial equal): a Manager keeps the checker of such a target on Update.
func SameCheck(a, b Target) bool {
	a.Initial, b.Initial = Down, Down
	a.dsr, b.dsr = nil, nil
	return a == b
}

// always reports whether the target needs no checking.
func (t Target) always() bool { return t.Check.Type == config.CheckNone }
