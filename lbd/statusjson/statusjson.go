// Package statusjson is the versioned JSON schema of `lbd status --json`
// and of the status page's /status.json (docs/status-json.md). Keys are
// snake_case, enums are lower-case strings, MACs are written aa:bb:cc:dd:ee:ff
// and addresses in their usual text form. Fields are only ever added within
// a schema version; a rename or removal raises SchemaVersion.
package statusjson

import (
	"strconv"
	"strings"
	"time"
)

// SchemaVersion is the version of this schema.
const SchemaVersion = 1

// Backend states (State fields).
const (
	StateUp    = "up"
	StateDrain = "drain"
	StateDown  = "down"
)

// Status is the whole document.
type Status struct {
	SchemaVersion int       `json:"schema_version"`
	Generated     time.Time `json:"generated"`
	// Source says who wrote it: "lbd status" (read from the pinned maps)
	// or "lbd" (the running daemon's status page, with reasons and rates).
	Source    string `json:"source"`
	Version   string `json:"version,omitempty"`
	Interface string `json:"interface"`
	PinPath   string `json:"pin_path"`
	// Daemon describes the lbd owning the data plane (lbd status only).
	Daemon *Daemon `json:"daemon,omitempty"`
	// Attached is false when the program was found detached or replaced;
	// NotAttached then says why.
	Attached    bool   `json:"attached"`
	NotAttached string `json:"not_attached,omitempty"`
	// ReadError is set when reading the data plane failed; the counters
	// are then missing or stale.
	ReadError string `json:"read_error,omitempty"`
	// LastReload is the outcome of the last reload (status page only).
	LastReload string `json:"last_reload,omitempty"`
	// RateInterval is the interval in seconds the rates are computed
	// over (0: no rates, e.g. lbd status without --rate).
	RateInterval float64           `json:"rate_interval_seconds,omitempty"`
	Services     []Service         `json:"services"`
	Verdicts     map[string]uint64 `json:"verdicts"` // packets by verdict reason
	Conntrack    *Conntrack        `json:"conntrack,omitempty"`
	VIPConflicts []VIPConflict     `json:"vip_conflicts"`
	// VIPsUntaken are VIPs lbd failed to take and retries: no traffic is
	// drawn to them meanwhile. Added within schema version 1: a document
	// of an older producer lacks the key.
	VIPsUntaken []VIPUntaken `json:"vips_untaken"`
	// ARPGuard is what the running lbd's ARP/ND guard sees; absent when
	// no lbd runs (lbd status asks the daemon for it).
	ARPGuard *ARPGuard `json:"arp_guard,omitempty"`
	BGP      *BGP      `json:"bgp,omitempty"`
}

// Daemon is the lbd process that owns the data plane.
type Daemon struct {
	Running bool `json:"running"`
	PID     int  `json:"pid,omitempty"`
	// LastSeen is when an lbd last ran on the pin path (when none runs).
	LastSeen *time.Time `json:"last_seen,omitempty"`
}

// Service is one service and its backends.
type Service struct {
	Name      string   `json:"name"`
	VIP       string   `json:"vip"`
	Protocol  string   `json:"protocol"`  // "tcp" or "udp"
	Ports     []uint16 `json:"ports"`     // empty: every port of the VIP
	Scheduler string   `json:"scheduler"` // "maglev", "roundrobin" or "source"; "" when unknown
	Counters  Counters `json:"counters"`
	Rates     *Rates   `json:"rates,omitempty"`
	// ActiveFlows and InactiveFlows sum those of the backends.
	ActiveFlows   uint64    `json:"active_flows"`
	InactiveFlows uint64    `json:"inactive_flows"`
	Backends      []Backend `json:"backends"`
	// FallbackActive is true while the service's fallback servers take
	// the new flows: it has some and no primary server is up.
	FallbackActive bool `json:"fallback_active,omitempty"`
}

// Backend is one server of a service.
type Backend struct {
	Name    string `json:"name"`
	Address string `json:"address"`
	MAC     string `json:"mac"` // "" until resolved
	State   string `json:"state"`
	// StateReason says why a backend is not up ("" when up).
	StateReason string `json:"state_reason,omitempty"`
	// StateSince is when the state last changed, as far as this lbd knows
	// (status page only).
	StateSince    *time.Time `json:"state_since,omitempty"`
	Weight        uint32     `json:"weight"`
	ActiveFlows   uint64     `json:"active_flows"`
	InactiveFlows uint64     `json:"inactive_flows"`
	Counters      Counters   `json:"counters"`
	Rates         *Rates     `json:"rates,omitempty"`
	// Fallback marks a server of the service's fallback: list.
	Fallback bool `json:"fallback,omitempty"`
	// Admin is the transient setting lbd set gave the server, as shown:
	// "drain (admin)", "maint (admin)", "weight 5 (admin)"; "" for none.
	Admin string `json:"admin,omitempty"`
}

// Counters are summed over CPUs since the maps were created.
type Counters struct {
	Packets   uint64 `json:"packets"`
	Bytes     uint64 `json:"bytes"`
	NewFlows  uint64 `json:"new_flows"`
	NoBackend uint64 `json:"no_backend_packets"`
}

// Rates are per second over Status.RateInterval.
type Rates struct {
	Packets  float64 `json:"packets_per_second"`
	Bytes    float64 `json:"bytes_per_second"`
	NewFlows float64 `json:"new_flows_per_second"`
}

// Conntrack is the flow table's fill and churn.
type Conntrack struct {
	Entries  uint64 `json:"entries"`
	Limit    uint64 `json:"limit,omitempty"`
	Inserted uint64 `json:"inserted"`
	Renewed  uint64 `json:"renewed"`
	Dropped  uint64 `json:"dropped"`
	Evicted  uint64 `json:"evicted"`
}

