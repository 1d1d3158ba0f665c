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
	b.Notify = p.notify(w.Notify)
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
	s.Check = p.check(path+".check", w.Check, s.Ports, s.Protocol)
	if w.Check != nil {
		s.checkLine = w.Check.line
	}
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
		p.serverCheck(sp, &w.Servers[i], &srv, s.Check.Type)
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
	s.OnFailure = OnFailure(p.enum(path+".on_failure", w.OnFailure, string(FailDown), string(FailDown), string(FailDrain)))
	p.fallbacks(path, w, &s, names, addrs)
	return s
}

// fallbacks validates the fallback: servers of w and appends them to
// s.Servers, marked. A fallback shares the primaries' names and addresses
// space: one backend is either a primary or a fallback of a service.
func (p *parser) fallbacks(path string, w *wireService, s *Service, names map[string]string, addrs map[netip.Addr]string) {
	if len(w.Servers)+len(w.Fallback) > MaxServers {
		p.errf(path+".fallback", "%d servers and fallbacks, at most %d per service", len(w.Servers)+len(w.Fallback), MaxServers)
	}
	for i := range w.Fallback {
		fp := fmt.Sprintf("%s.fallback[%d]", path, i)
		srv := p.server(fp, &w.Fallback[i], s.VIP)
		srv.Fallback = true
		if first, dup := names[srv.Name]; dup && srv.Name != "" {
			p.errf(fp+".name", "server name %q is already used in this service (at %s); a fallback needs a name of its own", srv.Name, first)
		}
		names[srv.Name] = fp
		if first, dup := addrs[srv.Address]; dup && srv.Address.IsValid() {
			p.errf(fp+".address", "address %s is already a server of this service (at %s); a backend is either a primary or a fallback", srv.Address, first)
		}
		addrs[srv.Address] = fp
		s.Servers = append(s.Servers, srv)
	}
}

// Bounds of balancer.notify.timeout.
const (
	MinNotifyTimeout = 100 * time.Millisecond
	MaxNotifyTimeout = 5 * time.Minute
)

func (p *parser) notify(w *wireNotify) *Notify {
	if w == nil {
		return nil
	}
	n := &Notify{Command: w.Command}
	switch {
	case w.Command == "":
		p.errf("balancer.notify.command", "command is required: the absolute path of the program to run on state changes")
	case !filepath.IsAbs(w.Command) || filepath.Clean(w.Command) != w.Command:
		p.errf("balancer.notify.command", "%q must be a clean absolute path such as /usr/local/bin/dsrlb-notify: it runs without a shell, so no arguments or $PATH lookup", w.Command)
	}
	n.Timeout = p.duration("balancer.notify.timeout", w.Timeout, DefaultNotifyTimeout, MinNotifyTimeout, MaxNotifyTimeout)
	return n
}

func (p *parser) check(path string, w *wireCheck, ports []uint16, proto Protocol) Check {
	c := Check{Type: CheckTCP, Interval: DefaultCheckInterval, Rise: DefaultRise, Fall: DefaultFall}
	if w == nil {
		w = &wireCheck{}
	}
	c.Type = CheckType(p.enum(path+".type", w.Type, string(CheckTCP), "tcp", "http", "https", "udp", "dns", "exec", "none"))
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
	case c.Type != CheckNone && c.Type != CheckExec: // a command needs no port
		p.errf(path+".port", "the service takes every port, so the check needs one: set check.port (or check.type: none)")
	}
	c.Via = p.checkVia(path+".via", c.Type, w.Via)
	p.onlyFor(path, w, c.Type)
	switch c.Type {
	case CheckHTTP, CheckHTTPS:
		p.httpCheck(path, w, &c)
	case CheckUDP:
		p.udpCheck(path, w, &c)
	case CheckDNS:
		p.dnsCheck(path, w, &c, proto)
	case CheckExec:
		p.execCheck(path, w, &c)
	}
	return c
}

