package datapath

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
)

// TestCheckReplyDropped: a backend's answer to a DSR-path check (TCP from a
// service's VIP:port to a check port, CheckPortMin..CheckPortMax) is
// dropped on the path of packets for no VIP and counted as
// drop_check_reply, so the balancer's stack never answers it with a RST;
// anything else for no VIP continues, and client traffic is unchanged.
func TestCheckReplyDropped(t *testing.T) {
	d := mustOpen(t, Options{})
	mustApply(t, d, tableServices()...)
	b := func(p pkt) []byte { return build(t, p) }
	with := func(p pkt, f func(*pkt)) pkt { f(&p); return p }
	synack4 := pkt{src: ap("192.0.2.10:80"), dst: ap("198.51.100.1:61000"), proto: TCP, syn: true, ack: true}
	synack6 := pkt{src: ap("[2001:db8::10]:443"), dst: ap("[2001:db8:1::1]:65535"), proto: TCP, syn: true, ack: true}
	// An address that is no VIP but shares web6's VIP filter bit (the
	// filter folds the four words by XOR: 2001:db8::10 and 2001:db8::10:0:0
	// differ only by swapped words), so its packets go on to the service
	// lookup and miss there: the filter's false positive.
	collide := ap("[2001:db8::10:0:0]:61000")
	if vipBit(collide.Addr()) != vipBit(ip4("2001:db8::10")) {
		t.Fatalf("test address %s does not share web6's filter bit", collide)
	}
	drop := func(name string, frame []byte) progCase {
		return progCase{name, frame, VerdictDrop, nil, ReasonDropCheckReply}
	}
	pass := func(name string, frame []byte, r Reason) progCase {
		return progCase{name, frame, VerdictContinue, nil, r}
	}
	client := pkt{src: ap("198.51.100.1:61000"), dst: ap("192.0.2.10:80"), proto: TCP, syn: true}
	cases := []progCase{
		drop("ipv4 syn-ack from VIP:80 to the lowest check port", b(synack4)),
		drop("ipv4 data from VIP:443 (second port)", b(with(synack4, func(p *pkt) { p.src = ap("192.0.2.10:443"); p.syn = false; p.payload = []byte("HTTP/1.1 200 OK\r\n") }))),
		drop("ipv4 rst from VIP to the highest check port", b(with(synack4, func(p *pkt) { p.dst = ap("198.51.100.1:65535"); p.syn, p.rst = false, true }))),
		drop("ipv4 from an all-ports service's VIP", b(with(synack4, func(p *pkt) { p.src = ap("192.0.2.40:8080") }))),
		drop("ipv4 from a service whose backends are down", b(with(synack4, func(p *pkt) { p.src = ap("192.0.2.30:80") }))),
		drop("ipv6 syn-ack from VIP:443", b(synack6)),
		drop("ipv6 syn-ack to a VIP-filter false positive", b(with(synack6, func(p *pkt) { p.dst = collide }))),
		drop("ipv4 in-band vlan", b(with(synack4, func(p *pkt) { p.vlan = 100 }))),

		pass("ipv4 syn-ack to port 60999 (kernel ephemeral range)", b(with(synack4, func(p *pkt) { p.dst = ap("198.51.100.1:60999") })), ReasonPassNoService),
		pass("ipv4 syn-ack from a non-VIP source", b(with(synack4, func(p *pkt) { p.src = ap("192.0.2.99:80") })), ReasonPassNoService),
		pass("ipv4 from VIP, port without service", b(with(synack4, func(p *pkt) { p.src = ap("192.0.2.10:22") })), ReasonPassNoService),
		pass("ipv4 udp from a udp service's VIP:port", b(pkt{src: ap("192.0.2.20:53"), dst: ap("198.51.100.1:61000"), proto: UDP}), ReasonPassNoService),
		pass("ipv6 syn-ack to port 60999", b(with(synack6, func(p *pkt) { p.dst = ap("[2001:db8:1::1]:60999") })), ReasonPassNoService),
		pass("ipv6 to a VIP-filter false positive, not from a VIP", b(with(synack6, func(p *pkt) { p.src = ap("[2001:db8::99]:443"); p.dst = collide })), ReasonPassNoService),
		pass("ipv4 later fragment from VIP to a check port", b(with(synack4, func(p *pkt) { p.fragOffset = 185 })), ReasonPassFragment),
		// A client whose source port is in the check range still reaches
		// the service: the drop is only on the path for no VIP.
		{"ipv4 client syn from port 61000 to the VIP", b(client), VerdictRedirect, rewritten(b(client), beMAC(1)), ReasonRedirect},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { c.check(t, d) })
	}
}

