// Package importer translates the load-balancer configuration of another
// tool (keepalived, HAProxy ALOHA's Layer-4 directors, the output of
// ipvsadm-save -n) into a dsrlb configuration.
//
// Each source has its own parser (keepalived.go, aloha.go, ipvsadm.go) that
// reads the file as the tool itself does and fills the same intermediate
// Model, in the source's own terms (scheduler names, forwarding methods,
// check kinds). Map (mapping.go) is the one place that decides what carries
// over into the dsrlb schema and reports, with the source line and why,
// everything that does not. Nothing is invented: what the source lacks stays
// absent, so the output fails validation instead of guessing.
package importer

import (
	"fmt"
	"net/netip"
	"slices"
	"time"
)

// Pos is where something was written in a source file.
type Pos struct {
	File string
	Line int
}

func (p Pos) String() string {
	if p.Line == 0 {
		return p.File
	}
	return fmt.Sprintf("%s:%d", p.File, p.Line)
}

// Note is one thing that was not carried over (or is missing), with why.
type Note struct {
	At   Pos
	What string // the source construct, e.g. "persistence_timeout 50"
	Why  string // why dsrlb does not carry it and what to do
}

func (n Note) String() string { return fmt.Sprintf("%s: %s: %s", n.At, n.What, n.Why) }

// Notes collects notes in the order they are found.
type Notes []Note

func (ns *Notes) add(at Pos, what, format string, args ...any) {
	*ns = append(*ns, Note{At: at, What: what, Why: fmt.Sprintf(format, args...)})
}

// Model is a source configuration in the source's own terms.
type Model struct {
	Tool      string // "keepalived", "aloha", "ipvsadm"
	File      string // the file given on the command line ("-": standard input)
	Interface string // "" when the source names none
	// Conntrack idle timeouts (keepalived lvs_timeouts, ipvsadm --set);
	// unset when the source leaves them to the kernel.
	TCPTimeout, UDPTimeout Duration
	Services               []Service
	Notes                  Notes // what the parser itself could not place in the model
}

// Forwarding methods (ipvsadm -g/-m/-i, keepalived lb_kind, ALOHA mode).
const (
	FwdDR     = "dr"     // direct routing, ALOHA "gateway": the only one dsrlb does
	FwdNAT    = "nat"    // masquerading
	FwdTunnel = "tunnel" // IP-in-IP
)

// Service is one virtual service.
type Service struct {
	At       Pos
	Name     string     // "" when the source has none (derived from VIP and port)
	VIP      netip.Addr // invalid when the source names none
	VIPText  string     // the source's text when it is not an address (a host name)
	Protocol string     // lowercase as written: tcp, udp, sctp
	ProtoAt  Pos
	Ports    []uint16 // nil: every port
	FWMark   uint32   // non-zero: a firewall-mark service, which has no VIP
	Sched    Value    // scheduler as the source names it (rr, wlc, roundrobin...)
	Fwd      Value    // FwdDR, FwdNAT, FwdTunnel; Text "" when the source is silent
	Persist  Value    // persistence timeout text; At.Line 0 when absent
	Sorry    []Server // sorry/backup servers: dsrlb's fallback
	Check    *Check   // service-wide check (ALOHA); keepalived checks are per server
	Servers  []Server
	Inhibit  Value // inhibit_on_failure on the service (keepalived)
	Extra    Notes // source-specific settings the model has no field for
}

// Value is a setting with the place it was written.
type Value struct {
	Text string // normalised (FwdNAT, "50" for a timeout, ...); "" when unset
	What string // how the source wrote it, for notes ("lb_kind NAT", "-m")
	At   Pos
}

func (v Value) set() bool { return v.Text != "" }

// Server is one real server.
type Server struct {
	At       Pos
	Name     string     // "" when the source has none (derived from the address)
	Addr     netip.Addr // invalid when the source names none
	AddrText string     // the source's text when it is not an address
	Port     uint16     // 0: the same port as the client's (DSR)
	PortAt   Pos
	Weight   *int
	WeightAt Pos
	Fwd      Value  // per-server forwarding method (ipvsadm -g/-m/-i)
	Check    *Check // nil: not checked (keepalived without checker, ALOHA without "check")
	Inhibit  Value  // inhibit_on_failure
}

// Check kinds, in the source-neutral terms Map understands.
const (
	CheckTCP   = "tcp"
	CheckHTTP  = "http"
	CheckHTTPS = "https"
	CheckUDP   = "udp"
	CheckDNS   = "dns"
	CheckExec  = "exec"
	CheckSMTP  = "smtp"
	CheckICMP  = "icmp"
	CheckARP   = "arp"
	CheckBFD   = "bfd"
	CheckFile  = "file"
)

// Check is a health check as the source describes it.
type Check struct {
	At       Pos
	Kind     string // one of the Check* kinds
	Keyword  string // the source's word for it (TCP_CHECK, option httpcheck)
	Interval Duration
	Timeout  Duration
	Fall     *int // consecutive failures that take a server down
	FallAt   Pos
	Rise     *int // consecutive successes that bring it back
	Port     uint16
	PortAt   Pos
	Addr     netip.Addr // keepalived connect_ip; invalid: the server's address
	Path     string
	Status   *int
	Host     string // http, https: the virtual host (Host header, SNI)
	// udp: the datagram and the text the answer must contain, in dsrlb's
	// escape form (\xHH); Reply: the source requires an answer.
	Send, Expect string
	Reply        bool
	Query, QType string   // dns: name and record type asked; "" = the source's default
	Command      []string // exec: the program and its arguments
	Extra        Notes    // settings of this check dsrlb does not carry
}

// Duration is a time from the source with its place; At.Line 0 when unset.
type Duration struct {
	D  time.Duration
	At Pos
}

func (d Duration) set() bool { return d.At.Line != 0 }

// same reports whether two checks would behave identically but for where
// they connect (port, connect_ip: a server's check_port and check_address
// carry that), for merging keepalived's per-server checks into dsrlb's
// per-service check.
func (c *Check) same(o *Check) bool {
	eqInt := func(a, b *int) bool { return (a == nil) == (b == nil) && (a == nil || *a == *b) }
	return c.Kind == o.Kind && c.Interval.D == o.Interval.D && c.Timeout.D == o.Timeout.D &&
		eqInt(c.Fall, o.Fall) && eqInt(c.Rise, o.Rise) && c.Path == o.Path &&
		eqInt(c.Status, o.Status) && c.Host == o.Host && c.Send == o.Send && c.Expect == o.Expect &&
		c.Reply == o.Reply && c.Query == o.Query && c.QType == o.QType && slices.Equal(c.Command, o.Command)
}