func (p *parser) httpCheck(path string, w *wireCheck, c *Check) {
	c.Path, c.ExpectStatus, c.Method = DefaultHTTPPath, DefaultExpectStatus, DefaultHTTPMethod
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
	if w.Method != nil {
		c.Method = p.enum(path+".method", *w.Method, DefaultHTTPMethod, "GET", "HEAD", "POST", "OPTIONS")
	}
	if w.Host != nil {
		c.Host = *w.Host
		if !validHost(c.Host) {
			p.errf(path+".host", "%q is not a host name such as www.example.com (optionally with :port)", c.Host)
		}
	}
	if w.ExpectBody != nil {
		c.ExpectBody = *w.ExpectBody
		switch {
		case c.ExpectBody == "":
			p.errf(path+".expect_body", "an empty expect_body matches every body; remove it or give the text to look for")
		case len(c.ExpectBody) > MaxCheckBody:
			p.errf(path+".expect_body", "%d bytes: only the first %d bytes of a body are read, give a shorter text", len(c.ExpectBody), MaxCheckBody)
		case c.Method == "HEAD":
			p.errf(path+".expect_body", "a HEAD request has no body to look in; use method GET or remove expect_body")
		}
	}
	if c.Type != CheckHTTPS {
		return
	}
	c.SNI = c.Host
	if h, _, err := net.SplitHostPort(c.Host); err == nil {
		c.SNI = h
	}
	if w.SNI != nil {
		c.SNI = *w.SNI
		if !validHost(c.SNI) || strings.Contains(c.SNI, ":") {
			p.errf(path+".sni", "%q is not a server name such as www.example.com", c.SNI)
		}
	}
	if w.InsecureSkipVerify != nil {
		c.InsecureSkipVerify = *w.InsecureSkipVerify
	}
	if w.CAFile != nil {
		c.CAFile = *w.CAFile
		switch {
		case !filepath.IsAbs(c.CAFile):
			p.errf(path+".ca_file", "%q must be an absolute path, e.g. /etc/dsrlb/backend-ca.pem", c.CAFile)
		case c.InsecureSkipVerify:
			p.errf(path+".ca_file", "ca_file with insecure_skip_verify: true is never used; remove one of them")
		}
	}
}

func (p *parser) udpCheck(path string, w *wireCheck, c *Check) {
	var err error
	if w.Send == nil {
		p.errf(path+".send", "a udp check needs the datagram to send (a request the service answers): set check.send")
	} else if c.Send, err = Unescape(*w.Send); err != nil {
		p.errf(path+".send", "%v", err)
	}
	if w.Expect != nil {
		if c.Expect, err = Unescape(*w.Expect); err != nil {
			p.errf(path+".expect", "%v", err)
		} else if c.Expect == "" {
			p.errf(path+".expect", "an empty expect matches every answer; remove it")
		}
	}
}

func (p *parser) dnsCheck(path string, w *wireCheck, c *Check, proto Protocol) {
	c.Query, c.QueryType, c.ExpectRcode, c.DNSNet = DefaultDNSQuery, DefaultDNSQueryType, DefaultDNSRcode, string(proto)
	if c.DNSNet == "" {
		c.DNSNet = string(TCP)
	}
	if w.Query != nil {
		c.Query = *w.Query
		if !validDNSName(c.Query) {
			p.errf(path+".query", "%q is not a domain name such as www.example.com or . (labels of 1-63 characters, 253 in all)", c.Query)
		}
	}
	if !strings.HasSuffix(c.Query, ".") {
		c.Query += "."
	}
	if w.QueryType != nil {
		c.QueryType = p.enum(path+".query_type", strings.ToUpper(*w.QueryType), DefaultDNSQueryType, DNSQueryTypes...)
	}
	if w.ExpectRcode != nil {
		c.ExpectRcode = p.enum(path+".expect_rcode", strings.ToUpper(*w.ExpectRcode), DefaultDNSRcode, DNSRcodes...)
	}
}

