package config

import (
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// DefaultPath is where both binaries look for the file when --config is not given.
const DefaultPath = "/etc/dsrlb/dsrlb.yaml"

// Defaults, in one place. Bounds used by validation sit beside them.
const (
	DefaultMaglevTableSize = 65537
	DefaultConntrackSize   = 1 << 20
	DefaultTCPTimeout      = 15 * time.Minute
	DefaultUDPTimeout      = 60 * time.Second
	DefaultPinPath         = "/sys/fs/bpf/dsrlb"
	DefaultMetricsListen   = "127.0.0.1:9469"
	DefaultCheckInterval   = 2 * time.Second
	DefaultCheckTimeout    = 1 * time.Second
	DefaultRise            = 2
	DefaultFall            = 3
	DefaultHTTPPath        = "/"
	DefaultExpectStatus    = 200
	DefaultHTTPMethod      = "GET"
	DefaultDNSQuery        = "." // keepalived DNS_CHECK's default
	DefaultDNSQueryType    = "SOA"
	DefaultDNSRcode        = "NOERROR"
	DefaultWeight          = 1
	DefaultHoldTime        = 9 * time.Second
	DefaultWithdrawWait    = 2 * time.Second
	DefaultMinHealthy      = 1
	DefaultVIPOwner        = VIPOwnerLBD // without balancer.bgp; with it, always VIPOwnerExternal

	MinMaglevTableSize = 251
	MaxMaglevTableSize = 1048573 // largest prime below 2^20: bounds map memory per service
	MinConntrackSize   = 1024
	MaxConntrackSize   = 1 << 26
	MaxWeight          = 256 // as HAProxy's weight, so ALOHA configs translate 1:1
	MaxServers         = 10000
	MaxServices        = 4096
	// MaxServiceKeys is how many (vip, protocol, port) entries all services
	// together have room for in the data plane (a service of every port is
	// one), and MaxBackends how many servers and fallbacks (backend ids; id
	// 0 is never used): lbd sizes its maps from these.
	MaxServiceKeys = 16384
	MaxBackends    = 65535
	MaxRiseFall    = 100
	// MaglevSlotsPerServer is the least table size per server that keeps
	// every backend's share within 1% of its weight share.
	MaglevSlotsPerServer = 10
)

// Config is a validated configuration: every default applied, every rule checked.
type Config struct {
	File     string // the path it was read from, for messages
	Balancer Balancer
	Services []Service

	balancerLine int // for messages about an absent balancer field
}

// Balancer holds the data-plane knobs of the balancer host.
type Balancer struct {
	Interface       string
	MaglevTableSize uint32
	Conntrack       Conntrack
	PinPath         string
	MetricsListen   string   // "" = metrics off
	VIPOwner        VIPOwner // who holds the VIPs on Interface; VIPOwnerExternal whenever BGP is set
	BGP             *BGP     // nil: ARP mode (the VIPs are on Interface, put there by VIPOwner)

	// MetricsWebConfig is the exporter-toolkit web configuration file
	// (TLS, basic auth); "" = plain HTTP. Omitted from JSON when unset.
	MetricsWebConfig string `json:",omitempty"`

	// Notify is the command run on every backend state change; nil: none.
	Notify *Notify `json:",omitempty"`
}

// Notify is balancer.notify: a program run, without a shell, on every
// backend state change, killed with its process group after Timeout.
type Notify struct {
	Command string
	Timeout time.Duration
}

// DefaultNotifyTimeout bounds a notify command that does not say.
const DefaultNotifyTimeout = 5 * time.Second

// OnFailure is what a failed health check does to a server.
type OnFailure string

// OnFailure values.
const (
	// FailDown takes the server out: nothing goes to it, its flows move.
	FailDown OnFailure = "down"
	// FailDrain keeps its established flows and sends it no new ones
	// (keepalived's inhibit_on_failure, IPVS weight 0).
	FailDrain OnFailure = "drain"
)

// VIPOwner says who puts the VIPs on the balancer interface, and so who
// makes the segment send VIP traffic to this balancer.
type VIPOwner string

// VIP owners.
const (
	// VIPOwnerLBD: lbd adds the VIPs (and announces them with gratuitous
	// ARP / unsolicited NA) and removes those it added when they leave
	// the configuration.
	VIPOwnerLBD VIPOwner = "lbd"
	// VIPOwnerExternal: lbd never adds, announces nor removes a VIP; it
	// forwards whatever reaches it. Another program holds the VIPs
	// (keepalived VRRP moving them between an active and a standby
	// balancer), or nobody does and routers route them (balancer.bgp).
	VIPOwnerExternal VIPOwner = "external"
)

// TakesVIPs reports whether lbd itself puts the VIPs on the interface.
func (b *Balancer) TakesVIPs() bool { return b.VIPOwner == VIPOwnerLBD }

// BGP is the scale-out mode: the VIPs are announced to routers (ECMP over
// balancers) instead of being taken on the interface.
type BGP struct {
	ASN          uint32
	RouterID     netip.Addr // invalid: the first IPv4 address of the interface
	WithdrawWait time.Duration
	Peers        []BGPPeer
}

// BGPPeer is one router lbd announces the VIPs to.
type BGPPeer struct {
	Address  netip.Addr
	ASN      uint32
	HoldTime time.Duration
	Password string // "" = no TCP MD5 signature
}

// Conntrack sizes the LRU flow table and its idle timeouts.
type Conntrack struct {
	Size       uint32
	TCPTimeout time.Duration
	UDPTimeout time.Duration
}

// Protocol is the L4 protocol of a service.
type Protocol string

// Protocols.
const (
	TCP Protocol = "tcp"
	UDP Protocol = "udp"
)

// Balance names a scheduler.
type Balance string

// Schedulers.
const (
	Maglev     Balance = "maglev"
	RoundRobin Balance = "roundrobin"
	Source     Balance = "source"
)

// CheckType names a health check.
type CheckType string

// Check types.
const (
	CheckTCP   CheckType = "tcp"
	CheckHTTP  CheckType = "http"
	CheckHTTPS CheckType = "https"
	CheckUDP   CheckType = "udp"
	CheckDNS   CheckType = "dns"
	CheckExec  CheckType = "exec"
	CheckNone  CheckType = "none"
)

// HTTPLike reports whether the check sends an http request (http, https).
func (t CheckType) HTTPLike() bool { return t == CheckHTTP || t == CheckHTTPS }

// CheckVia says which way a tcp/http check reaches a server.
type CheckVia string

// Check paths.
const (
	// ViaVIP sends the check the way client traffic goes: to the VIP,
	// framed to the server's MAC on the balancer interface (the DSR path),
	// so a server without the VIP on lo fails it. The default.
	ViaVIP CheckVia = "vip"
	// ViaAddress connects to the server's own address through the kernel's
	// stack (what keepalived and HAProxy do).
	ViaAddress CheckVia = "address"
)

// Service is one VIP/protocol with its ports and servers.
type Service struct {
	Name     string
	VIP      netip.Addr
	Protocol Protocol
	Ports    []uint16 // nil: every port
	Balance  Balance
	Check    Check
	Servers  []Server
	Announce Announce // used with Balancer.BGP only
	Line     int      // line of the service in the file, for later messages (reload, on-link checks)
	// OnFailure is what a failing check does to a server (down or drain).
	OnFailure OnFailure

	hasAnnounce bool // announce: was written (only allowed with BGP)
	checkLine   int  // line of check:, for messages about the files it names
}

// Announce says when a service's VIP is announced over BGP and with which
// attributes.
type Announce struct {
	MinHealthy  int      // up servers needed; 0: announced whatever the checks say
	Communities []uint32 // standard communities, ASN<<16 | value
	MED         *uint32  // nil: no MED sent
}

// AllPorts reports whether the service takes every destination port of its VIP.
func (s *Service) AllPorts() bool { return len(s.Ports) == 0 }

// Check is the health check of a service's servers.
type Check struct {
	Type         CheckType
	Interval     time.Duration
	Timeout      time.Duration
	Rise         int
	Fall         int
	Port         uint16
	Path         string   // http, https
	ExpectStatus int      // http, https
	Via          CheckVia // tcp, http, https: "" for the other types

	// The fields below are omitted from JSON when unset, so the
	// configurations of tcp and http checks print as they always did.
	Method     string `json:",omitempty"` // http, https: GET, HEAD, POST, OPTIONS
	Host       string `json:",omitempty"` // http, https: Host header; "" = the checked address
	ExpectBody string `json:",omitempty"` // http, https: substring of the body's first bytes

	SNI                string `json:",omitempty"` // https: server name sent and verified; "" = none, verify the IP
	CAFile             string `json:",omitempty"` // https: PEM roots; "" = the system's
	InsecureSkipVerify bool   `json:",omitempty"` // https: handshake only, no verification

	Send   string `json:",omitempty"` // udp: the datagram, escapes decoded
	Expect string `json:",omitempty"` // udp: bytes the answer must contain; "" = any answer

	Query       string `json:",omitempty"` // dns: the name asked (fully qualified)
	QueryType   string `json:",omitempty"` // dns: record type, e.g. SOA
	ExpectRcode string `json:",omitempty"` // dns: e.g. NOERROR
	DNSNet      string `json:",omitempty"` // dns: udp or tcp, the service's protocol

	Command string `json:",omitempty"` // exec: absolute path
	Args    Args   `json:",omitempty"` // exec
}

// Args is an argument list kept comparable, so Check stays comparable (the
// health manager and reload compare checks with ==): the words joined by
// NUL, which no argument of execve can contain, each word led by one (so
// an empty word survives).
type Args string

// ArgsOf joins words into Args.
func ArgsOf(words []string) Args {
	var b strings.Builder
	for _, w := range words {
		b.WriteByte(0)
		b.WriteString(w)
	}
	return Args(b.String())
}

// List returns the words of a.
func (a Args) List() []string {
	if a == "" {
		return nil
	}
	return strings.Split(string(a)[1:], "\x00")
}

// MarshalJSON shows the words as a list.
func (a Args) MarshalJSON() ([]byte, error) { return json.Marshal(a.List()) }

// Server is one backend of a service.
type Server struct {
	Name    string
	Address netip.Addr
	Weight  uint32 // 0 = drain
	Check   bool
	MAC     net.HardwareAddr // nil: resolve through the neighbour table
	Line    int
	// Fallback marks a server of the service's fallback: list. Fallbacks
	// follow the primaries in Service.Servers, so everything that serves
	// every server (checks, neighbour resolution, hostprep's VIPs) serves
	// them too; only lbd's choice of who takes new flows tells them apart.
	Fallback bool `json:",omitempty"`

	CheckPort    uint16     `json:",omitzero"` // 0: the check's port
	CheckAddress netip.Addr `json:",omitzero"` // invalid: Address
}

// Primaries is the number of primary servers: Servers[:Primaries()] are
// the primaries, the rest the fallbacks.
func (s *Service) Primaries() int {
	for i, srv := range s.Servers {
		if srv.Fallback {
			return i
		}
	}
	return len(s.Servers)
}

// CheckTarget is where this server's check connects: its check_address and
// check_port overrides, else its address and the service check's port.
func (s *Server) CheckTarget(c *Check) netip.AddrPort {
	addr, port := s.Address, c.Port
	if s.CheckAddress.IsValid() {
		addr = s.CheckAddress
	}
	if s.CheckPort != 0 {
		port = s.CheckPort
	}
	return netip.AddrPortFrom(addr, port)
}

// VIPs returns every distinct VIP of the configuration, in file order.
func (c *Config) VIPs() []netip.Addr {
	seen := map[netip.Addr]bool{}
	var out []netip.Addr
	for _, s := range c.Services {
		if !seen[s.VIP] {
			seen[s.VIP] = true
			out = append(out, s.VIP)
		}
	}
	return out
}

// ServerCount is the number of server entries over all services.
func (c *Config) ServerCount() int {
	n := 0
	for _, s := range c.Services {
		n += len(s.Servers)
	}
	return n
}

// Summary is the one line `validate` prints for a good file.
func (c *Config) Summary() string {
	return fmt.Sprintf("%s: configuration valid: %d services, %d VIPs, %d servers",
		c.File, len(c.Services), len(c.VIPs()), c.ServerCount())
}

// Duration is a time.Duration written as Go duration text ("10s", "1m30s").
// A bare number is refused: "interval: 10" could mean seconds (ALOHA) or
// nanoseconds (Go), and guessing wrong is worse than asking.
type Duration time.Duration

// UnmarshalYAML implements yaml.Unmarshaler.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: expected a duration such as \"10s\"", n.Line)}}
	}
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: %q is not a duration: write it with a unit, e.g. \"%ss\" or \"500ms\"", n.Line, n.Value, n.Value)}}
	}
	*d = Duration(v)
	return nil
}

// RequireBalancer checks what only the balancer needs from the file.
func (c *Config) RequireBalancer() error {
	if c.Balancer.Interface == "" {
		return Errors{{File: c.File, Line: c.balancerLine, Path: "balancer.interface",
			Msg: "lbd needs the interface clients reach the VIPs on: set balancer.interface (e.g. eth0)"}}
	}
	return nil
}
