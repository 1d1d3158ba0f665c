package importer

import (
	"encoding/hex"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// keepalived's documented defaults (keepalived.conf(5)), used where the
// file is silent because they are what keepalived does.
const (
	kaDelayLoop      = 60 * time.Second
	kaConnectTimeout = 5 * time.Second
	kaRetry          = 1 // DNS_CHECK 3, MISC_CHECK 0
	kaMaxRange       = 256
)

// ParseKeepalived reads a keepalived.conf (name "-" for standard input,
// includes then relative to the current directory) into a Model.
func ParseKeepalived(name string, data []byte, fsys FS) (*Model, error) {
	r := &kaReader{fs: fsys}
	toks, err := r.lexFile(name, data, nil)
	if err != nil {
		return nil, fmt.Errorf("read keepalived configuration: %w", err)
	}
	tree, err := parseTree(toks)
	if err != nil {
		return nil, fmt.Errorf("read keepalived configuration: %w", err)
	}
	k := &kaModel{m: &Model{Tool: "keepalived", File: name, Notes: r.notes}, groups: map[string]*stmt{}}
	k.top(tree)
	return k.m, nil
}

type kaModel struct {
	m          *Model
	groups     map[string]*stmt
	interfaces []string
}

// kaTimers are the check settings a virtual or real server passes down to
// its checkers.
type kaTimers struct {
	delayLoop, connectTimeout Duration
	retry                     *int
	retryAt                   Pos
	delayBeforeRetry          Pos
	inhibit                   Value
}

func (k *kaModel) note(s *stmt, why string, args ...any) {
	k.m.Notes.add(s.At, s.text(), why, args...)
}

func (k *kaModel) top(tree []*stmt) {
	for _, s := range tree { // groups may be defined after their use
		if s.kw() == "virtual_server_group" && len(s.Words) >= 2 && s.Block != nil {
			k.groups[s.Words[1]] = s
		}
	}
	for _, s := range tree {
		switch kw := s.kw(); {
		case kw == "virtual_server":
			k.virtualServer(s)
		case kw == "virtual_server_group":
			if len(s.Words) < 2 || s.Block == nil {
				k.note(s, "not carried: a virtual_server_group needs a name and a block")
			}
		case kw == "vrrp_instance":
			k.vrrpInstance(s)
		case strings.HasPrefix(kw, "$") || strings.HasPrefix(kw, "@"):
			k.note(s, "not carried: parameter definitions and conditional lines are not expanded; expand them by hand and import again")
		case kw == "global_defs":
			k.globalDefs(s)
		case kw == "vrrp_script" || kw == "vrrp_sync_group" || kw == "track_file" || kw == "vrrp_track_process":
			k.note(s, "not carried: dsrlb runs no VRRP; keep keepalived for the VIPs (balancer.vip_owner: external, docs/scale-out.md)")
		default:
			k.note(s, "not carried: no dsrlb equivalent")
		}
	}
	if len(k.interfaces) == 1 {
		k.m.Interface = k.interfaces[0]
	}
}

// globalDefs carries lvs_timeouts (IPVS's idle timeouts, dsrlb's conntrack
// timeouts); the rest of the block is one note.
func (k *kaModel) globalDefs(s *stmt) {
	var rest []string
	for _, c := range s.Block {
		if c.kw() != "lvs_timeouts" {
			rest = append(rest, c.kw())
			continue
		}
		for i := 1; i+1 < len(c.Words); i += 2 {
			secs, err := strconv.ParseUint(c.Words[i+1], 10, 32)
			d := Duration{D: time.Duration(secs) * time.Second, At: c.At}
			switch {
			case err != nil:
				k.m.Notes.add(c.At, c.Words[i]+" "+c.Words[i+1], "not carried: not a time in seconds")
			case c.Words[i] == "tcp":
				k.m.TCPTimeout = d
			case c.Words[i] == "udp":
				k.m.UDPTimeout = d
			default:
				k.m.Notes.add(c.At, c.Words[i]+" "+c.Words[i+1], "not carried: dsrlb sees only client-to-server packets, so it has no separate FIN timeout")
			}
		}
	}
	if len(rest) > 0 {
		k.m.Notes.add(s.At, "global_defs "+strings.Join(rest, ", "), "not carried: global settings (notification, process, VRRP defaults) have no dsrlb equivalent")
	}
}

func (k *kaModel) vrrpInstance(s *stmt) {
	k.note(s, "not carried: dsrlb runs no VRRP; keep keepalived with its vrrp_instance for the VIPs and set balancer.vip_owner: external (docs/scale-out.md)")
	for _, c := range s.Block {
		if c.kw() == "interface" && len(c.Words) == 2 {
			if !contains(k.interfaces, c.Words[1]) {
				k.interfaces = append(k.interfaces, c.Words[1])
			}
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// virtualServer reads "virtual_server IP [PORT]", "virtual_server fwmark N"
// or "virtual_server group NAME" (one service per VIP of the group).
func (k *kaModel) virtualServer(s *stmt) {
	if s.Block == nil || len(s.Words) < 2 {
		k.note(s, "not carried: a virtual_server needs an address (or fwmark N, group NAME) and a block")
		return
	}
	switch s.Words[1] {
	case "fwmark":
		mark, _ := strconv.ParseUint(arg(s, 2), 0, 32)
		svc := k.body(s, Service{At: s.At, FWMark: uint32(max(mark, 1))})
		k.m.Services = append(k.m.Services, svc)
	case "group":
		k.group(s, arg(s, 2))
	default:
		svc := Service{At: s.At}
		svc.VIP, svc.VIPText = parseAddr(s.Words[1])
		if p, ok := k.port(s, arg(s, 2)); ok && p != 0 {
			svc.Ports = []uint16{p}
		}
		k.m.Services = append(k.m.Services, k.body(s, svc))
	}
}

func arg(s *stmt, i int) string {
	if i < len(s.Words) {
		return s.Words[i]
	}
	return ""
}

func parseAddr(text string) (netip.Addr, string) {
	a, err := netip.ParseAddr(text)
	if err != nil {
		return netip.Addr{}, text
	}
	return a.Unmap(), ""
}

func (k *kaModel) port(s *stmt, text string) (uint16, bool) {
	if text == "" {
		return 0, true
	}
	p, err := strconv.ParseUint(text, 10, 16)
	if err != nil {
		k.note(s, "not carried: %q is not a port (1-65535)", text)
		return 0, false
	}
	return uint16(p), true
}

// group expands a virtual_server_group: one service per VIP with the ports
// the group lists for it, each with the virtual_server's body.
func (k *kaModel) group(s *stmt, name string) {
	g := k.groups[name]
	if g == nil {
		k.note(s, "not carried: no virtual_server_group %q is defined", name)
		return
	}
	byVIP := map[netip.Addr]*Service{}
	var order []netip.Addr
	for _, e := range g.Block {
		if e.kw() == "fwmark" {
			mark, _ := strconv.ParseUint(arg(e, 1), 0, 32)
			k.m.Services = append(k.m.Services, k.body(s, Service{At: e.At, Name: name, FWMark: uint32(max(mark, 1))}))
			continue
		}
		addrs, ok := k.expandRange(e)
		p, pok := k.port(e, arg(e, 1))
		if !ok || !pok {
			continue
		}
		for _, a := range addrs {
			svc := byVIP[a]
			if svc == nil {
				svc = &Service{At: e.At, Name: name, VIP: a}
				byVIP[a] = svc
				order = append(order, a)
			}
			if p != 0 {
				svc.Ports = append(svc.Ports, p)
			}
		}
	}
	for _, a := range order {
		k.m.Services = append(k.m.Services, k.body(s, *byVIP[a]))
	}
}

// expandRange reads a group entry's address: A, A-LAST (last byte or
// group), A-B, or a prefix; bounded so a typo cannot make millions.
func (k *kaModel) expandRange(e *stmt) ([]netip.Addr, bool) {
	text := e.kw()
	if p, err := netip.ParsePrefix(text); err == nil {
		first, last := p.Masked().Addr(), lastOf(p.Masked())
		return k.rangeOf(e, first, last)
	}
	lo, hi, isRange := strings.Cut(text, "-")
	first, err := netip.ParseAddr(lo)
	if err != nil {
		k.note(e, "not carried: %q is not an address, range or prefix", text)
		return nil, false
	}
	if !isRange {
		return []netip.Addr{first.Unmap()}, true
	}
	last, err := netip.ParseAddr(hi)
	if err != nil { // "192.0.2.20-30": the last part replaces the address's last group
		sep := "."
		if first.Is6() {
			sep = ":"
		}
		i := strings.LastIndex(lo, sep)
		last, err = netip.ParseAddr(lo[:i+1] + hi)
		if err != nil {
			k.note(e, "not carried: %q is not an address range", text)
			return nil, false
		}
	}
	return k.rangeOf(e, first.Unmap(), last.Unmap())
}

func lastOf(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

func (k *kaModel) rangeOf(e *stmt, first, last netip.Addr) ([]netip.Addr, bool) {
	if last.Less(first) || first.Is4() != last.Is4() {
		k.note(e, "not carried: the range ends before it starts")
		return nil, false
	}
	var out []netip.Addr
	for a := first; ; a = a.Next() {
		if len(out) == kaMaxRange {
			k.note(e, "not carried: more than %d addresses; list the VIPs (one service each) explicitly", kaMaxRange)
			return nil, false
		}
		out = append(out, a)
		if a == last {
			return out, true
		}
	}
}

// body reads the settings and real servers of a virtual_server block.
func (k *kaModel) body(vs *stmt, svc Service) Service {
	svc.Protocol, svc.ProtoAt = "tcp", vs.At // keepalived's default
	svc.Fwd = Value{Text: FwdNAT, What: "no lb_kind (keepalived's default is NAT)", At: vs.At}
	t := kaTimers{}
	var servers []*stmt
	for _, c := range vs.Block {
		if k.timer(c, &t, &svc.Extra) {
			continue
		}
		switch c.kw() {
		case "real_server":
			servers = append(servers, c)
		case "lb_algo", "lvs_sched":
			svc.Sched = Value{Text: arg(c, 1), What: c.text(), At: c.At}
		case "lb_kind", "lvs_method":
			svc.Fwd = kaForwarding(c)
		case "protocol":
			svc.Protocol, svc.ProtoAt = strings.ToLower(arg(c, 1)), c.At
		case "persistence_timeout":
			svc.Persist = Value{Text: "persistent", What: c.text(), At: c.At}
		case "sorry_server":
			a, text := parseAddr(arg(c, 1))
			srv := Server{At: c.At, Addr: a, AddrText: text, Name: "sorry"}
			if p, ok := k.port(c, arg(c, 2)); ok {
				srv.Port, srv.PortAt = p, c.At
			}
			svc.Sorry = append(svc.Sorry, srv)
		case "alpha":
			// servers start down until a check passes: dsrlb does that for new servers.
		default:
			svc.Extra.add(c.At, c.text(), "not carried: no dsrlb equivalent")
		}
	}
	svc.Inhibit = t.inhibit
	for _, rs := range servers {
		if srv, ok := k.realServer(rs, &svc, t); ok {
			svc.Servers = append(svc.Servers, srv)
		}
	}
	return svc
}

func kaForwarding(c *stmt) Value {
	v := Value{What: c.text(), At: c.At}
	switch strings.ToUpper(arg(c, 1)) {
	case "DR":
		v.Text = FwdDR
	case "TUN":
		v.Text = FwdTunnel
	default:
		v.Text = FwdNAT
	}
	return v
}

// timer reads the check settings a virtual server, real server and checker
// share; it reports whether c was one.
func (k *kaModel) timer(c *stmt, t *kaTimers, extra *Notes) bool {
	switch c.kw() {
	case "delay_loop":
		t.delayLoop = k.seconds(c, extra)
	case "connect_timeout":
		t.connectTimeout = k.seconds(c, extra)
	case "retry", "nb_get_retry":
		n, err := strconv.Atoi(arg(c, 1))
		if err != nil || n < 0 {
			extra.add(c.At, c.text(), "not carried: %q is not a count", arg(c, 1))
			return true
		}
		t.retry, t.retryAt = &n, c.At
	case "delay_before_retry":
		t.delayBeforeRetry = c.At
		extra.add(c.At, c.text(), "not carried: dsrlb retries a failed check at the check interval, not sooner")
	case "inhibit_on_failure":
		if b := arg(c, 1); b == "" || b == "on" || b == "true" || b == "yes" {
			t.inhibit = Value{Text: "drain", What: c.text(), At: c.At}
		} else {
			t.inhibit = Value{}
		}
	case "warmup", "log_all_failures":
		// when checks start and what is logged: no effect on which servers take traffic.
	default:
		return false
	}
	return true
}

func (k *kaModel) seconds(c *stmt, extra *Notes) Duration {
	f, err := strconv.ParseFloat(arg(c, 1), 64)
	if err != nil || f <= 0 || f > 86400 {
		extra.add(c.At, c.text(), "not carried: %q is not a time in seconds", arg(c, 1))
		return Duration{}
	}
	return Duration{D: time.Duration(f * float64(time.Second)).Round(time.Millisecond), At: c.At}
}

func (k *kaModel) realServer(rs *stmt, svc *Service, t kaTimers) (Server, bool) {
	srv := Server{At: rs.At}
	if len(rs.Words) < 2 {
		svc.Extra.add(rs.At, rs.text(), "not carried: a real_server needs an address")
		return srv, false
	}
	srv.Addr, srv.AddrText = parseAddr(rs.Words[1])
	if p, ok := k.port(rs, arg(rs, 2)); ok {
		srv.Port, srv.PortAt = p, rs.At
	}
	t.inhibit = Value{} // the service's own is reported once, on the service
	var checkers []*stmt
	for _, c := range rs.Block {
		if k.timer(c, &t, &svc.Extra) {
			continue
		}
		switch kw := c.kw(); {
		case kw == "weight":
			if w, err := strconv.Atoi(arg(c, 1)); err == nil {
				srv.Weight, srv.WeightAt = &w, c.At
			} else {
				svc.Extra.add(c.At, c.text(), "not carried: %q is not a weight", arg(c, 1))
			}
		case kw == "lb_kind" || kw == "lvs_method":
			srv.Fwd = kaForwarding(c)
		case strings.HasSuffix(kw, "_CHECK") || kw == "HTTP_GET" || kw == "SSL_GET":
			checkers = append(checkers, c)
		case kw == "alpha":
		default:
			svc.Extra.add(c.At, c.text(), "not carried: no dsrlb equivalent")
		}
	}
	srv.Inhibit = t.inhibit
	for i, c := range checkers {
		if i > 0 {
			svc.Extra.add(c.At, c.kw(), "not carried: dsrlb runs one check per server; the first (%s) is used", checkers[0].At)
			continue
		}
		srv.Check = k.checker(c, srv, t, &svc.Extra)
	}
	return srv, true
}

var kaKinds = map[string]string{
	"TCP_CHECK": CheckTCP, "HTTP_GET": CheckHTTP, "SSL_GET": CheckHTTPS, "UDP_CHECK": CheckUDP,
	"DNS_CHECK": CheckDNS, "MISC_CHECK": CheckExec, "SMTP_CHECK": CheckSMTP, "PING_CHECK": CheckICMP,
	"BFD_CHECK": CheckBFD, "FILE_CHECK": CheckFile,
}

func (k *kaModel) checker(c *stmt, srv Server, t kaTimers, extra *Notes) *Check {
	kind, ok := kaKinds[c.kw()]
	if !ok {
		kind = strings.ToLower(strings.TrimSuffix(c.kw(), "_CHECK"))
	}
	ck := &Check{At: c.At, Kind: kind, Keyword: c.kw(), Port: srv.Port, PortAt: srv.PortAt}
	retry := kaRetry
	switch kind {
	case CheckDNS:
		retry = 3
	case CheckExec:
		retry = 0
	}
	var urls []*stmt
	for _, o := range c.Block {
		if k.timer(o, &t, &ck.Extra) {
			continue
		}
		switch o.kw() {
		case "connect_port":
			if p, ok := k.port(o, arg(o, 1)); ok {
				ck.Port, ck.PortAt = p, o.At
			}
		case "url":
			urls = append(urls, o)
		default:
			if !k.checkSetting(ck, o) {
				ck.Extra.add(o.At, o.text(), "not carried: dsrlb's %s check has no such setting", kind)
			}
		}
	}
	if t.retry != nil {
		retry = *t.retry
	}
	fall, rise := retry+1, 1 // down after the first failure and `retry` more; up after one success
	ck.Fall, ck.Rise = &fall, &rise
	ck.Interval = t.delayLoop
	if !ck.Timeout.set() { // misc_timeout, else connect_timeout
		ck.Timeout = t.connectTimeout
	}
	if !ck.Interval.set() {
		ck.Interval = Duration{D: kaDelayLoop, At: c.At}
	}
	if !ck.Timeout.set() {
		ck.Timeout = Duration{D: kaConnectTimeout, At: c.At}
	}
	if kind == CheckHTTP || kind == CheckHTTPS {
		k.urls(ck, urls)
	}
	return ck
}

// checkSetting takes the settings of SSL_GET/HTTP_GET, DNS_CHECK,
// UDP_CHECK and MISC_CHECK that dsrlb's check of that type carries.
func (k *kaModel) checkSetting(ck *Check, o *stmt) bool {
	switch kw := o.kw(); {
	case kw == "connect_ip":
		a, err := netip.ParseAddr(arg(o, 1))
		if err != nil {
			ck.Extra.add(o.At, o.text(), "not carried: %q is not an IP address", arg(o, 1))
		} else {
			ck.Addr = a.Unmap()
		}
	case kw == "virtualhost" && (ck.Kind == CheckHTTP || ck.Kind == CheckHTTPS):
		ck.Host = arg(o, 1)
	case kw == "enable_sni" && ck.Kind == CheckHTTPS:
		// dsrlb sends the host as SNI whenever there is one
	case kw == "name" && ck.Kind == CheckDNS:
		ck.Query = arg(o, 1)
	case kw == "type" && ck.Kind == CheckDNS:
		ck.QType = strings.ToUpper(arg(o, 1))
	case kw == "payload" && ck.Kind == CheckUDP:
		ck.Send = hexEscapes(ck, o, arg(o, 1))
	case kw == "require_reply" && ck.Kind == CheckUDP:
		ck.Reply = true
		if h := arg(o, 1); h != "" {
			ck.Expect = hexEscapes(ck, o, h)
		}
	case kw == "misc_path" && ck.Kind == CheckExec:
		ck.Command = strings.Fields(arg(o, 1))
	case kw == "misc_timeout" && ck.Kind == CheckExec:
		ck.Timeout = k.seconds(o, &ck.Extra) // applied after the timers; see checker
	case kw == "misc_dynamic" && ck.Kind == CheckExec:
		ck.Extra.add(o.At, o.text(), "not carried: dsrlb's exec check is up (exit 0) or down; an exit status does not set a weight")
	case kw == "user" && ck.Kind == CheckExec:
		ck.Extra.add(o.At, o.text(), "not carried: lbd runs check commands as itself (root, its capabilities, its sandbox): make the script safe for that")
	default:
		return false
	}
	return true
}

// hexEscapes turns keepalived's hex payload into dsrlb's text form:
// printable ASCII as is, the rest escaped (\n, \r, \t, \\, \xHH).
func hexEscapes(ck *Check, o *stmt, h string) string {
	b, err := hex.DecodeString(h)
	if err != nil {
		ck.Extra.add(o.At, o.text(), "not carried: %q is not hex digits in pairs", h)
		return ""
	}
	var sb strings.Builder
	for _, c := range b {
		switch {
		case c == '\n':
			sb.WriteString(`\n`)
		case c == '\r':
			sb.WriteString(`\r`)
		case c == '\t':
			sb.WriteString(`\t`)
		case c == '\\':
			sb.WriteString(`\\`)
		case c >= 0x20 && c < 0x7f:
			sb.WriteByte(c)
		default:
			fmt.Fprintf(&sb, `\x%02x`, c)
		}
	}
	return sb.String()
}

// urls takes the first url block of an HTTP_GET/SSL_GET: dsrlb checks one path.
func (k *kaModel) urls(ck *Check, urls []*stmt) {
	ck.Path = "/"
	if len(urls) == 0 {
		ck.Extra.add(ck.At, ck.Keyword, "names no url: dsrlb requests / instead")
		return
	}
	status := false
	for _, o := range urls[0].Block {
		switch o.kw() {
		case "path":
			ck.Path = arg(o, 1)
		case "status_code":
			n, err := strconv.Atoi(arg(o, 1))
			if err != nil || len(o.Words) != 2 {
				ck.Extra.add(o.At, o.text(), "not carried: dsrlb expects exactly one status code; 200 is expected")
				continue
			}
			ck.Status, status = &n, true
		default:
			ck.Extra.add(o.At, o.text(), "not carried: dsrlb's http check compares the status code only")
		}
	}
	if !status {
		ck.Extra.add(urls[0].At, "url without status_code", "keepalived accepts any 2xx status; dsrlb expects exactly 200")
	}
	for _, u := range urls[1:] {
		ck.Extra.add(u.At, "url", "not carried: dsrlb checks one path per server; the first url (%s) is used", urls[0].At)
	}
}
