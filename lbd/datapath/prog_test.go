package datapath

import (
	"bytes"
	"encoding/hex"
	"net/netip"
	"testing"
)

// Services of the table tests: one backend each, so the expected output
// does not depend on hashing (the model test covers that).
func tableServices() []Service {
	one := func(addr string, i int) []Backend {
		return []Backend{{Name: "b", Addr: netip.MustParseAddr(addr), MAC: beMAC(i), Weight: 1, State: Up}}
	}
	return []Service{
		{Name: "web4", VIP: ip4("192.0.2.10"), Proto: TCP, Ports: []uint16{80, 443}, Backends: one("192.0.2.11", 1)},
		{Name: "dns4", VIP: ip4("192.0.2.20"), Proto: UDP, Backends: one("192.0.2.21", 2)}, // all ports
		{Name: "dead4", VIP: ip4("192.0.2.30"), Proto: TCP, Ports: []uint16{80},
			Backends: []Backend{{Name: "b", Addr: ip4("192.0.2.31"), MAC: beMAC(3), Weight: 1, State: Down}}},
		{Name: "web6", VIP: ip4("2001:db8::10"), Proto: TCP, Ports: []uint16{443}, Backends: one("2001:db8::11", 4)},
		{Name: "dns6", VIP: ip4("2001:db8::20"), Proto: UDP, Backends: one("2001:db8::21", 5)},
		{Name: "tcpall4", VIP: ip4("192.0.2.40"), Proto: TCP, Scheduler: Source, Backends: one("192.0.2.41", 6)},
	}
}

type progCase struct {
	name    string
	frame   []byte
	verdict int
	out     []byte // nil: output must equal the input (untouched)
	reason  Reason
}

