package importer

import (
	"bytes"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/dsrlb/dsrlb/shared/config"
)

// The output mirrors shared/config's wire schema (whose types are private
// to keep the schema in one place): only the fields an import can fill.
type outFile struct {
	Balancer *outBalancer `yaml:"balancer,omitempty"`
	Services []outService `yaml:"services"`
}

type outBalancer struct {
	Interface string        `yaml:"interface,omitempty"`
	Conntrack *outConntrack `yaml:"conntrack,omitempty"`
}

type outConntrack struct {
	TCPTimeout string `yaml:"tcp_timeout,omitempty"`
	UDPTimeout string `yaml:"udp_timeout,omitempty"`
}

type outService struct {
	Name     string      `yaml:"name"`
	VIP      string      `yaml:"vip,omitempty"`
	Protocol string      `yaml:"protocol"`
	Ports    []int       `yaml:"ports,flow"`
	Balance  string      `yaml:"balance,omitempty"`
	Check    *outCheck   `yaml:"check,omitempty"`
	Servers  []outServer `yaml:"servers"`
	// fallback.go
	Fallback  []outServer `yaml:"fallback,omitempty"`
	OnFailure string      `yaml:"on_failure,omitempty"`
}

type outCheck struct {
	Type         string `yaml:"type"`
	Port         int    `yaml:"port,omitempty"`
	Interval     string `yaml:"interval,omitempty"`
	Timeout      string `yaml:"timeout,omitempty"`
	Rise         int    `yaml:"rise,omitempty"`
	Fall         int    `yaml:"fall,omitempty"`
	Path         string `yaml:"path,omitempty"`
	ExpectStatus int    `yaml:"expect_status,omitempty"`

	Host               string   `yaml:"host,omitempty"`
	InsecureSkipVerify bool     `yaml:"insecure_skip_verify,omitempty"`
	Send               *string  `yaml:"send,omitempty"`
	Expect             string   `yaml:"expect,omitempty"`
	Query              string   `yaml:"query,omitempty"`
	QueryType          string   `yaml:"query_type,omitempty"`
	Command            string   `yaml:"command,omitempty"`
	Args               []string `yaml:"args,omitempty"`
}

type outServer struct {
	Name         string `yaml:"name"`
	Address      string `yaml:"address,omitempty"`
	Weight       *int   `yaml:"weight,omitempty"`
	Check        *bool  `yaml:"check,omitempty"`
	CheckPort    int    `yaml:"check_port,omitempty"`
	CheckAddress string `yaml:"check_address,omitempty"`
}

// MarshalYAML writes a check on one line, as a person would.
func (c outCheck) MarshalYAML() (any, error) { type plain outCheck; return flow(plain(c)) }

// MarshalYAML writes a server on one line, as a person would.
func (s outServer) MarshalYAML() (any, error) { type plain outServer; return flow(plain(s)) }

func flow(v any) (any, error) {
	var n yaml.Node
	if err := n.Encode(v); err != nil {
		return nil, err
	}
	n.Style = yaml.FlowStyle
	return &n, nil
}

// Result is the outcome of one import.
type Result struct {
	YAML    []byte // the dsrlb configuration
	Notes   Notes  // what was not carried or is missing, in source order
	Invalid error  // non-nil: the YAML does not validate (config.Errors)
}

// schedulers maps a source scheduler onto dsrlb's balance; absent ones are
// reported. IPVS names (ipvsadm, keepalived) and ALOHA's share one table.
var schedulers = map[string]config.Balance{
	"rr":         config.RoundRobin,
	"wrr":        config.RoundRobin,
	"roundrobin": config.RoundRobin,
	"sh":         config.Source,
	"source":     config.Source,
	"mh":         config.Maglev,
}

// defaultSched is each tool's scheduler when the source names none.
var defaultSched = map[string]string{"keepalived": "wlc", "aloha": "leastconn", "ipvsadm": "wlc"}

