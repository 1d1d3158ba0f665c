package importer

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// ALOHA's LB Layer4 configuration is a list of director sections: a
// "director" line at the start of a line, then indented keyword lines;
// '#' starts a comment (the GUI appends "#alctl: ..." labels).
//
//	director <name> [<ip>[:<port>]] [TCP|UDP]
//	   balance roundrobin|leastconn [...]|source|srcdst|dest|shortestexpected|neverqueue
//	   mode gateway|nat|tunnel
//	   check [timeout <s>] [interval <s>] [source <ip>] [port <port>]
//	   option persistence [...] | httpcheck [uri U] [statuscode N] [vhost V] | tcpcheck | arpcheck [...] | icmpcheck
//	   server <name> [<ip>[:<port>]] [weight <n>] [check] [sorry]
//
// Port 0 (or none) on a director means every port. In gateway mode a
// server's port only names the port its check connects to.

// AlohaFlags supply what an ALOHA file may not say: the VIPs and server
// addresses (the GUI's short form names neither).
type AlohaFlags struct {
	VIPs    map[string]string // director name ("" for every director without one) -> ADDR[:PORT]
	Servers map[string]string // server name or DIRECTOR/NAME -> ADDR[:PORT]
}

// FlagError is a --vip or --server flag that names nothing in the file.
type FlagError struct{ Msg string }

func (e *FlagError) Error() string { return e.Msg }

// ParseAloha reads ALOHA LB Layer4 director sections into a Model.
func ParseAloha(name string, data []byte, flags AlohaFlags) (*Model, error) {
	a := &alohaParser{m: &Model{Tool: "aloha", File: name}, usedVIP: map[string]bool{}, usedSrv: map[string]bool{}, flags: flags}
	for i, line := range strings.Split(string(data), "\n") {
		at := Pos{File: name, Line: i + 1}
		text, _, _ := strings.Cut(strings.TrimSuffix(line, "\r"), "#")
		words := strings.Fields(text)
		if len(words) == 0 {
			continue
		}
		indented := text[0] == ' ' || text[0] == '\t'
		a.line(at, words, indented)
	}
	a.finish()
	if err := a.unusedFlags(); err != nil {
		return nil, err
	}
	return a.m, nil
}

type alohaParser struct {
	m       *Model
	cur     *Service
	check   *Check // the director's check settings and option
	flags   AlohaFlags
	usedVIP map[string]bool
	usedSrv map[string]bool
}

func (a *alohaParser) line(at Pos, words []string, indented bool) {
	what := strings.Join(words, " ")
	if words[0] == "director" {
		a.finish()
		a.director(at, words)
		return
	}
	if a.cur == nil {
		a.m.Notes.add(at, what, "not carried: outside a director section")
		return
	}
	if !indented {
		a.cur.Extra.add(at, what, "not carried: not indented, so not part of director %s (indent the lines of a section)", a.cur.Name)
		return
	}
	switch words[0] {
	case "balance":
		a.cur.Sched = Value{Text: strings.Join(words[1:], " "), What: what, At: at}
	case "mode":
		a.cur.Fwd = alohaMode(at, what, arg1(words))
	case "check":
		a.checkLine(at, what, words[1:])
	case "option":
		a.option(at, what, words[1:])
	case "server":
		a.server(at, what, words[1:])
	default:
		a.cur.Extra.add(at, what, "not carried: not a director keyword")
	}
}

func arg1(words []string) string {
	if len(words) > 1 {
		return words[1]
	}
	return ""
}

func (a *alohaParser) director(at Pos, words []string) {
	a.cur = &Service{At: at, Name: arg1(words), Protocol: "tcp", ProtoAt: at}
	a.check = &Check{At: at, Kind: CheckTCP, Keyword: "check"}
	for _, w := range words[min(2, len(words)):] {
		switch strings.ToUpper(w) {
		case "TCP", "UDP":
			a.cur.Protocol = strings.ToLower(w)
		default:
			a.address(a.cur, at, w)
		}
	}
	if v, ok := a.flagVIP(a.cur.Name); ok {
		a.cur.VIP, a.cur.VIPText, a.cur.Ports = netip.Addr{}, "", nil
		a.address(a.cur, Pos{File: "--vip", Line: 0}, v)
	}
}

