package config

import (
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/dsrlb/dsrlb/internal/prime"
)

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$`)

// validate turns the wire file into a Config, applying defaults and
// recording every rule broken. The returned Config is only meaningful when
// no error was recorded.
func (p *parser) validate(wf *wireFile) *Config {
	return p.assemble(wf, len(wf.Services), func(i int) Service {
		return p.service(fmt.Sprintf("services[%d]", i), &wf.Services[i])
	})
}

// assemble validates the balancer of wf and n services, service(i) giving
// the i-th validated on its own, then the rules across services. The
// Loader gives services it validated for an earlier file.
func (p *parser) assemble(wf *wireFile, n int, service func(i int) Service) *Config {
	cfg := &Config{File: p.file, balancerLine: wf.balancerLine}
	cfg.Balancer = p.balancer(wf.Balancer)
	if n == 0 {
		p.errf("services", "no services defined; add at least one under services:")
	}
	if n > MaxServices {
		p.errf("services", "%d services, at most %d are supported", n, MaxServices)
	}
	if n > 0 {
		cfg.Services = make([]Service, 0, n)
	}
	for i := range n {
		cfg.Services = append(cfg.Services, service(i))
	}
	p.crossChecks(cfg)
	return cfg
}

func (p *parser) balancer(w *wireBalancer) Balancer {
	b := Balancer{
		MaglevTableSize: DefaultMaglevTableSize,
		Conntrack:       Conntrack{Size: DefaultConntrackSize, TCPTimeout: DefaultTCPTimeout, UDPTimeout: DefaultUDPTimeout},
		PinPath:         DefaultPinPath,
		MetricsListen:   DefaultMetricsListen,
		VIPOwner:        DefaultVIPOwner,
	}
	if w == nil {
		return b
	}
	b.Interface = w.Interface
	if w.Interface != "" && !validIfName(w.Interface) {
		p.errf("balancer.interface", "%q is not an interface name (1-15 characters, no '/', ':' or spaces)", w.Interface)
	}
	if w.MaglevTableSize != nil {
		b.MaglevTableSize = *w.MaglevTableSize
		if n := b.MaglevTableSize; n < MinMaglevTableSize || n > MaxMaglevTableSize || !prime.Is(n) {
			p.errf("balancer.maglev_table_size", "%d must be a prime between %d and %d (e.g. 65537, 131071, 655373)", n, MinMaglevTableSize, MaxMaglevTableSize)
		}
	}
	if c := w.Conntrack; c != nil {
		if c.Size != nil {
			b.Conntrack.Size = *c.Size
			if *c.Size < MinConntrackSize || *c.Size > MaxConntrackSize {
				p.errf("balancer.conntrack.size", "%d is out of range: give %d to %d flows", *c.Size, MinConntrackSize, MaxConntrackSize)
			}
		}
		b.Conntrack.TCPTimeout = p.duration("balancer.conntrack.tcp_timeout", c.TCPTimeout, DefaultTCPTimeout, time.Second, 24*time.Hour)
		b.Conntrack.UDPTimeout = p.duration("balancer.conntrack.udp_timeout", c.UDPTimeout, DefaultUDPTimeout, time.Second, 24*time.Hour)
	}
	if w.PinPath != nil {
		b.PinPath = filepath.Clean(*w.PinPath)
		if !filepath.IsAbs(*w.PinPath) {
			p.errf("balancer.pin_path", "%q must be an absolute path on a bpffs mount, e.g. %s", *w.PinPath, DefaultPinPath)
		}
	}
	if m := w.Metrics; m != nil && m.Listen != nil {
		b.MetricsListen = *m.Listen
		if b.MetricsListen != "" {
			if _, port, err := net.SplitHostPort(b.MetricsListen); err != nil || !validPort(port) {
				p.errf("balancer.metrics.listen", "%q is not host:port (e.g. 127.0.0.1:9469); use \"\" to turn metrics off", b.MetricsListen)
			}
		}
	}
	if m := w.Metrics; m != nil && m.WebConfig != nil {
		b.MetricsWebConfig = *m.WebConfig
		if !filepath.IsAbs(b.MetricsWebConfig) {
			p.errf("balancer.metrics.web_config", "%q must be an absolute path, e.g. /etc/dsrlb/web-config.yml", b.MetricsWebConfig)
		}
	}
	b.VIPOwner = VIPOwner(p.enum("balancer.vip_owner", w.VIPOwner, string(DefaultVIPOwner), string(VIPOwnerLBD), string(VIPOwnerExternal)))
	if w.BGP != nil {
		b.BGP = p.bgp("balancer.bgp", w.BGP)
		// With BGP the routers route the VIPs to the balancers: none may
		// hold them on its interface, or it would answer ARP for them.
		if b.VIPOwner == VIPOwnerLBD && w.VIPOwner != "" {
			p.errf("balancer.vip_owner", "lbd cannot own the VIPs with balancer.bgp: the routers route them to the balancers, which must not hold them on the interface; remove vip_owner or set it to external")
		}
		b.VIPOwner = VIPOwnerExternal
	}
	return b
}

// Bounds of the BGP settings (RFC 4271: a hold time is 0 or 3-65535 s; 0,
// no keepalives, is refused because a dead balancer would keep its routes).
const (
	MinHoldTime    = 3 * time.Second
	MaxHoldTime    = 65535 * time.Second
	MaxASN         = 4294967294 // 4294967295 is reserved (RFC 7300)
	MaxPasswordLen = 80         // TCP_MD5SIG_MAXKEYLEN
	MaxPeers       = 64
)

func (p *parser) bgp(path string, w *wireBGP) *BGP {
	g := &BGP{WithdrawWait: DefaultWithdrawWait}
	g.ASN = p.asn(path+".asn", w.ASN)
	if w.RouterID != "" {
		a, err := netip.ParseAddr(w.RouterID)
		if err != nil || !a.Is4() || a.IsUnspecified() {
			p.errf(path+".router_id", "%q is not an IPv4 address such as 192.0.2.2 (a BGP router id is 32 bits, also on IPv6-only hosts)", w.RouterID)
		} else {
			g.RouterID = a
		}
	}
	g.WithdrawWait = p.duration(path+".withdraw_wait", w.WithdrawWait, DefaultWithdrawWait, 0, time.Minute)
	if len(w.Peers) == 0 {
		p.errf(path+".peers", "no peers: give at least one router to announce the VIPs to")
	}
	if len(w.Peers) > MaxPeers {
		p.errf(path+".peers", "%d peers, at most %d are supported", len(w.Peers), MaxPeers)
	}
	seen := map[netip.Addr]string{}
	for i, wp := range w.Peers {
		pp := fmt.Sprintf("%s.peers[%d]", path, i)
		peer := BGPPeer{HoldTime: DefaultHoldTime}
		peer.Address = p.addr(pp+".address", wp.Address, "peer address")
		if first, dup := seen[peer.Address]; dup && peer.Address.IsValid() {
			p.errf(pp+".address", "peer %s is listed twice (first at %s); one session per router", peer.Address, first)
		}
		seen[peer.Address] = pp
		peer.ASN = p.asn(pp+".asn", wp.ASN)
		if wp.HoldTime != nil {
			peer.HoldTime = time.Duration(*wp.HoldTime)
			if peer.HoldTime < MinHoldTime || peer.HoldTime > MaxHoldTime || peer.HoldTime%time.Second != 0 {
				p.errf(pp+".hold_time", "%s is not a BGP hold time: give whole seconds from 3s to 65535s", peer.HoldTime)
			}
		}
		if wp.Password != nil {
			peer.Password = *wp.Password
			if n := len(peer.Password); n == 0 || n > MaxPasswordLen {
				p.errf(pp+".password", "a TCP MD5 key has 1-%d characters, not %d; omit password for none", MaxPasswordLen, n)
			}
		}
		g.Peers = append(g.Peers, peer)
	}
	return g
}

func (p *parser) asn(path string, v *uint32) uint32 {
	if v == nil {
		p.errf(path, "AS number is required (private range 64512-65534 or 4200000000-4294967294)")
		return 0
	}
	if *v == 0 || *v > MaxASN {
		p.errf(path, "AS number %d is out of range 1-%d", *v, uint32(MaxASN))
	}
	return *v
}

func (p *parser) announce(path string, w *wireAnnounce, servers int) Announce {
	a := Announce{MinHealthy: DefaultMinHealthy}
	if w == nil {
		return a
	}
	if w.MinHealthy != nil {
		a.MinHealthy = *w.MinHealthy
		if *w.MinHealthy < 0 || (servers > 0 && *w.MinHealthy > servers) {
			p.errf(path+".min_healthy", "%d can never be met by %d server(s): give 0 to %d", *w.MinHealthy, servers, servers)
		}
	}
	for i, c := range w.Communities {
		hi, lo, ok := strings.Cut(c, ":")
		h, herr := strconv.ParseUint(hi, 10, 16)
		l, lerr := strconv.ParseUint(lo, 10, 16)
		if !ok || herr != nil || lerr != nil {
			p.errf(fmt.Sprintf("%s.communities[%d]", path, i), "%q is not a BGP community: write ASN:value, each 0-65535, e.g. \"64496:100\"", c)
			continue
		}
		a.Communities = append(a.Communities, uint32(h)<<16|uint32(l))
	}
	a.MED = w.MED
	return a
}

func (p *parser) duration(path string, d *Duration, def, lo, hi time.Duration) time.Duration {
	if d == nil {
		return def
	}
	v := time.Duration(*d)
	if v < lo || v > hi {
		p.errf(path, "%s is out of range: give %s to %s", v, lo, hi)
	}
	return v
}

func (p *parser) service(path string, w *wireService) Service {
	s := Service{Name: w.Name, Line: w.line}
	if !nameRE.MatchString(w.Name) {
		p.errf(path+".name", "%q is not a valid name: use 1-32 letters, digits, '.', '_' or '-'", w.Name)
	}
	s.VIP = p.addr(path+".vip", w.VIP, "VIP")
	s.Protocol = Protocol(p.enum(path+".protocol", w.Protocol, string(TCP), "tcp", "udp"))
	s.Balance = Balance(p.enum(path+".balance", w.Balance, string(Maglev), "maglev", "roundrobin", "source"))
	seen := map[int]bool{}
	for i, port := range w.Ports {
		pp := fmt.Sprintf("%s.ports[%d]", path, i)
		switch {
		case port < 1 || port > 65535:
			p.errf(pp, "port %d is out of range 1-65535 (omit ports to take every port)", port)
		case seen[port]:
			p.errf(pp, "port %d is listed twice", port)
		default:
			s.Ports = append(s.Ports, uint16(port))
		}
		seen[port] = true
	}
	s.Check = p.check(path+".check", w.Check, s.Ports)
	s.Announce = p.announce(path+".announce", w.Announce, len(w.Servers))
	s.hasAnnounce = w.Announce != nil
	if len(w.Servers) == 0 {
		p.errf(path+".servers", "service %q has no servers; add at least one", w.Name)
	}
	if len(w.Servers) > MaxServers {
		p.errf(path+".servers", "%d servers, at most %d per service", len(w.Servers), MaxServers)
	}
	names, addrs := map[string]string{}, map[netip.Addr]string{}
	for i := range w.Servers {
		sp := fmt.Sprintf("%s.servers[%d]", path, i)
		srv := p.server(sp, &w.Servers[i], s.VIP)
		if first, dup := names[srv.Name]; dup && srv.Name != "" {
			p.errf(sp+".name", "server name %q is used twice in this service (first at %s); names must be unique", srv.Name, first)
		}
		names[srv.Name] = sp
		if first, dup := addrs[srv.Address]; dup && srv.Address.IsValid() {
			p.errf(sp+".address", "address %s is listed twice in this service (first at %s); list each backend once and use weight for shares", srv.Address, first)
		}
		addrs[srv.Address] = sp
		s.Servers = append(s.Servers, srv)
	}
	return s
}

func (p *parser) check(path string, w *wireCheck, ports []uint16) Check {
	c := Check{Type: CheckTCP, Interval: DefaultCheckInterval, Rise: DefaultRise, Fall: DefaultFall}
	if w == nil {
		w = &wireCheck{}
	}
	c.Type = CheckType(p.enum(path+".type", w.Type, string(CheckTCP), "tcp", "http", "none"))
	c.Interval = p.duration(path+".interval", w.Interval, DefaultCheckInterval, 100*time.Millisecond, time.Hour)
	c.Timeout = p.duration(path+".timeout", w.Timeout, min(DefaultCheckTimeout, c.Interval/2), 10*time.Millisecond, time.Hour)
	if c.Timeout >= c.Interval {
		p.errf(path+".timeout", "timeout %s must be shorter than interval %s, or checks overlap", c.Timeout, c.Interval)
	}
	c.Rise = p.count(path+".rise", w.Rise, DefaultRise)
	c.Fall = p.count(path+".fall", w.Fall, DefaultFall)
	switch {
	case w.Port != nil && (*w.Port < 1 || *w.Port > 65535):
		p.errf(path+".port", "port %d is out of range 1-65535", *w.Port)
	case w.Port != nil:
		c.Port = uint16(*w.Port)
	case len(ports) > 0:
		c.Port = ports[0]
	case c.Type != CheckNone:
		p.errf(path+".port", "the service takes every port, so the check needs one: set check.port (or check.type: none)")
	}
	c.Via = p.checkVia(path+".via", c.Type, w.Via)
	if c.Type != CheckHTTP {
		if w.Path != nil {
			p.errf(path+".path", "path is only used by http checks; remove it or set type: http")
		}
		if w.ExpectStatus != nil {
			p.errf(path+".expect_status", "expect_status is only used by http checks; remove it or set type: http")
		}
		return c
	}
	c.Path, c.ExpectStatus = DefaultHTTPPath, DefaultExpectStatus
	if w.Path != nil {
		c.Path = *w.Path
		if !strings.HasPrefix(c.Path, "/") || strings.ContainsAny(c.Path, " \t\r\n") {
			p.errf(path+".path", "%q must start with '/' and contain no spaces, e.g. /healthz", c.Path)
		}
	}
	if w.ExpectStatus != nil {
		c.ExpectStatus = *w.ExpectStatus
		if c.ExpectStatus < 100 || c.ExpectStatus > 599 {
			p.errf(path+".expect_status", "%d is not an HTTP status (100-599)", c.ExpectStatus)
		}
	}
	return c
}

// checkVia is the path of a tcp/http check: vip by default, "" for type
// none, which sends nothing.
func (p *parser) checkVia(path string, t CheckType, text string) CheckVia {
	if t == CheckNone {
		if text != "" {
			p.errf(path, "via is only used by tcp and http checks; remove it or set type: tcp or http")
		}
		return ""
	}
	return CheckVia(p.enum(path, text, string(ViaVIP), string(ViaVIP), string(ViaAddress)))
}

func (p *parser) count(path string, v *int, def int) int {
	if v == nil {
		return def
	}
	if *v < 1 || *v > MaxRiseFall {
		p.errf(path, "%d is out of range 1-%d", *v, MaxRiseFall)
	}
	return *v
}

func (p *parser) server(path string, w *wireServer, vip netip.Addr) Server {
	s := Server{Name: w.Name, Weight: DefaultWeight, Check: true, Line: w.line}
	if !nameRE.MatchString(w.Name) {
		p.errf(path+".name", "%q is not a valid name: use 1-32 letters, digits, '.', '_' or '-'", w.Name)
	}
	s.Address = p.addr(path+".address", w.Address, "server address")
	if s.Address.IsValid() && vip.IsValid() && s.Address.Is4() != vip.Is4() {
		p.errf(path+".address", "%s and the VIP %s are of different families; DSR forwards frames unchanged, so a server must have the VIP's family", s.Address, vip)
	}
	if w.Weight != nil {
		if *w.Weight < 0 || *w.Weight > MaxWeight {
			p.errf(path+".weight", "weight %d is out of range 0-%d (0 drains the server)", *w.Weight, MaxWeight)
		} else {
			s.Weight = uint32(*w.Weight)
		}
	}
	if w.Check != nil {
		s.Check = *w.Check
	}
	if w.MAC != nil {
		mac, err := net.ParseMAC(*w.MAC)
		switch {
		case err != nil || len(mac) != 6:
			p.errf(path+".mac", "%q is not an Ethernet MAC such as 52:54:00:12:34:56", *w.MAC)
		case mac[0]&1 == 1 || isZero(mac):
			p.errf(path+".mac", "%s is a multicast or zero MAC; give the server's unicast MAC", mac)
		default:
			s.MAC = mac
		}
	}
	return s
}

// addr parses a unicast address usable as a VIP or a server address.
func (p *parser) addr(path, text, what string) netip.Addr {
	if text == "" {
		p.errf(path, "%s is required", what)
		return netip.Addr{}
	}
	a, err := netip.ParseAddr(text)
	if err != nil || a.Zone() != "" {
		p.errf(path, "%q is not an IP address; write e.g. 192.0.2.10 or 2001:db8::10 (no prefix length)", text)
		return netip.Addr{}
	}
	a = a.Unmap()
	if a.IsUnspecified() || a.IsLoopback() || a.IsMulticast() || a.IsLinkLocalUnicast() || a == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
		p.errf(path, "%s cannot be a %s: it is not a routable unicast address", a, what)
	}
	return a
}

// enum returns text (or def when empty) if it is one of allowed.
func (p *parser) enum(path, text, def string, allowed ...string) string {
	if text == "" {
		return def
	}
	for _, a := range allowed {
		if text == a {
			return text
		}
	}
	hint := ""
	if s := suggest(text, allowed); s != "" {
		hint = fmt.Sprintf(" (did you mean %q?)", s)
	}
	p.errf(path, "%q is not one of %s%s", text, strings.Join(allowed, ", "), hint)
	return def
}

// crossChecks applies the rules that span services.
func (p *parser) crossChecks(cfg *Config) {
	names := make(map[string]int, len(cfg.Services))
	vips := map[netip.Addr]bool{}
	for _, s := range cfg.Services {
		vips[s.VIP] = true
	}
	type key struct {
		vip   netip.Addr
		proto Protocol
		port  uint16 // 0: every port
	}
	owner := make(map[key]string, len(cfg.Services))
	maxServers := 0
	announced := map[netip.Addr]int{} // VIP -> first service announcing it
	for i, s := range cfg.Services {
		path := fmt.Sprintf("services[%d]", i)
		if s.hasAnnounce && cfg.Balancer.BGP == nil {
			p.errf(path+".announce", "announce is only used with balancer.bgp; remove it or configure BGP")
		}
		if first, ok := announced[s.VIP]; ok && s.VIP.IsValid() {
			f := cfg.Services[first].Announce
			if !slices.Equal(f.Communities, s.Announce.Communities) || !equalMED(f.MED, s.Announce.MED) {
				p.errf(path+".announce", "services %q and %q share the VIP %s but announce it with different communities or MED; one route carries one set", cfg.Services[first].Name, s.Name, s.VIP)
			}
		} else {
			announced[s.VIP] = i
		}
		if first, dup := names[s.Name]; dup && s.Name != "" {
			p.errf(path+".name", "service name %q is already used by services[%d]; names must be unique", s.Name, first)
		}
		names[s.Name] = i
		ports := s.Ports
		if s.AllPorts() {
			ports = []uint16{0}
		}
		for _, port := range ports {
			k := key{s.VIP, s.Protocol, port}
			if other, dup := owner[k]; dup && s.VIP.IsValid() {
				what := fmt.Sprintf("port %d", port)
				if port == 0 {
					what = "every port"
				}
				p.errf(path, "%s %s %s is already taken by service %q; a (vip, protocol, port) belongs to one service", s.VIP, s.Protocol, what, other)
			}
			owner[k] = s.Name
		}
		for j, srv := range s.Servers {
			if srv.Address.IsValid() && vips[srv.Address] {
				p.errf(fmt.Sprintf("%s.servers[%d].address", path, j), "%s is a VIP of this file; a server must be reached by its own address", srv.Address)
			}
		}
		maxServers = max(maxServers, len(s.Servers))
	}
	if need := maxServers * MaglevSlotsPerServer; need > int(cfg.Balancer.MaglevTableSize) {
		p.errf("balancer.maglev_table_size", "%d slots are too few for a service of %d servers: give a prime of at least %d", cfg.Balancer.MaglevTableSize, maxServers, need)
	}
}

func equalMED(a, b *uint32) bool {
	return (a == nil) == (b == nil) && (a == nil || *a == *b)
}

func validIfName(s string) bool {
	return len(s) <= 15 && !strings.ContainsAny(s, "/: \t\n") && s != "." && s != ".."
}

func validPort(s string) bool {
	n, err := strconv.Atoi(s)
	return err == nil && n >= 1 && n <= 65535
}

func isZero(b []byte) bool {
	for _, x := range b {
		if x != 0 {
			return false
		}
	}
	return true
}