// Map translates m into dsrlb terms: the one implementation of the mapping
// table in docs/migration.md. The output is validated with shared/config's
// parser, exactly as `lbd validate` would.
func Map(m *Model) *Result {
	mp := &mapper{m: m, names: map[string]int{}}
	out := outFile{}
	if m.Interface != "" || m.TCPTimeout.set() || m.UDPTimeout.set() {
		out.Balancer = &outBalancer{Interface: m.Interface}
	}
	if m.TCPTimeout.set() || m.UDPTimeout.set() {
		out.Balancer.Conntrack = &outConntrack{TCPTimeout: dur(m.TCPTimeout), UDPTimeout: dur(m.UDPTimeout)}
	}
	mp.notes = append(mp.notes, m.Notes...)
	for i := range m.Services {
		if s, ok := mp.service(&m.Services[i]); ok {
			out.Services = append(out.Services, s)
		}
	}
	if m.Interface == "" {
		mp.notes.add(Pos{File: mp.file()}, "balancer.interface", "the source names no interface for the VIPs: give --interface (lbd validate requires it)")
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(out); err != nil { // only plain strings and ints: cannot happen
		panic(fmt.Sprintf("marshal imported configuration: %v", err))
	}
	body := buf.Bytes()
	r := &Result{Notes: sortNotes(mp.notes)}
	r.YAML = append([]byte(fmt.Sprintf("# dsrlb configuration imported by `lbd import %s` from %s.\n# Check it with `lbd validate --config FILE` before use; see docs/migration.md.\n", m.Tool, mp.file())), body...)
	r.Invalid = Validate(r.YAML)
	return r
}

// Validate checks an imported configuration as `lbd validate` does.
func Validate(data []byte) error {
	cfg, err := config.Parse("output", data)
	if err == nil {
		err = cfg.RequireBalancer()
	}
	return err
}

type mapper struct {
	m     *Model
	notes Notes
	names map[string]int // service names used, for unique derived names
}

// file is the source's name, on one line (it goes into a YAML comment).
func (mp *mapper) file() string { return strings.NewReplacer("\n", " ", "\r", " ").Replace(mp.m.File) }

func (mp *mapper) service(s *Service) (outService, bool) {
	o := outService{}
	if s.FWMark != 0 {
		mp.notes.add(s.At, fmt.Sprintf("fwmark %d service", s.FWMark), "not carried: dsrlb matches a service by VIP, protocol and port, not by firewall mark; write one service per VIP the mark covers")
		return o, false
	}
	switch s.Protocol {
	case "tcp", "udp":
		o.Protocol = s.Protocol
	default:
		mp.notes.add(s.ProtoAt, "protocol "+s.Protocol, "not carried: dsrlb balances tcp and udp only; the service is left out")
		return o, false
	}
	o.Name = mp.unique(s.Name, serviceName(s))
	o.VIP = mp.vip(s)
	o.Ports = []int{}
	for _, p := range s.Ports {
		o.Ports = append(o.Ports, int(p))
	}
	o.Balance = mp.balance(s)
	mp.forwarding(s.Fwd)
	if s.Persist.set() {
		mp.notes.add(s.Persist.At, s.Persist.What, "not carried: dsrlb has no client persistence (conntrack keeps each flow on its server; balance: source keeps a client on one server)")
	}
	o.Servers, o.Check = mp.servers(s)
	o.OnFailure = mp.onFailure(s)    // fallback.go
	o.Fallback = mp.fallbacks(s, &o) // fallback.go
	mp.notes = append(mp.notes, s.Extra...)
	return o, true
}

// servers maps the real servers and merges their checks into the service's.
func (mp *mapper) servers(s *Service) ([]outServer, *outCheck) {
	names := map[string]int{}
	var out []outServer
	var checked []*Server
	for i := range s.Servers {
		srv := &s.Servers[i]
		out = append(out, outServer{Name: uniqueIn(names, srv.Name, serverName(srv)), Address: mp.serverAddr(srv), Weight: srv.Weight})
		if srv.Weight != nil && *srv.Weight > config.MaxWeight {
			mp.notes.add(srv.WeightAt, fmt.Sprintf("weight %d", *srv.Weight), "dsrlb weights are 0-%d: scale the weights of this service down keeping their ratios (the output does not validate as is)", config.MaxWeight)
		}
		if srv.Port != 0 && len(s.Ports) == 1 && srv.Port != s.Ports[0] {
			mp.notes.add(srv.PortAt, fmt.Sprintf("server port %d", srv.Port), "not carried: DSR does not rewrite ports, so the server gets the clients' port %d and must listen on it", s.Ports[0])
		}
		mp.forwarding(srv.Fwd)
		if srv.Check != nil {
			checked = append(checked, srv)
		}
	}
	check := mp.check(s, checked)
	if check.Type != string(config.CheckNone) {
		for i := range s.Servers {
			if s.Servers[i].Check == nil {
				out[i].Check = new(bool) // the source does not check it: always up
				continue
			}
			if srv := &s.Servers[i]; srv.Check.same(checked[0].Check) {
				mp.checkTarget(srv, &out[i], check)
			}
		}
	}
	return out, check
}

// checkTarget carries where a server's check connects when it is not
// where the service's check does: check_port, and check_address for
// keepalived's connect_ip: each server is checked where keepalived checks
// it (connect_port, else its real server port).
func (mp *mapper) checkTarget(srv *Server, out *outServer, check *outCheck) {
	if p := int(srv.Check.Port); p != 0 && p != check.Port {
		out.CheckPort = p
	}
	if a := srv.Check.Addr; a.IsValid() && a != srv.Addr {
		out.CheckAddress = a.String()
	}
}

func (mp *mapper) vip(s *Service) string {
	switch {
	case s.VIP.IsValid():
		return s.VIP.String()
	case s.VIPText != "":
		mp.notes.add(s.At, "virtual address "+s.VIPText, "not an IP address (a host name?): write the numeric address (ipvsadm-save -n)")
	case mp.m.Tool == "aloha":
		mp.notes.add(s.At, "director "+s.Name, "names no VIP: give --vip %s=ADDR (the output does not validate without it)", s.Name)
	default:
		mp.notes.add(s.At, "virtual service", "names no VIP (the output does not validate without it)")
	}
	return ""
}

func (mp *mapper) serverAddr(srv *Server) string {
	switch {
	case srv.Addr.IsValid():
		return srv.Addr.String()
	case srv.AddrText != "":
		mp.notes.add(srv.At, "server "+srv.AddrText, "not an IP address (a host name?): write the numeric address")
	case mp.m.Tool == "aloha":
		mp.notes.add(srv.At, "server "+srv.Name, "names no address: give --server %s=ADDR (the output does not validate without it)", srv.Name)
	default:
		mp.notes.add(srv.At, "server "+srv.Name, "names no address (the output does not validate without it)")
	}
	return ""
}

func (mp *mapper) balance(s *Service) string {
	if !s.Sched.set() {
		def := defaultSched[mp.m.Tool]
		mp.notes.add(s.At, "no scheduler", "%s's default is %s, which dsrlb does not have: maglev (dsrlb's default) is used; set balance: roundrobin or source if one fits better", mp.m.Tool, def)
		return ""
	}
	if b, ok := schedulers[strings.ToLower(s.Sched.Text)]; ok {
		return string(b)
	}
	mp.notes.add(s.Sched.At, s.Sched.What, "not carried: dsrlb schedules with maglev, roundrobin or source; maglev (the default) is used")
	return ""
}

func (mp *mapper) forwarding(v Value) {
	if !v.set() || v.Text == FwdDR {
		return
	}
	mp.notes.add(v.At, v.What, "not carried: dsrlb only does direct server return (it rewrites the MAC, never an address); each server must hold the VIP on lo (hostprep apply) and answer the client directly")
}

// check merges the servers' checks into the service's one check. Servers
// the source does not check get check: false; a service nobody checks gets
// type none, as the source: its servers are always up.
func (mp *mapper) check(s *Service, checked []*Server) *outCheck {
	if len(checked) == 0 {
		return &outCheck{Type: string(config.CheckNone)}
	}
	ref := checked[0].Check
	for _, srv := range checked[1:] {
		if srv.Check != ref && !srv.Check.same(ref) {
			mp.notes.add(srv.Check.At, srv.Check.Keyword+" of "+serverLabel(srv), "not carried: it differs from the check of %s (%s), and dsrlb runs one check per service; that one is used%s", serverLabel(checked[0]), ref.At, kindGap(srv.Check.Kind))
		}
	}
	c := &outCheck{Port: int(ref.Port)}
	switch ref.Kind {
	case CheckTCP:
		c.Type = string(config.CheckTCP)
	case CheckHTTP, CheckHTTPS:
		c.Type = ref.Kind
		if ref.Path != "/" {
			c.Path = ref.Path
		}
		if ref.Status != nil && *ref.Status != config.DefaultExpectStatus {
			c.ExpectStatus = *ref.Status
		}
		c.Host = ref.Host
		if ref.Kind == CheckHTTPS {
			// keepalived's SSL_GET does not verify the certificate: neither
			// does the import, so no server goes down for it.
			c.InsecureSkipVerify = true
			mp.notes.add(ref.At, ref.Keyword, "the certificate is not verified, as %s does not: to verify it, give its CA as check.ca_file and remove insecure_skip_verify", mp.m.Tool)
		}
	case CheckUDP:
		c.Type = string(config.CheckUDP)
		mp.udpCheck(ref, c)
	case CheckDNS:
		c.Type, c.Query, c.QueryType = string(config.CheckDNS), ref.Query, ref.QType
		if s.Protocol != "udp" {
			mp.notes.add(ref.At, ref.Keyword, "asked over TCP: dsrlb's dns check speaks the service's protocol (%s asks over UDP)", mp.m.Tool)
		}
	case CheckExec:
		c.Type = string(config.CheckExec)
		if len(ref.Command) == 0 {
			mp.notes.add(ref.At, ref.Keyword, "names no misc_path: give check.command (the output does not validate without it)")
		} else {
			c.Command, c.Args = ref.Command[0], ref.Command[1:]
			mp.notes.add(ref.At, ref.Keyword, "%s runs as lbd does (root, no shell, in lbd.service's sandbox: the file system read-only but /var/lib/dsrlb, a private /tmp); it also gets DSRLB_ADDRESS, DSRLB_PORT and more in its environment (docs/checks.md)", c.Command)
		}
	case CheckSMTP:
		mp.notes.add(ref.At, ref.Keyword, "not carried: dsrlb has no smtp check; checked with a TCP connect to the same port instead")
		c.Type = string(config.CheckTCP)
	default: // its settings go with it: one note
		mp.notes.add(ref.At, ref.Keyword, "not carried: dsrlb has no %s check; the servers are not checked", ref.Kind)
		return &outCheck{Type: string(config.CheckNone)}
	}
	mp.notes = append(mp.notes, ref.Extra...)
	if ref.Port == 0 && len(s.Ports) == 0 {
		mp.notes.add(ref.At, ref.Keyword, "names no port and the service takes every port: give the port to check (check.port; for ALOHA --server NAME=ADDR:PORT); the output does not validate without it")
	}
	c.Interval, c.Timeout = dur(ref.Interval), dur(ref.Timeout)
	if ref.Interval.set() && ref.Timeout.set() && ref.Timeout.D >= ref.Interval.D {
		// keepalived lets a check take its whole delay_loop; dsrlb's checks
		// must end before the next one starts.
		t := Duration{D: ref.Interval.D - ref.Interval.D/5, At: ref.Timeout.At}
		c.Timeout = dur(t)
		mp.notes.add(ref.Timeout.At, "timeout "+dur(ref.Timeout), "a check must take less than its interval %s in dsrlb: timeout %s is used", dur(ref.Interval), c.Timeout)
	}
	if ref.Fall != nil {
		c.Fall = *ref.Fall
	}
	if ref.Rise != nil {
		c.Rise = *ref.Rise
	}
	return c
}

// kindGap says what dsrlb lacks for a check kind, for notes about checks
// that are dropped for another reason.
func kindGap(kind string) string {
	switch kind {
	case CheckTCP, CheckHTTP, CheckHTTPS, CheckUDP, CheckDNS, CheckExec:
		return ""
	}
	return " (dsrlb has no " + kind + " check)"
}

// udpCheck carries a UDP_CHECK's payload and expected reply.
func (mp *mapper) udpCheck(ref *Check, c *outCheck) {
	if ref.Send == "" {
		mp.notes.add(ref.At, ref.Keyword, "names no payload: give check.send, a datagram the service answers (the output does not validate without it)")
	} else {
		send := ref.Send
		c.Send = &send
	}
	c.Expect = ref.Expect
	if ref.Expect != "" {
		mp.notes.add(ref.At, "require_reply", "dsrlb looks for the reply's bytes anywhere in the answer, not only at its start")
	}
	if !ref.Reply {
		mp.notes.add(ref.At, ref.Keyword, "without require_reply, %s only fails on ICMP port unreachable; dsrlb also fails when no answer comes within the timeout: make sure the service answers check.send", mp.m.Tool)
	}
}

func dur(d Duration) string {
	if !d.set() {
		return ""
	}
	if d.D%time.Second == 0 {
		return strconv.FormatInt(int64(d.D/time.Second), 10) + "s"
	}
	return strconv.FormatInt(d.D.Milliseconds(), 10) + "ms"
}

var badName = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// serviceName derives a name from the VIP and port when the source has none.
func serviceName(s *Service) string {
	base := "service"
	switch {
	case s.VIP.IsValid():
		base = s.VIP.String()
	case s.FWMark != 0:
		base = fmt.Sprintf("fwmark%d", s.FWMark)
	}
	if len(s.Ports) > 0 {
		base += "-" + strconv.Itoa(int(s.Ports[0]))
	}
	if s.Protocol == "udp" {
		base += "-udp"
	}
	return base
}

func serverName(srv *Server) string {
	if srv.Addr.IsValid() {
		return srv.Addr.String()
	}
	return "server"
}

func serverLabel(srv *Server) string {
	if srv.Name != "" {
		return srv.Name
	}
	if srv.Addr.IsValid() {
		return srv.Addr.String()
	}
	return srv.AddrText
}

func (mp *mapper) unique(name, derived string) string { return uniqueIn(mp.names, name, derived) }

// uniqueIn makes a schema-valid name (1-32 of [A-Za-z0-9._-]) that is not
// yet in used: the source's own name when it has one, else derived.
func uniqueIn(used map[string]int, name, derived string) string {
	if name == "" {
		name = derived
	}
	name = strings.Trim(badName.ReplaceAllString(name, "-"), "-._")
	if name == "" {
		name = "x"
	}
	if len(name) > 32 {
		name = name[:32]
	}
	base := name
	for used[name] > 0 {
		used[base]++
		suffix := "-" + strconv.Itoa(used[base])
		name = base[:min(len(base), 32-len(suffix))] + suffix
	}
	used[name]++
	return name
}