func (a *alohaParser) flagVIP(director string) (string, bool) {
	if v, ok := a.flags.VIPs[director]; ok {
		a.usedVIP[director] = true
		return v, true
	}
	if v, ok := a.flags.VIPs[""]; ok && !a.cur.VIP.IsValid() {
		a.usedVIP[""] = true
		return v, true
	}
	return "", false
}

// address reads a director's ADDR[:PORT]; port 0 is every port.
func (a *alohaParser) address(s *Service, at Pos, text string) {
	addr, port, ok := splitAddrPort(text)
	if !ok {
		s.Extra.add(at, text, "not carried: not an address such as 192.0.2.10:443 or TCP/UDP")
		return
	}
	s.VIP = addr
	if port != 0 {
		s.Ports = []uint16{port}
	}
}

// splitAddrPort reads ADDR, ADDR:PORT, [V6]:PORT or a bare IPv6 address.
func splitAddrPort(text string) (netip.Addr, uint16, bool) {
	if ap, err := netip.ParseAddrPort(text); err == nil {
		return ap.Addr().Unmap(), ap.Port(), true
	}
	if a, err := netip.ParseAddr(strings.Trim(text, "[]")); err == nil {
		return a.Unmap(), 0, true
	}
	return netip.Addr{}, 0, false
}

func alohaMode(at Pos, what, mode string) Value {
	v := Value{What: what, At: at}
	switch mode {
	case "gateway":
		v.Text = FwdDR
	case "tunnel":
		v.Text = FwdTunnel
	default:
		v.Text = FwdNAT
	}
	return v
}

func (a *alohaParser) checkLine(at Pos, what string, words []string) {
	a.check.At = at
	for i := 0; i < len(words); i++ {
		key, val := words[i], ""
		if i+1 < len(words) {
			val = words[i+1]
			i++
		}
		switch key {
		case "interval", "timeout":
			n, err := strconv.ParseFloat(val, 64)
			if err != nil || n <= 0 || n > 86400 {
				a.cur.Extra.add(at, key+" "+val, "not carried: not a time in seconds")
				continue
			}
			d := Duration{D: time.Duration(n * float64(time.Second)).Round(time.Millisecond), At: at}
			if key == "interval" {
				a.check.Interval = d
			} else {
				a.check.Timeout = d
			}
		case "port":
			p, err := strconv.ParseUint(val, 10, 16)
			if err != nil || p == 0 {
				a.cur.Extra.add(at, "port "+val, "not carried: not a port 1-65535")
				continue
			}
			a.check.Port, a.check.PortAt = uint16(p), at
		default:
			a.check.Extra.add(at, strings.TrimSpace(key+" "+val), "not carried: dsrlb checks from the balancer's own address")
		}
	}
}

func (a *alohaParser) option(at Pos, what string, words []string) {
	if strings.HasSuffix(arg0(words), "check") {
		a.check.At = at // notes about the check point at the line naming its kind
	}
	switch arg0(words) {
	case "tcpcheck":
		a.check.Kind, a.check.Keyword = CheckTCP, what
	case "httpcheck":
		a.check.Kind, a.check.Keyword, a.check.Path = CheckHTTP, what, "/"
		for i := 1; i+1 < len(words); i += 2 {
			switch words[i] {
			case "uri":
				a.check.Path = words[i+1]
			case "statuscode":
				if n, err := strconv.Atoi(words[i+1]); err == nil {
					a.check.Status = &n
				} else {
					a.check.Extra.add(at, "statuscode "+words[i+1], "not carried: not a status code; 200 is expected")
				}
			case "vhost":
				a.check.Host = words[i+1] // sent as the Host header
			default:
				a.check.Extra.add(at, words[i]+" "+words[i+1], "not carried: dsrlb's http check compares the status (and, with expect_body, the body) only")
			}
		}
	case "arpcheck":
		a.check.Kind, a.check.Keyword = CheckARP, what
	case "icmpcheck":
		a.check.Kind, a.check.Keyword = CheckICMP, what
	case "persistence":
		a.cur.Persist = Value{Text: "persistent", What: what, At: at}
	default:
		a.cur.Extra.add(at, what, "not carried: unknown option")
	}
}