// VIPConflict is a VIP lbd did not take because another host answers it.
type VIPConflict struct {
	VIP string `json:"vip"`
	MAC string `json:"mac"`
}

// VIPUntaken is a VIP lbd has not taken yet: taking it failed with Error,
// first at Since; the running lbd tries again at NextTry (absent when no
// lbd runs to try).
type VIPUntaken struct {
	VIP     string     `json:"vip"`
	Error   string     `json:"error"`
	Since   time.Time  `json:"since"`
	NextTry *time.Time `json:"next_try,omitempty"`
}

// UntakenText is the alert line lbd status and the status page show for
// u at now.
func UntakenText(u VIPUntaken, now time.Time) string {
	head := "VIP " + u.VIP + " NOT TAKEN YET: no traffic is drawn to it; taking it failed since " +
		u.Since.UTC().Format(time.RFC3339) + ": " + u.Error
	if u.NextTry == nil {
		return head + "; no lbd runs to retry (the next lbd start takes it)"
	}
	if wait := u.NextTry.Sub(now).Round(time.Second); wait > 0 {
		return head + "; retrying in " + wait.String()
	}
	return head + "; retrying now"
}

// ARPGuard is the state of the ARP/ND guard (lbd/arpguard).
type ARPGuard struct {
	Running bool `json:"running"`
	// Mode says who may answer for the VIPs besides this balancer: "lbd"
	// (nobody), "external" (any host but a backend: the VIP owner's peer
	// balancer), "bgp" (nobody).
	Mode string `json:"mode"`
	// Note says why the guard is not running.
	Note      string        `json:"note,omitempty"`
	Conflicts []ARPConflict `json:"conflicts"`
}

// ARPConflict is a MAC seen answering for a VIP it may not answer for.
type ARPConflict struct {
	VIP string `json:"vip"`
	MAC string `json:"mac"`
	// Backends are the configured servers with that MAC (none: another
	// host).
	Backends []ARPBackend `json:"backends,omitempty"`
	// SeenAs is the kind of frame last seen: "ARP reply", "gratuitous
	// ARP", "ARP request sent from the VIP", "ARP probe", "neighbour
	// advertisement", "DAD probe".
	SeenAs   string    `json:"seen_as"`
	Since    time.Time `json:"since"`
	LastSeen time.Time `json:"last_seen"`
	Frames   uint64    `json:"frames"`
}

// ARPBackend names a backend by service and server.
type ARPBackend struct {
	Service string `json:"service"`
	Name    string `json:"name"`
	Address string `json:"address"`
}

// Live is what only the running daemon knows, which `lbd status` asks it
// for over the control socket (control.CmdLive): since when each backend
// is in its state, and the ARP guard's findings.
type Live struct {
	Backends []LiveBackend `json:"backends"`
	ARPGuard *ARPGuard     `json:"arp_guard,omitempty"`
}

// LiveBackend is one backend's state as the daemon knows it.
type LiveBackend struct {
	Service     string     `json:"service"`
	Name        string     `json:"name"`
	State       string     `json:"state"`
	StateReason string     `json:"state_reason,omitempty"`
	StateSince  *time.Time `json:"state_since,omitempty"`
}

// BGP is the state of the BGP speaker (balancer.bgp only).
type BGP struct {
	ASN      uint32 `json:"asn"`
	RouterID string `json:"router_id,omitempty"`
	// Running is false when the lbd that wrote the sessions is gone (lbd
	// status); Note then says what that means.
	Running   bool      `json:"running"`
	Note      string    `json:"note,omitempty"`
	Peers     []BGPPeer `json:"peers"`
	Announced []string  `json:"announced"`
}

// BGPPeer is one BGP session.
type BGPPeer struct {
	Address    string     `json:"address"`
	ASN        uint32     `json:"asn,omitempty"`
	Up         bool       `json:"up"`
	State      string     `json:"state"` // established, active, connect, idle, ...
	Since      *time.Time `json:"since,omitempty"`
	Advertised uint64     `json:"advertised"`
}

// PortsText is the text of a service's ports, as lbd status and the status
// page show them: "80,443", or "*" for every port.
func PortsText(ps []uint16) string {
	if len(ps) == 0 {
		return "*"
	}
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = strconv.Itoa(int(p))
	}
	return strings.Join(s, ",")
}

// Flows is the document of `lbd flows --json` (docs/status-json.md):
// the tracked flows read from the pinned conntrack maps, as ipvsadm -Lnc.
type Flows struct {
	SchemaVersion int       `json:"schema_version"`
	Generated     time.Time `json:"generated"`
	Source        string    `json:"source"` // "lbd flows"
	Version       string    `json:"version,omitempty"`
	PinPath       string    `json:"pin_path"`
	// Service is the SERVICE asked for ("" for every service).
	Service string `json:"service,omitempty"`
	// Total is how many tracked flows there are (of Service, when given);
	// Flows holds at most Limit of them.
	Total int    `json:"total"`
	Limit int    `json:"limit"`
	Flows []Flow `json:"flows"`
}

// Flow is one tracked flow and the backend it is kept on.
type Flow struct {
	Service    string `json:"service"` // the configured name, else "VIP/protocol"
	Protocol   string `json:"protocol"`
	Client     string `json:"client"`
	ClientPort uint16 `json:"client_port"`
	VIP        string `json:"vip"`
	Port       uint16 `json:"port"`
	// Backend is the configured server name, else its address.
	Backend     string  `json:"backend"`
	Address     string  `json:"address"`
	State       string  `json:"state"` // established, syn_seen, closing, closed
	IdleSeconds float64 `json:"idle_seconds"`
}
