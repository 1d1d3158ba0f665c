package config

import (
	"fmt"
	"net"
	"net/netip"
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
	MaxRiseFall        = 100
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
}

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
	CheckTCP  CheckType = "tcp"
	CheckHTTP CheckType = "http"
	CheckNone CheckType = "none"
)

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

	hasAnnounce bool // announce: was written (only allowed with BGP)
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
	Path         string   // http
	ExpectStatus int      // http
	Via          CheckVia // tcp, http: "" for type none
}

// Server is one backend of a service.
type Server struct {
	Name    string
	Address netip.Addr
	Weight  uint32 // 0 = drain
	Check   bool
	MAC     net.HardwareAddr // nil: resolve through the neighbour table
	Line    int
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
