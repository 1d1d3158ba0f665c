package datapath

import (
	"fmt"
	"net"
	"net/netip"
)

// Proto is the L4 protocol of a service (IANA protocol number).
type Proto uint8

// Protocols a service can balance.
const (
	TCP Proto = 6
	UDP Proto = 17
)

func (p Proto) String() string {
	switch p {
	case TCP:
		return "tcp"
	case UDP:
		return "udp"
	}
	return fmt.Sprintf("proto(%d)", uint8(p))
}

// Scheduler picks the backend of a new flow.
type Scheduler uint8

// Schedulers; values are the C enum lb_sched.
const (
	// Maglev hashes the 5-tuple into the service's weighted Maglev table.
	Maglev = Scheduler(bpfLbSchedLB_SCHED_MAGLEV)
	// RoundRobin walks a weighted round-robin sequence, one slot per new flow.
	RoundRobin = Scheduler(bpfLbSchedLB_SCHED_ROUNDROBIN)
	// Source hashes the client address only into the Maglev table.
	Source = Scheduler(bpfLbSchedLB_SCHED_SOURCE)
)

func (s Scheduler) String() string {
	switch s {
	case Maglev:
		return "maglev"
	case RoundRobin:
		return "roundrobin"
	case Source:
		return "source"
	}
	return fmt.Sprintf("scheduler(%d)", uint8(s))
}

// State is a backend's health state.
type State uint8

// Backend states; values are the C enum lb_backend_state.
const (
	// Up takes new and established flows.
	Up = State(bpfLbBackendStateLB_BACKEND_UP)
	// Drain keeps established flows and takes no new ones.
	Drain = State(bpfLbBackendStateLB_BACKEND_DRAIN)
	// Down takes nothing: its flows are rescheduled.
	Down = State(bpfLbBackendStateLB_BACKEND_DOWN)
)

func (s State) String() string {
	switch s {
	case Up:
		return "up"
	case Drain:
		return "drain"
	case Down:
		return "down"
	}
	return fmt.Sprintf("state(%d)", uint8(s))
}

// Service is one VIP and protocol with some ports and its backends.
type Service struct {
	Name      string
	VIP       netip.Addr
	Proto     Proto
	Ports     []uint16 // empty: every port of the VIP not taken by another service
	Scheduler Scheduler
	Backends  []Backend
}

// Backend is one server of a service. Within a service a backend is
// identified by its address: that is what survives an lbd restart in the
// pinned maps.
type Backend struct {
	Name   string
	Addr   netip.Addr
	MAC    net.HardwareAddr
	Weight uint32 // 0 takes no new flows (as Drain)
	State  State
}

// usable reports whether the backend gets slots in the tables.
func (b *Backend) usable() bool { return b.State == Up && b.Weight > 0 }

// Flow is a client -> VIP 5-tuple.
type Flow struct {
	Src   netip.AddrPort // client
	Dst   netip.AddrPort // VIP and service port
	Proto Proto
}

// Reason says why the program gave a packet its verdict.
type Reason uint32

// Reasons; values are the C enum lb_reason, the index of the global counters.
const (
	ReasonRedirect         = Reason(bpfLbReasonLB_REASON_REDIRECT)
	ReasonRedirectICMP     = Reason(bpfLbReasonLB_REASON_REDIRECT_ICMP)
	ReasonRedirectFragment = Reason(bpfLbReasonLB_REASON_REDIRECT_FRAGMENT)
	ReasonPassNotIP        = Reason(bpfLbReasonLB_REASON_PASS_NOT_IP)
	ReasonPassNoService    = Reason(bpfLbReasonLB_REASON_PASS_NO_SERVICE)
	ReasonPassICMP         = Reason(bpfLbReasonLB_REASON_PASS_ICMP)
	ReasonPassFragment     = Reason(bpfLbReasonLB_REASON_PASS_FRAGMENT)
	ReasonPassNoBackend    = Reason(bpfLbReasonLB_REASON_PASS_NO_BACKEND)
	ReasonPassMalformed    = Reason(bpfLbReasonLB_REASON_PASS_MALFORMED)
	ReasonPassUnsupported  = Reason(bpfLbReasonLB_REASON_PASS_UNSUPPORTED)
	ReasonPassOtherHost    = Reason(bpfLbReasonLB_REASON_PASS_OTHER_HOST)
	ReasonDropCheckReply   = Reason(bpfLbReasonLB_REASON_DROP_CHECK_REPLY)
	numReasons             = int(bpfLbReasonLB_REASON_MAX)
)

var reasonNames = [...]string{
	ReasonRedirect:         "redirect",
	ReasonRedirectICMP:     "redirect_icmp_error",
	ReasonRedirectFragment: "redirect_fragment",
	ReasonPassNotIP:        "pass_not_ip",
	ReasonPassNoService:    "pass_no_service",
	ReasonPassICMP:         "pass_icmp",
	ReasonPassFragment:     "pass_fragment",
	ReasonPassNoBackend:    "pass_no_backend",
	ReasonPassMalformed:    "pass_malformed",
	ReasonPassUnsupported:  "pass_unsupported",
	ReasonPassOtherHost:    "pass_other_host",
	ReasonDropCheckReply:   "drop_check_reply",
}

// Source ports of lbd's DSR-path health checks (the C enum lb_check_port):
// the program drops TCP from a service's VIP:port to these ports on the
// path of packets for no VIP, after lbd's packet socket got them, so the
// balancer's stack never answers a check's reply with a RST.
const (
	CheckPortMin = uint16(bpfLbCheckPortLB_CHECK_PORT_MIN)
	CheckPortMax = uint16(bpfLbCheckPortLB_CHECK_PORT_MAX)
)

func (r Reason) String() string {
	if int(r) < len(reasonNames) {
		return reasonNames[r]
	}
	return fmt.Sprintf("reason(%d)", uint32(r))
}

// Reasons lists every reason, in counter order.
func Reasons() []Reason {
	out := make([]Reason, numReasons)
	for i := range out {
		out[i] = Reason(i)
	}
	return out
}

// Verdicts the program returns (tc action codes).
const (
	VerdictContinue = -1 // TC_ACT_UNSPEC, i.e. TCX_NEXT: not ours, untouched
	VerdictRedirect = 7  // TC_ACT_REDIRECT
	VerdictDrop     = 2  // TC_ACT_SHOT, i.e. TCX_DROP: only replies to lbd's DSR-path checks
)
