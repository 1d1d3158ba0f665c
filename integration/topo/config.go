package topo

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/dsrlb/dsrlb/shared/config"
)

// Config is the part of dsrlb.yaml the scenarios vary; Render adds the
// topology's interface, a unique pin_path and metrics off.
type Config struct {
	Services []Service
	BGP      *BGP // balancer.bgp; nil: ARP mode
	// VIPOwner is balancer.vip_owner ("external" for keepalived); "" leaves
	// the default.
	VIPOwner string
	// MetricsListen is balancer.metrics.listen, inside the balancer's
	// namespace; "" (the harness's default) turns metrics off.
	MetricsListen string
	// ConntrackSize is balancer.conntrack.size; 0 leaves the default.
	ConntrackSize int
	// TCPTimeout is balancer.conntrack.tcp_timeout; 0 leaves the default.
	TCPTimeout time.Duration
	// Notify is balancer.notify; nil: none.
	Notify *Notify
}

// Notify is balancer.notify; a zero Timeout leaves the default.
type Notify struct {
	Command string
	Timeout time.Duration
}

// BGP is balancer.bgp, as the schema has it; zero fields take the
// schema's defaults.
type BGP = config.BGP

// BGPPeer is balancer.bgp.peers[].
type BGPPeer = config.BGPPeer

// Service is one services[] entry.
type Service struct {
	Name     string
	VIP      netip.Addr
	Protocol string // tcp (default) or udp
	Ports    []int
	Balance  string // maglev (default), roundrobin, source
	Check    Check
	Servers  []Server
	// MinHealthy, when not nil, is announce.min_healthy.
	MinHealthy *int
	// Fallback is fallback: (servers that take over when no server is up).
	Fallback []Server
	// OnFailure is on_failure (down, drain); "" leaves the default.
	OnFailure string
}

// Check is services[].check; zero fields take the schema's defaults.
type Check struct {
	Type       string // tcp, http, none
	Interval   time.Duration
	Timeout    time.Duration
	Rise, Fall int
	Port       int
	Path       string
	// Extra are more check keys, each "key: value" in YAML flow style
	// (the https, udp, dns and exec keys), written as given.
	Extra []string
	Via   string // vip (the schema's default), address
}

// Server is services[].servers[]; Weight -1 leaves the default.
type Server struct {
	Name    string
	Address netip.Addr
	Weight  int
	// CheckPort, when not 0, is the server's check_port.
	CheckPort int
}

// FastCheck is the health check the scenarios use: tcp every 300ms, down
// after 2 failures, up after 2 successes.
func FastCheck(port int) Check {
	return Check{Type: "tcp", Interval: 300 * time.Millisecond, Timeout: 200 * time.Millisecond, Rise: 2, Fall: 2, Port: port}
}

// WebService is a TCP service on vip:80 over the given backends (weight 1
// each) with FastCheck.
func (t *Topology) WebService(name string, vip netip.Addr, balance string, backends ...*Host) Service {
	s := Service{Name: name, VIP: vip, Protocol: "tcp", Ports: []int{HTTPPort}, Balance: balance, Check: FastCheck(HTTPPort)}
	for _, b := range backends {
		addr := b.IPv4
		if vip.Is6() {
			addr = b.IPv6
		}
		s.Servers = append(s.Servers, Server{Name: b.Role, Address: addr, Weight: 1})
	}
	return s
}

// lists reports whether h is a server of some service.
func (c Config) lists(h *Host) bool {
	for _, s := range c.Services {
		for _, sv := range append(slices.Clip(s.Servers), s.Fallback...) {
			if sv.Address == h.IPv4 || sv.Address == h.IPv6 {
				return true
			}
		}
	}
	return false
}

// PinPathFor is the bpffs directory of balancer lb's data plane.
func (t *Topology) PinPathFor(lb *Host) string {
	if lb == t.Balancer {
		return t.PinPath
	}
	return t.PinPath + "-" + lb.Role
}

// Render writes the configuration of the (first) balancer as YAML.
func (t *Topology) Render(c Config) string { return t.renderFor(t.Balancer, c) }