func progCases(t *testing.T) []progCase {
	b := func(p pkt) []byte { return build(t, p) }
	redirect := func(name string, frame []byte, be int, r Reason) progCase {
		return progCase{name, frame, VerdictRedirect, rewritten(frame, beMAC(be)), r}
	}
	pass := func(name string, frame []byte, r Reason) progCase {
		return progCase{name, frame, VerdictContinue, nil, r}
	}
	syn4 := pkt{src: ap("198.51.100.1:40000"), dst: ap("192.0.2.10:80"), proto: TCP, syn: true}
	ack4 := syn4
	ack4.syn, ack4.ack = false, true
	udp4 := pkt{src: ap("198.51.100.1:5353"), dst: ap("192.0.2.20:53"), proto: UDP}
	syn6 := pkt{src: ap("[2001:db8:1::1]:40000"), dst: ap("[2001:db8::10]:443"), proto: TCP, syn: true}
	udp6 := pkt{src: ap("[2001:db8:1::1]:5353"), dst: ap("[2001:db8::20]:53"), proto: UDP}
	with := func(p pkt, f func(*pkt)) pkt { f(&p); return p }

	full := b(syn4)
	tagged := b(with(syn4, func(p *pkt) { p.vlan = 100 }))
	cases := []progCase{
		redirect("ipv4 tcp syn to service port", full, 1, ReasonRedirect),
		redirect("ipv4 tcp second service port", b(with(syn4, func(p *pkt) { p.dst = ap("192.0.2.10:443") })), 1, ReasonRedirect),
		redirect("ipv4 tcp ack without conntrack: maglev fallback", b(ack4), 1, ReasonRedirect),
		redirect("ipv4 with options", b(with(syn4, func(p *pkt) { p.ipv4Options = true })), 1, ReasonRedirect),
		redirect("ipv4 in-band 802.1Q tag", b(with(syn4, func(p *pkt) { p.vlan = 100 })), 1, ReasonRedirect),
		redirect("ipv4 udp all-ports service", b(udp4), 2, ReasonRedirect),
		redirect("ipv4 udp all-ports, other port", b(with(udp4, func(p *pkt) { p.dst = ap("192.0.2.20:9999") })), 2, ReasonRedirect),
		redirect("ipv4 tcp all-ports source-hash service", b(with(syn4, func(p *pkt) { p.dst = ap("192.0.2.40:8080") })), 6, ReasonRedirect),
		redirect("ipv6 tcp syn", b(syn6), 4, ReasonRedirect),
		redirect("ipv6 tcp with hop-by-hop and dest options", b(with(syn6, func(p *pkt) { p.v6ExtHeaders = true })), 4, ReasonRedirect),
		redirect("ipv6 udp all-ports", b(udp6), 5, ReasonRedirect),
		redirect("ipv6 in-band vlan", b(with(udp6, func(p *pkt) { p.vlan = 7 })), 5, ReasonRedirect),

		pass("ipv4 tcp to VIP, port without service", b(with(syn4, func(p *pkt) { p.dst = ap("192.0.2.10:22") })), ReasonPassNoService),
		pass("ipv4 udp to tcp-only VIP", b(with(udp4, func(p *pkt) { p.dst = ap("192.0.2.10:80") })), ReasonPassNoService),
		pass("ipv4 to a non-VIP", b(with(syn4, func(p *pkt) { p.dst = ap("192.0.2.99:80") })), ReasonPassNoService),
		pass("ipv6 to a non-VIP", b(with(syn6, func(p *pkt) { p.dst = ap("[2001:db8::99]:443") })), ReasonPassNoService),
		pass("service whose only backend is down", b(with(syn4, func(p *pkt) { p.dst = ap("192.0.2.30:80") })), ReasonPassNoBackend),
		pass("arp", arpFrame(), ReasonPassNotIP),
		pass("ipv4 tcp syn to a VIP, frame for another MAC", patch(b(syn4), 0, 0x02), ReasonPassOtherHost),
		pass("ipv6 udp to a VIP, frame for another MAC", patch(b(udp6), 5, 0x99), ReasonPassOtherHost),
		// BPF_PROG_TEST_RUN refuses an IPv4/IPv6 ethertype frame shorter
		// than the IP header; a frame with an in-band tag is not checked,
		// so truncated IP headers are tested behind one.
		pass("ipv4 truncated in ip header", tagged[:18+12], ReasonPassMalformed),
		pass("ipv4 truncated after the vlan tag", tagged[:16], ReasonPassMalformed),
		pass("ipv4 truncated in tcp header", full[:14+20+10], ReasonPassMalformed),
		pass("vlan tag without ip", tagged[:18], ReasonPassMalformed),
		pass("ipv4 ihl below 5", patch(full, 14, 0x44), ReasonPassMalformed),
		pass("ipv4 total length beyond frame", patch(full, 16, 0x7f), ReasonPassMalformed),
		pass("ipv6 truncated", b(with(syn6, func(p *pkt) { p.vlan = 3 }))[:18+30], ReasonPassMalformed),
		pass("ipv6 truncated in extension headers", b(with(syn6, func(p *pkt) { p.v6ExtHeaders = true }))[:14+40+10], ReasonPassMalformed),
		pass("ipv6 payload length beyond frame", patch(b(syn6), 18, 0x7f), ReasonPassMalformed),
		pass("ipv4 wrong version", patch(full, 14, 0x65), ReasonPassMalformed),
		pass("two in-band vlan tags", qinq(b(with(syn4, func(p *pkt) { p.vlan = 100 }))), ReasonPassUnsupported),
		// Fragments follow their first fragment's ports (lb_frags), so a
		// datagram to a port-specific service is forwarded whole; the
		// cases run in order, so each later fragment finds its first.
		redirect("ipv4 tcp first fragment to a service port", b(with(syn4, func(p *pkt) { p.moreFrags = true })), 1, ReasonRedirectFragment),
		redirect("ipv4 tcp later fragment to a service port", b(with(syn4, func(p *pkt) { p.fragOffset = 185 })), 1, ReasonRedirectFragment),
		pass("ipv4 tcp later fragment whose first was not seen", b(with(syn4, func(p *pkt) { p.fragOffset = 185; p.fragID = 99 })), ReasonPassFragment),
		pass("ipv4 tcp later fragment to a non-VIP", b(with(syn4, func(p *pkt) { p.fragOffset = 185; p.dst = ap("192.0.2.99:80") })), ReasonPassFragment),
		pass("ipv4 tcp first fragment to a port without service", b(with(syn4, func(p *pkt) { p.moreFrags = true; p.dst = ap("192.0.2.10:22") })), ReasonPassFragment),
		redirect("ipv4 udp first fragment, all-ports service", b(with(udp4, func(p *pkt) { p.moreFrags = true })), 2, ReasonRedirectFragment),
		redirect("ipv4 udp later fragment, all-ports service", b(with(udp4, func(p *pkt) { p.fragOffset = 185 })), 2, ReasonRedirectFragment),
		pass("ipv6 udp later fragment whose first was not seen", b(with(udp6, func(p *pkt) { p.fragOffset = 185 })), ReasonPassFragment),
		redirect("ipv6 udp first fragment, all-ports service", b(with(udp6, func(p *pkt) { p.moreFrags = true })), 5, ReasonRedirectFragment),
		redirect("ipv6 udp later fragment, all-ports service", b(with(udp6, func(p *pkt) { p.fragOffset = 185 })), 5, ReasonRedirectFragment),
		// Found by FuzzProgram: a fragment header past the payload length
		// (in trailing bytes) is no fragment header.
		pass("ipv6 later fragment header beyond the payload length",
			patch(patch(b(with(udp6, func(p *pkt) { p.fragOffset = 185 })), 18, 0), 19, 16), ReasonPassMalformed),
		redirect("ipv6 tcp first fragment to a service port", b(with(syn6, func(p *pkt) { p.moreFrags = true })), 4, ReasonRedirectFragment),
		redirect("ipv6 tcp later fragment to a service port", b(with(syn6, func(p *pkt) { p.fragOffset = 185 })), 4, ReasonRedirectFragment),
		pass("ipv6 tcp later fragment whose first was not seen", b(with(syn6, func(p *pkt) { p.fragOffset = 185; p.fragID = 99 })), ReasonPassFragment),
		pass("icmp echo to VIP", icmp4(t, 8, 0, nil), ReasonPassICMP),
		redirect("icmp frag-needed about a service flow", icmp4(t, 3, 4, replyOf(t, syn4)), 1, ReasonRedirectICMP),
		pass("icmp frag-needed about a non-service flow", icmp4(t, 3, 4, replyOf(t, with(syn4, func(p *pkt) { p.dst = ap("192.0.2.10:22") }))), ReasonPassICMP),
		pass("icmpv6 echo to VIP", icmp6(t, 128, nil), ReasonPassICMP),
		pass("icmpv6 neighbour solicitation to VIP", icmp6(t, 135, nil), ReasonPassICMP),
		pass("icmp error quoting a non-first fragment", icmp4(t, 3, 4, patch(replyOf(t, syn4), 6, 0x01)), ReasonPassICMP),
		pass("icmp error too short to quote ports", icmp4(t, 3, 4, replyOf(t, syn4)[:20]), ReasonPassMalformed),
		redirect("icmpv6 packet-too-big about a service flow", icmp6(t, 2, replyOf(t, syn6)), 4, ReasonRedirectICMP),
	}
	return cases
}

