package importer

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// ipvsadm-save -n prints one ipvsadm command per line, without the
// program name (ipvsadm(8)):
//
//	-A -t|-u|--sctp-service VIP:PORT | -f MARK  -s SCHED [-p [TIMEOUT]] [-M NETMASK] [-b FLAGS]
//	-a -t|-u|--sctp-service VIP:PORT | -f MARK  -r SERVER[:PORT] -g|-i|-m [-w WEIGHT] [-x UPPER] [-y LOWER]
//
// IPv6 addresses are bracketed ([2001:db8::10]:80). A line may start with
// "ipvsadm", as in a script of such commands; '#' starts a comment.

type ipvsKey struct {
	proto string
	addr  string // VIP:PORT or the mark
}

// ParseIpvsadm reads the output of ipvsadm-save -n into a Model.
func ParseIpvsadm(name string, data []byte) (*Model, error) {
	p := &ipvsParser{m: &Model{Tool: "ipvsadm", File: name}, index: map[ipvsKey]int{}}
	for i, line := range strings.Split(string(data), "\n") {
		text, _, _ := strings.Cut(strings.TrimSuffix(line, "\r"), "#")
		words := strings.Fields(text)
		if len(words) > 0 && words[0] == "ipvsadm" {
			words = words[1:]
		}
		if len(words) == 0 {
			continue
		}
		if words[0] == "--set" {
			p.timeouts(Pos{File: name, Line: i + 1}, words)
			continue
		}
		p.line(Pos{File: name, Line: i + 1}, words)
	}
	return p.m, nil
}

type ipvsParser struct {
	m     *Model
	index map[ipvsKey]int // service -> index in m.Services
}

// ipvsLine is one command's options.
type ipvsLine struct {
	at      Pos
	cmd     string
	key     ipvsKey
	keyText string
	opts    map[string]string // normalised flag -> argument
	order   []string
}

func (p *ipvsParser) line(at Pos, words []string) {
	l := &ipvsLine{at: at, opts: map[string]string{}}
	for i := 0; i < len(words); i++ {
		flag, ok := ipvsFlags[words[i]]
		if !ok {
			p.m.Notes.add(at, words[i], "not carried: not an ipvsadm-save option; the rest of the line is ignored")
			return
		}
		val := ""
		switch {
		case flag.arg == argRequired && i+1 < len(words):
			i++
			val = words[i]
		case flag.arg == argRequired:
			p.m.Notes.add(at, words[i], "not carried: the option needs a value")
			return
		case flag.arg == argOptional && i+1 < len(words) && !strings.HasPrefix(words[i+1], "-"):
			i++
			val = words[i]
		}
		p.option(l, flag.name, val)
	}
	switch l.cmd {
	case "A":
		p.service(l)
	case "a":
		p.server(l)
	default:
		p.m.Notes.add(at, strings.Join(words, " "), "not carried: only -A (add service) and -a (add server) lines are imported")
	}
}

func (p *ipvsParser) option(l *ipvsLine, name, val string) {
	switch name {
	case "A", "a", "E", "e", "D", "d", "C":
		l.cmd = name
	case "t", "u", "sctp", "f":
		l.key, l.keyText = ipvsKey{proto: name, addr: val}, val
	}
	l.opts[name] = val
	l.order = append(l.order, name)
}

const (
	argNone = iota
	argRequired
	argOptional
)

type ipvsFlag struct {
	name string
	arg  int
}

var ipvsFlags = map[string]ipvsFlag{}

func init() {
	for _, f := range []struct {
		short, long, name string
		arg               int
	}{
		{"-A", "--add-service", "A", argNone}, {"-E", "--edit-service", "E", argNone},
		{"-D", "--delete-service", "D", argNone}, {"-C", "--clear", "C", argNone},
		{"-a", "--add-server", "a", argNone}, {"-e", "--edit-server", "e", argNone},
		{"-d", "--delete-server", "d", argNone},
		{"-t", "--tcp-service", "t", argRequired}, {"-u", "--udp-service", "u", argRequired},
		{"", "--sctp-service", "sctp", argRequired}, {"-f", "--fwmark-service", "f", argRequired},
		{"-s", "--scheduler", "s", argRequired}, {"-p", "--persistent", "p", argOptional},
		{"-M", "--netmask", "M", argRequired}, {"-b", "--sched-flags", "b", argRequired},
		{"", "--pe", "pe", argRequired},
		{"-r", "--real-server", "r", argRequired}, {"-w", "--weight", "w", argRequired},
		{"-g", "--gatewaying", "g", argNone}, {"-i", "--ipip", "i", argNone},
		{"-m", "--masquerading", "m", argNone},
		{"-x", "--u-threshold", "x", argRequired}, {"-y", "--l-threshold", "y", argRequired},
		{"", "--tun-type", "tun-type", argRequired}, {"", "--tun-port", "tun-port", argRequired},
		{"", "--tun-nocsum", "tun-nocsum", argNone}, {"", "--tun-csum", "tun-csum", argNone},
		{"", "--tun-remcsum", "tun-remcsum", argNone},
		{"-n", "--numeric", "n", argNone},
	} {
		if f.short != "" {
			ipvsFlags[f.short] = ipvsFlag{f.name, f.arg}
		}
		ipvsFlags[f.long] = ipvsFlag{f.name, f.arg}
	}
}