// renderFor writes the configuration as YAML for balancer lb: the same
// file for every balancer but the pin path.
func (t *Topology) renderFor(lb *Host, c Config) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# written by the dsrlb integration harness for %s\n", t.ID)
	fmt.Fprintf(&b, "balancer:\n  interface: %s\n  pin_path: %s\n  maglev_table_size: 65537\n  metrics:\n    listen: %q\n", lb.Link, t.PinPathFor(lb), c.MetricsListen)
	if c.VIPOwner != "" {
		fmt.Fprintf(&b, "  vip_owner: %s\n", c.VIPOwner)
	}
	if c.ConntrackSize != 0 || c.TCPTimeout != 0 {
		fmt.Fprintf(&b, "  conntrack:\n")
	}
	if c.ConntrackSize != 0 {
		fmt.Fprintf(&b, "    size: %d\n", c.ConntrackSize)
	}
	if c.TCPTimeout != 0 {
		fmt.Fprintf(&b, "    tcp_timeout: %v\n", c.TCPTimeout)
	}
	if n := c.Notify; n != nil {
		fmt.Fprintf(&b, "  notify:\n    command: %s\n", n.Command)
		if n.Timeout != 0 {
			fmt.Fprintf(&b, "    timeout: %v\n", n.Timeout)
		}
	}
	if g := c.BGP; g != nil {
		fmt.Fprintf(&b, "  bgp:\n    asn: %d\n", g.ASN)
		if g.RouterID.IsValid() {
			fmt.Fprintf(&b, "    router_id: %s\n", g.RouterID)
		}
		if g.WithdrawWait != 0 {
			fmt.Fprintf(&b, "    withdraw_wait: %v\n", g.WithdrawWait)
		}
		b.WriteString("    peers:\n")
		for _, p := range g.Peers {
			fmt.Fprintf(&b, "      - {address: \"%s\", asn: %d", p.Address, p.ASN)
			if p.HoldTime != 0 {
				fmt.Fprintf(&b, ", hold_time: %v", p.HoldTime)
			}
			if p.Password != "" {
				fmt.Fprintf(&b, ", password: %q", p.Password)
			}
			b.WriteString("}\n")
		}
	}
	b.WriteString("services:\n")
	for _, s := range c.Services {
		fmt.Fprintf(&b, "  - name: %s\n    vip: %s\n", s.Name, s.VIP)
		if s.Protocol != "" {
			fmt.Fprintf(&b, "    protocol: %s\n", s.Protocol)
		}
		ports := make([]string, len(s.Ports))
		for i, p := range s.Ports {
			ports[i] = fmt.Sprint(p)
		}
		fmt.Fprintf(&b, "    ports: [%s]\n", strings.Join(ports, ", "))
		if s.Balance != "" {
			fmt.Fprintf(&b, "    balance: %s\n", s.Balance)
		}
		var ck []string
		add := func(k string, v any) { ck = append(ck, fmt.Sprintf("%s: %v", k, v)) }
		if s.Check.Type != "" {
			add("type", s.Check.Type)
		}
		if s.Check.Interval != 0 {
			add("interval", s.Check.Interval)
		}
		if s.Check.Timeout != 0 {
			add("timeout", s.Check.Timeout)
		}
		if s.Check.Rise != 0 {
			add("rise", s.Check.Rise)
		}
		if s.Check.Fall != 0 {
			add("fall", s.Check.Fall)
		}
		if s.Check.Port != 0 {
			add("port", s.Check.Port)
		}
		if s.Check.Path != "" {
			add("path", s.Check.Path)
		}
		if s.Check.Via != "" {
			add("via", s.Check.Via)
		}
		ck = append(ck, s.Check.Extra...)
		if len(ck) > 0 {
			fmt.Fprintf(&b, "    check: {%s}\n", strings.Join(ck, ", "))
		}
		if s.MinHealthy != nil {
			fmt.Fprintf(&b, "    announce: {min_healthy: %d}\n", *s.MinHealthy)
		}
		if s.OnFailure != "" {
			fmt.Fprintf(&b, "    on_failure: %s\n", s.OnFailure)
		}
		writeServers(&b, "servers", s.Servers)
		if len(s.Fallback) > 0 {
			writeServers(&b, "fallback", s.Fallback)
		}
	}
	return b.String()
}

func writeServers(b *strings.Builder, key string, ss []Server) {
	fmt.Fprintf(b, "    %s:\n", key)
	for _, sv := range ss {
		fmt.Fprintf(b, "      - {name: %s, address: %s", sv.Name, sv.Address)
		if sv.Weight >= 0 {
			fmt.Fprintf(b, ", weight: %d", sv.Weight)
		}
		if sv.CheckPort != 0 {
			fmt.Fprintf(b, ", check_port: %d", sv.CheckPort)
		}
		b.WriteString("}\n")
	}
}