// check runs the case's frame through d's program and checks its verdict,
// its output frame and that its reason's counter went up by one.
func (c progCase) check(t *testing.T, d *Datapath) {
	t.Helper()
	before := reasonCount(t, d, c.reason)
	verdict, out := run(t, d, c.frame)
	want := c.out
	if want == nil {
		want = c.frame
	}
	if verdict != c.verdict {
		t.Errorf("verdict = %d, want %d", verdict, c.verdict)
	}
	if !bytes.Equal(out, want) {
		t.Errorf("output differs\n got %s\nwant %s", hex.EncodeToString(out), hex.EncodeToString(want))
	}
	if after := reasonCount(t, d, c.reason); after != before+1 {
		t.Errorf("counter %s went %d -> %d, want +1", c.reason, before, after)
	}
}

func TestProgramTable(t *testing.T) {
	d := mustOpen(t, Options{})
	mustApply(t, d, tableServices()...)
	for _, c := range progCases(t) {
		t.Run(c.name, func(t *testing.T) { c.check(t, d) })
	}
}

func reasonCount(t *testing.T, d *Datapath, r Reason) uint64 {
	t.Helper()
	st, err := d.Stats()
	if err != nil {
		t.Fatal(err)
	}
	return st.Reasons[r].Packets
}

func patch(frame []byte, off int, v byte) []byte {
	out := bytes.Clone(frame)
	out[off] = v
	return out
}

// qinq inserts a second 802.1Q tag after the first.
func qinq(frame []byte) []byte {
	out := append([]byte{}, frame[:16]...)
	out = append(out, 0x81, 0x00, 0x00, 0x05)
	out = append(out, frame[16:]...)
	out[12], out[13] = 0x88, 0xa8
	return out
}

func arpFrame() []byte {
	f := make([]byte, 42)
	copy(f, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	copy(f[6:], cliMAC)
	f[12], f[13] = 0x08, 0x06
	return f
}