func arg0(words []string) string {
	if len(words) > 0 {
		return words[0]
	}
	return ""
}

func (a *alohaParser) server(at Pos, what string, words []string) {
	if len(words) == 0 {
		a.cur.Extra.add(at, what, "not carried: a server needs a name")
		return
	}
	srv := Server{At: at, Name: words[0]}
	checked, sorry := false, false
	for i := 1; i < len(words); i++ {
		switch w := words[i]; w {
		case "weight":
			if i+1 < len(words) {
				i++
			}
			if n, err := strconv.Atoi(words[i]); err == nil {
				srv.Weight, srv.WeightAt = &n, at
			} else {
				a.cur.Extra.add(at, "weight "+words[i], "not carried: not a weight")
			}
		case "check":
			checked = true
		case "sorry", "backup": // ALOHA's word, HAProxy's
			sorry = true
		default:
			a.serverAddr(&srv, at, w)
		}
	}
	if v, ok := a.flagServer(srv.Name); ok {
		srv.Addr, srv.AddrText, srv.Port = netip.Addr{}, "", 0
		a.serverAddr(&srv, Pos{File: "--server"}, v)
	}
	if checked {
		srv.Check = a.check
	}
	if sorry {
		a.cur.Sorry = append(a.cur.Sorry, srv)
		return
	}
	a.cur.Servers = append(a.cur.Servers, srv)
}

func (a *alohaParser) serverAddr(srv *Server, at Pos, text string) {
	addr, port, ok := splitAddrPort(text)
	if !ok { // a host name: Map reports it
		srv.AddrText = text
		return
	}
	srv.Addr, srv.Port, srv.PortAt = addr, port, at
}

func (a *alohaParser) flagServer(name string) (string, bool) {
	for _, key := range []string{a.cur.Name + "/" + name, name} {
		if v, ok := a.flags.Servers[key]; ok {
			a.usedSrv[key] = true
			return v, true
		}
	}
	return "", false
}

// finish closes the current director: the check port defaults to the
// servers' port (ALOHA checks the server's port), which in gateway mode is
// not a forwarding port.
func (a *alohaParser) finish() {
	s := a.cur
	if s == nil {
		return
	}
	a.cur = nil
	ports := map[uint16]bool{}
	var port uint16
	var portAt Pos
	for i := range s.Servers {
		srv := &s.Servers[i]
		if srv.Check != nil && srv.Port != 0 {
			ports[srv.Port] = true
			port, portAt = srv.Port, srv.PortAt
		}
		srv.Port = 0
	}
	switch {
	case a.check.Port != 0:
	case len(ports) == 1:
		a.check.Port, a.check.PortAt = port, portAt
	case len(ports) > 1:
		s.Extra.add(s.At, "director "+s.Name, "its servers are checked on different ports; dsrlb checks one port per service: set check port")
	}
	a.m.Services = append(a.m.Services, *s)
}

func (a *alohaParser) unusedFlags() error {
	for k := range a.flags.VIPs {
		if !a.usedVIP[k] && k != "" {
			return &FlagError{Msg: fmt.Sprintf("--vip %s=...: no director %q in the file", k, k)}
		}
	}
	for k := range a.flags.Servers {
		if !a.usedSrv[k] {
			return &FlagError{Msg: fmt.Sprintf("--server %s=...: no server %q in the file", k, k)}
		}
	}
	return nil
}