func (p *parser) execCheck(path string, w *wireCheck, c *Check) {
	if w.Command == nil || *w.Command == "" {
		p.errf(path+".command", "an exec check needs the program to run: set check.command to its absolute path")
		return
	}
	c.Command = *w.Command
	if !filepath.IsAbs(c.Command) {
		p.errf(path+".command", "%q must be an absolute path (no shell and no PATH search run it), e.g. /usr/local/lib/dsrlb/check-app", c.Command)
	}
	for i, a := range w.Args {
		if strings.ContainsRune(a, 0) {
			p.errf(fmt.Sprintf("%s.args[%d]", path, i), "an argument cannot contain a NUL byte")
		}
	}
	c.Args = ArgsOf(w.Args)
}

// onlyFor reports every key given that the check type does not use.
func (p *parser) onlyFor(path string, w *wireCheck, t CheckType) {
	keys := []struct {
		set   bool
		name  string
		types []CheckType
	}{
		{w.Path != nil, "path", httpTypes},
		{w.ExpectStatus != nil, "expect_status", httpTypes},
		{w.Method != nil, "method", httpTypes},
		{w.Host != nil, "host", httpTypes},
		{w.ExpectBody != nil, "expect_body", httpTypes},
		{w.SNI != nil, "sni", []CheckType{CheckHTTPS}},
		{w.CAFile != nil, "ca_file", []CheckType{CheckHTTPS}},
		{w.InsecureSkipVerify != nil, "insecure_skip_verify", []CheckType{CheckHTTPS}},
		{w.Send != nil, "send", []CheckType{CheckUDP}},
		{w.Expect != nil, "expect", []CheckType{CheckUDP}},
		{w.Query != nil, "query", []CheckType{CheckDNS}},
		{w.QueryType != nil, "query_type", []CheckType{CheckDNS}},
		{w.ExpectRcode != nil, "expect_rcode", []CheckType{CheckDNS}},
		{w.Command != nil, "command", []CheckType{CheckExec}},
		{w.Args != nil, "args", []CheckType{CheckExec}},
	}
	for _, k := range keys {
		if !k.set || slices.Contains(k.types, t) {
			continue
		}
		names := make([]string, len(k.types))
		for i, kt := range k.types {
			names[i] = string(kt)
		}
		p.errf(path+"."+k.name, "%s is only used by %s checks, not %s; remove it or set type: %s", k.name, strings.Join(names, " and "), t, names[0])
	}
}

var httpTypes = []CheckType{CheckHTTP, CheckHTTPS}

// MaxCheckBody is how much of an http(s) check's body is read (and
// searched for expect_body).
const MaxCheckBody = 4 << 10

// DNSQueryTypes and DNSRcodes are the record types and response codes a
// dns check takes, by their names in miekg/dns (lbd's tests hold them to it).
var (
	DNSQueryTypes = []string{"A", "AAAA", "CNAME", "MX", "NS", "PTR", "SOA", "SRV", "TXT", "CAA"}
	DNSRcodes     = []string{"NOERROR", "NXDOMAIN", "SERVFAIL", "REFUSED", "NOTIMP", "FORMERR"}
)

// validHost accepts a DNS name or IP literal, optionally with :port.
func validHost(h string) bool {
	if host, port, err := net.SplitHostPort(h); err == nil {
		if !validPort(port) {
			return false
		}
		h = host
	}
	if _, err := netip.ParseAddr(h); err == nil {
		return true
	}
	return h != "." && validDNSName(h)
}

// validDNSName accepts a domain name of letters, digits, '-', '_' and '.',
// "." itself, with or without the final dot.
func validDNSName(n string) bool {
	if n == "." {
		return true
	}
	n = strings.TrimSuffix(n, ".")
	if n == "" || len(n) > 253 {
		return false
	}
	for _, l := range strings.Split(n, ".") {
		if l == "" || len(l) > 63 {
			return false
		}
		for _, r := range l {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '*') {
				return false
			}
		}
	}
	return true
}

