package health

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"

	"github.com/miekg/dns"

	"github.com/dsrlb/dsrlb/shared/config"
)

// dnsProber asks one question and succeeds when the answer carries the
// expected rcode. It speaks the service's protocol: UDP for a udp service
// (a connected socket: an ICMP port unreachable is down at once), TCP for a
// tcp one, the connection then coming from dialerFor like every TCP-based
// check's.
type dnsProber struct {
	addr   string
	net    string // udp or tcp
	name   string
	qtype  uint16
	rcode  int
	dial   dialFunc
	what   string // "SOA ." for messages
	client *dns.Client
}

func newDNSProber(t Target) prober {
	c := t.Check
	qtype, ok := dns.StringToType[c.QueryType]
	if !ok {
		return failing{fmt.Errorf("dns check of %s: unknown query type %q", t.Addr, c.QueryType)}
	}
	rcode, ok := dns.StringToRcode[c.ExpectRcode]
	if !ok {
		return failing{fmt.Errorf("dns check of %s: unknown rcode %q", t.Addr, c.ExpectRcode)}
	}
	network := c.DNSNet
	if network == "" {
		network = string(config.UDP)
	}
	return dnsProber{
		addr: t.Addr.String(), net: network, name: dns.Fqdn(c.Query), qtype: qtype, rcode: rcode,
		dial: dialerFor(t), what: c.QueryType + " " + dns.Fqdn(c.Query),
		client: &dns.Client{Net: network, UDPSize: dns.DefaultMsgSize},
	}
}

func (p dnsProber) probe(ctx context.Context) error {
	m := new(dns.Msg)
	m.SetQuestion(p.name, p.qtype)
	var (
		r   *dns.Msg
		err error
	)
	if p.net == string(config.TCP) {
		r, err = p.exchangeTCP(ctx, m)
	} else {
		r, _, err = p.client.ExchangeContext(ctx, m, p.addr)
	}
	if err != nil {
		return p.explain(err)
	}
	if r.Rcode != p.rcode {
		return fmt.Errorf("dns %s %s: answered %s, want %s: does the server serve this name (check.query, check.expect_rcode)?",
			p.net, p.addr, dns.RcodeToString[r.Rcode], dns.RcodeToString[p.rcode])
	}
	return nil
}

func (p dnsProber) exchangeTCP(ctx context.Context, m *dns.Msg) (*dns.Msg, error) {
	raw, err := p.dial(ctx, "tcp", p.addr)
	if err != nil {
		return nil, err
	}
	co := &dns.Conn{Conn: raw}
	defer co.Close()
	r, _, err := p.client.ExchangeWithConnContext(ctx, m, co)
	return r, err
}

func (p dnsProber) explain(err error) error {
	switch {
	case errors.Is(err, syscall.ECONNREFUSED) && p.net == string(config.UDP):
		return fmt.Errorf("dns udp %s: ICMP port unreachable: no DNS server listens there; is it running?", p.addr)
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("dns tcp %s: connection refused: no DNS server listens on TCP there; is it running (and serving TCP)?", p.addr)
	case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("dns %s %s: no answer to %s within the timeout: is the server up, and does it allow queries from the balancer?", p.net, p.addr, p.what)
	}
	return fmt.Errorf("dns %s %s: %s: %w", p.net, p.addr, p.what, err)
}