// WriteConfig renders c to <Dir>/dsrlb.yaml (atomically: lbd may be
// reading it) and returns the path. The same file is what hostprep reads
// on the backends.
func (t *Topology) WriteConfig(c Config) (string, error) {
	var path string
	for _, lb := range t.Balancers {
		p := t.configFile(lb)
		tmp := p + ".tmp"
		if err := os.WriteFile(tmp, []byte(t.renderFor(lb, c)), 0o644); err != nil {
			return "", fmt.Errorf("write config: %w", err)
		}
		if err := os.Rename(tmp, p); err != nil {
			return "", fmt.Errorf("write config: %w", err)
		}
		if path == "" {
			path = p
		}
	}
	t.mu.Lock()
	t.config, t.cfg = path, c
	t.mu.Unlock()
	return path, nil
}

func (t *Topology) configFile(lb *Host) string {
	if lb == t.Balancer {
		return filepath.Join(t.Dir, "dsrlb.yaml")
	}
	return filepath.Join(t.Dir, "dsrlb-"+lb.Role+".yaml")
}

// ConfigPathFor is balancer lb's configuration file, "" before WriteConfig.
func (t *Topology) ConfigPathFor(lb *Host) string {
	if t.ConfigPath() == "" {
		return ""
	}
	return t.configFile(lb)
}

// ConfigPath is the path WriteConfig last wrote.
func (t *Topology) ConfigPath() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.config
}

// Hostprep runs the built hostprep in backend b's namespace with b's own
// --root (so persistence files never touch the host's /etc): the current
// configuration is copied to <root>/etc/dsrlb/dsrlb.yaml first.
func (t *Topology) Hostprep(ctx context.Context, b *Host, args ...string) (string, error) {
	cfg := t.ConfigPath()
	if cfg == "" {
		return "", fmt.Errorf("hostprep on %s: no configuration written yet (WriteConfig)", b.Role)
	}
	root := t.HostprepRoot(b)
	data, err := os.ReadFile(cfg)
	if err != nil {
		return "", fmt.Errorf("hostprep on %s: %w", b.Role, err)
	}
	if err := os.MkdirAll(filepath.Join(root, "etc/dsrlb"), 0o755); err != nil {
		return "", fmt.Errorf("hostprep on %s: %w", b.Role, err)
	}
	if err := os.WriteFile(filepath.Join(root, "etc/dsrlb/dsrlb.yaml"), data, 0o644); err != nil {
		return "", fmt.Errorf("hostprep on %s: %w", b.Role, err)
	}
	return b.NS.Run(ctx, t.Bins.Hostprep, append(args, "--root", root)...)
}

// HostprepRoot is backend b's --root directory.
func (t *Topology) HostprepRoot(b *Host) string { return filepath.Join(t.Dir, "root-"+b.Role) }

// PrepareBackends runs `hostprep apply` then `hostprep check` on each
// backend that is a server of the current configuration (except those
// listed in skip) and returns the apply outputs.
func (t *Topology) PrepareBackends(ctx context.Context, skip ...*Host) (map[string]string, error) {
	outs := map[string]string{}
	t.mu.Lock()
	cfg := t.cfg
	t.mu.Unlock()
	for _, b := range t.Backends {
		if slices.Contains(skip, b) || !cfg.lists(b) {
			continue
		}
		out, err := t.Hostprep(ctx, b, "apply")
		if err != nil {
			return outs, fmt.Errorf("%w\n%s", err, out)
		}
		outs[b.Role] = out
		if out, err := t.Hostprep(ctx, b, "check"); err != nil {
			return outs, fmt.Errorf("after apply: %w\n%s", err, out)
		}
	}
	return outs, nil
}

// WithholdHostprep does by hand only half of what hostprep does on b: the
// VIPs go on lo, but arp_ignore/arp_announce stay 0, so b answers ARP for
// them (the misconfiguration the ARP scenario must detect).
func (t *Topology) WithholdHostprep(b *Host, vips ...netip.Addr) error {
	for _, k := range []string{"all", "default", "lo", b.Link, b.Dev} {
		for _, p := range []string{"arp_ignore", "arp_announce"} {
			if err := b.NS.SetSysctl("net/ipv4/conf/"+k+"/"+p, "0"); err != nil {
				return err
			}
		}
	}
	lo := &Host{NS: b.NS, Dev: "lo"}
	for _, v := range vips {
		bits := 32
		if v.Is6() {
			bits = 128
		}
		if err := t.addAddr(lo, netip.PrefixFrom(v, bits)); err != nil {
			return err
		}
	}
	return nil
}