var ipvsProto = map[string]string{"t": "tcp", "u": "udp", "sctp": "sctp", "f": "tcp"}

func (p *ipvsParser) service(l *ipvsLine) {
	if l.key.proto == "" {
		p.m.Notes.add(l.at, "-A", "not carried: no -t, -u, --sctp-service or -f names the service")
		return
	}
	if _, dup := p.index[l.key]; dup {
		p.m.Notes.add(l.at, "-A "+l.keyText, "not carried: the service was already added")
		return
	}
	s := Service{At: l.at, Protocol: ipvsProto[l.key.proto], ProtoAt: l.at}
	if l.key.proto == "f" {
		mark, err := strconv.ParseUint(l.keyText, 0, 32)
		s.FWMark = uint32(max(mark, 1))
		if err != nil {
			s.FWMark = 1
		}
	} else {
		addr, text, port := hostPort(l.keyText)
		s.VIP, s.VIPText = addr, text
		if port != 0 {
			s.Ports = []uint16{port}
		}
	}
	for _, name := range l.order {
		v := l.opts[name]
		what := "-" + name + " " + v
		switch name {
		case "s":
			s.Sched = Value{Text: v, What: what, At: l.at}
		case "p":
			s.Persist = Value{Text: "persistent", What: strings.TrimSpace(what), At: l.at}
		case "A", "t", "u", "sctp", "f", "n":
		default:
			s.Extra.add(l.at, strings.TrimSpace(what), "not carried: no dsrlb equivalent")
		}
	}
	if _, ok := l.opts["s"]; !ok {
		s.Sched = Value{Text: "wlc", What: "no -s (ipvsadm's default is wlc)", At: l.at}
	}
	p.index[l.key] = len(p.m.Services)
	p.m.Services = append(p.m.Services, s)
}

// hostPort splits VIP:PORT ([V6]:PORT); a name (no -n) is kept as text.
func hostPort(text string) (netip.Addr, string, uint16) {
	if ap, err := netip.ParseAddrPort(text); err == nil {
		return ap.Addr().Unmap(), "", ap.Port()
	}
	if a, err := netip.ParseAddr(text); err == nil {
		return a.Unmap(), "", 0
	}
	return netip.Addr{}, text, 0
}

// timeouts reads "--set TCP TCPFIN UDP" (seconds, 0 = unchanged): IPVS's
// idle timeouts are dsrlb's conntrack timeouts.
func (p *ipvsParser) timeouts(at Pos, words []string) {
	what := strings.Join(words, " ")
	if len(words) != 4 {
		p.m.Notes.add(at, what, "not carried: --set takes three timeouts: tcp tcpfin udp")
		return
	}
	var secs [3]uint64
	for i := range secs {
		n, err := strconv.ParseUint(words[i+1], 10, 32)
		if err != nil {
			p.m.Notes.add(at, what, "not carried: %q is not a time in seconds", words[i+1])
			return
		}
		secs[i] = n
	}
	if secs[0] != 0 {
		p.m.TCPTimeout = Duration{D: time.Duration(secs[0]) * time.Second, At: at}
	}
	if secs[1] != 0 {
		p.m.Notes.add(at, "tcpfin "+words[2], "not carried: dsrlb sees only client-to-server packets, so it has no separate FIN timeout")
	}
	if secs[2] != 0 {
		p.m.UDPTimeout = Duration{D: time.Duration(secs[2]) * time.Second, At: at}
	}
}

func (p *ipvsParser) server(l *ipvsLine) {
	i, ok := p.index[l.key]
	if !ok {
		p.m.Notes.add(l.at, "-a "+l.keyText, "not carried: no -A line adds this service before it")
		return
	}
	s := &p.m.Services[i]
	rtext, ok := l.opts["r"]
	if !ok {
		s.Extra.add(l.at, "-a", "not carried: no -r names the server")
		return
	}
	srv := Server{At: l.at, PortAt: l.at, Fwd: Value{Text: FwdDR, What: "-g", At: l.at}}
	srv.Addr, srv.AddrText, srv.Port = hostPort(rtext)
	if s.FWMark != 0 || len(s.Ports) == 0 {
		srv.Port = 0 // every port: the server gets the client's
	}
	for _, name := range l.order {
		v := l.opts[name]
		switch name {
		case "w":
			w, err := strconv.Atoi(v)
			if err != nil {
				s.Extra.add(l.at, "-w "+v, "not carried: not a weight")
				continue
			}
			srv.Weight, srv.WeightAt = &w, l.at
		case "g":
			srv.Fwd = Value{Text: FwdDR, What: "-g", At: l.at}
		case "m":
			srv.Fwd = Value{Text: FwdNAT, What: fmt.Sprintf("-m (NAT) for %s", rtext), At: l.at}
		case "i":
			srv.Fwd = Value{Text: FwdTunnel, What: fmt.Sprintf("-i (tunnel) for %s", rtext), At: l.at}
		case "a", "t", "u", "sctp", "f", "r", "n":
		default:
			s.Extra.add(l.at, strings.TrimSpace("-"+name+" "+v), "not carried: no dsrlb equivalent")
		}
	}
	s.Servers = append(s.Servers, srv)
}