// TestAdoptCountersOfFewerReasons: maps pinned by an lbd from before
// drop_check_reply (lb_global_stats of one entry fewer) are adopted: only
// the verdict counters are replaced, tracked flows stay, and a read-only
// reader of the old counters (lbd status against the old lbd) still works.
func TestAdoptCountersOfFewerReasons(t *testing.T) {
	pin := testPinPath(t)
	opts := Options{PinPath: pin}
	d1 := mustOpen(t, opts)
	mustApply(t, d1, tableServices()...)
	syn := build(t, pkt{src: ap("198.51.100.1:40000"), dst: ap("192.0.2.10:80"), proto: TCP, syn: true})
	ack := build(t, pkt{src: ap("198.51.100.1:40000"), dst: ap("192.0.2.10:80"), proto: TCP, ack: true})
	for _, f := range [][]byte{syn, ack} { // tracked from the handshake's ACK
		if v, _ := run(t, d1, f); v != VerdictRedirect {
			t.Fatalf("handshake verdict = %d, want redirect", v)
		}
	}
	if err := d1.Close(); err != nil {
		t.Fatal(err)
	}
	pinOldGlobalStats(t, pin, uint32(numReasons-1))

	r, err := OpenReadOnly(pin)
	if err != nil {
		t.Fatalf("read-only open of old counters: %v", err)
	}
	if _, err := r.Stats(); err != nil {
		t.Errorf("read-only stats of old counters: %v", err)
	}
	r.Close()

	d2 := mustOpen(t, opts)
	if !d2.Adopted() {
		t.Fatal("maps with old counters not adopted")
	}
	if got := d2.objs.LbGlobalStats.MaxEntries(); got != uint32(numReasons) {
		t.Fatalf("lb_global_stats has %d entries after adopt, want %d", got, numReasons)
	}
	flow := Flow{Src: ap("198.51.100.1:40000"), Dst: ap("192.0.2.10:80"), Proto: TCP}
	if fi, err := d2.LookupFlow(flow); err != nil || !fi.Tracked {
		t.Fatalf("tracked flow lost by the migration: %+v, %v", fi, err)
	}
	mustApply(t, d2, tableServices()...)
	reply := build(t, pkt{src: ap("192.0.2.10:80"), dst: ap("198.51.100.1:61000"), proto: TCP, syn: true, ack: true})
	if v, _ := run(t, d2, reply); v != VerdictDrop {
		t.Fatalf("check reply verdict = %d, want drop", v)
	}
	if n := reasonCount(t, d2, ReasonDropCheckReply); n != 1 {
		t.Fatalf("drop_check_reply = %d after adopt, want 1", n)
	}
	if err := d2.Remove(); err != nil {
		t.Fatal(err)
	}
}

// pinOldGlobalStats replaces the pinned lb_global_stats by one of n
// entries, as an older lbd pinned it.
func pinOldGlobalStats(t *testing.T, pin string, n uint32) {
	t.Helper()
	spec, err := loadBpf()
	if err != nil {
		t.Fatal(err)
	}
	ms := spec.Maps[bpfMapLbGlobalStats].Copy()
	ms.MaxEntries, ms.Pinning = n, ebpf.PinNone
	m, err := ebpf.NewMap(ms)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	path := filepath.Join(pin, bpfMapLbGlobalStats)
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := m.Pin(path); err != nil {
		t.Fatal(err)
	}
}

// TestEveryReasonNamed: a reason added in C without a name here would show
// as reason(N) in lbd status and the metrics.
func TestEveryReasonNamed(t *testing.T) {
	seen := map[string]bool{}
	for _, r := range Reasons() {
		name := r.String()
		if strings.HasPrefix(name, "reason(") || seen[name] {
			t.Errorf("reason %d has no name of its own: %q", uint32(r), name)
		}
		seen[name] = true
	}
	if ReasonDropCheckReply.String() != "drop_check_reply" {
		t.Errorf("ReasonDropCheckReply = %q", ReasonDropCheckReply)
	}
}