// Unescape decodes the text of a udp check's send or expect: \n, \r, \t,
// \0, \\ and \xHH are escapes; any other backslash is an error (so a
// typo is not sent as written).
func Unescape(s string) (string, error) {
	if !strings.Contains(s, `\`) {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' {
			b.WriteByte(s[i])
			continue
		}
		if i+1 >= len(s) {
			return "", fmt.Errorf("%q ends in a lone backslash; write \\\\ for a backslash", s)
		}
		i++
		switch s[i] {
		case 'n':
			b.WriteByte('\n')
		case 'r':
			b.WriteByte('\r')
		case 't':
			b.WriteByte('\t')
		case '0':
			b.WriteByte(0)
		case '\\':
			b.WriteByte('\\')
		case 'x':
			if i+2 >= len(s) {
				return "", fmt.Errorf("%q: \\x needs two hex digits, e.g. \\xff", s)
			}
			v, err := strconv.ParseUint(s[i+1:i+3], 16, 8)
			if err != nil {
				return "", fmt.Errorf("%q: \\x%s is not two hex digits, e.g. \\xff", s, s[i+1:i+3])
			}
			b.WriteByte(byte(v))
			i += 2
		default:
			return "", fmt.Errorf("%q: \\%c is not an escape (use \\n, \\r, \\t, \\0, \\\\ or \\xHH)", s, s[i])
		}
	}
	return b.String(), nil
}

// checkVia is the path of a tcp, http or https check: vip by default. The
// other types have none ("" ): udp, dns and exec talk to the server's own
// address (a dns check over TCP too), none sends nothing.
func (p *parser) checkVia(path string, t CheckType, text string) CheckVia {
	switch t {
	case CheckTCP, CheckHTTP, CheckHTTPS:
		return CheckVia(p.enum(path, text, string(ViaVIP), string(ViaVIP), string(ViaAddress)))
	}
	switch {
	case text == "":
	case t == CheckNone:
		p.errf(path, "via is only used by tcp, http and https checks (a none check sends nothing); remove it")
	default:
		p.errf(path, "via is only used by tcp, http and https checks (%s checks go to the server's own address); remove it", t)
	}
	return ""
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

// serverCheck validates a server's check_port and check_address.
func (p *parser) serverCheck(path string, w *wireServer, s *Server, t CheckType) {
	if w.CheckPort == nil && w.CheckAddress == nil {
		return
	}
	if t == CheckNone || !s.Check {
		p.errf(path, "check_port and check_address are used by health checks, and this server is not checked; remove them")
		return
	}
	if w.CheckPort != nil {
		if *w.CheckPort < 1 || *w.CheckPort > 65535 {
			p.errf(path+".check_port", "port %d is out of range 1-65535", *w.CheckPort)
		} else {
			s.CheckPort = uint16(*w.CheckPort)
		}
	}
	if w.CheckAddress != nil {
		s.CheckAddress = p.addr(path+".check_address", *w.CheckAddress, "check address")
	}
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
	maxServers, servers := 0, 0
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
				p.errf(serverPath(path, &s, j)+".address", "%s is a VIP of this file; a server must be reached by its own address", srv.Address)
			}
		}
		maxServers = max(maxServers, len(s.Servers))
		servers += len(s.Servers)
	}
	if len(owner) > MaxServiceKeys {
		p.errf("services", "%d (vip, protocol, port) entries over all services, at most %d fit the data plane: list fewer ports, or omit ports to give a service every port of its VIP (one entry)", len(owner), MaxServiceKeys)
	}
	if servers > MaxBackends {
		p.errf("services", "%d servers and fallbacks over all services, at most %d fit the data plane; split the services over more balancers", servers, MaxBackends)
	}
	if need := maxServers * MaglevSlotsPerServer; need > int(cfg.Balancer.MaglevTableSize) {
		p.errf("balancer.maglev_table_size", "%d slots are too few for a service of %d servers: give a prime of at least %d", cfg.Balancer.MaglevTableSize, maxServers, need)
	}
}

// serverPath is the field path of s.Servers[j]: servers[j], or
// fallback[k] for the fallbacks that follow the primaries.
func serverPath(path string, s *Service, j int) string {
	if n := s.Primaries(); j >= n {
		return fmt.Sprintf("%s.fallback[%d]", path, j-n)
	}
	return fmt.Sprintf("%s.servers[%d]", path, j)
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
