package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dsrlb/dsrlb/lbd/control"
	"github.com/dsrlb/dsrlb/lbd/datapath"
	"github.com/dsrlb/dsrlb/lbd/health"
)

// In-process lifecycle tests in BGP mode (docs/scale-out.md, "When a VIP
// is announced"): the real Run against a fakeHost whose speaker records
// what is announced and withdrawn.

// bgpConfig: web needs both servers up to be announced; dns (check none)
// needs its one server, so it qualifies as soon as its MAC is known.
const bgpConfig = `balancer:
  interface: eth0
  pin_path: PIN
  metrics: {listen: ""}
  bgp:
    asn: 64497
    withdraw_wait: 3s
    peers: [{address: 192.0.2.254, asn: 64496}]
services:
  - name: web
    vip: 192.0.2.10
    ports: [80]
    announce: {min_healthy: 2, communities: ["64496:100"], med: 10}
    servers:
      - {name: a, address: 192.0.2.11, weight: 10}
      - {name: b, address: 192.0.2.12, weight: 10}
  - name: dns
    vip: 192.0.2.20
    protocol: udp
    ports: [53]
    check: {type: none}
    servers:
      - {name: a, address: 192.0.2.11, weight: 1}
`

// bgpWebOnly is bgpConfig without the dns service.
var bgpWebOnly = bgpConfig[:strings.Index(bgpConfig, "  - name: dns")]

// startBGPResolved starts lbd on yaml with every MAC known.
func startBGPResolved(t *testing.T, yaml string) (*fakeHost, *lbdRun) {
	h := newFakeHost()
	h.neigh.macs[addrA], h.neigh.macs[addrB] = macA, macB
	r := newRun(t, h, yaml)
	r.start()
	return h, r
}

// waitAnnounced waits until the speaker announces exactly want.
func waitAnnounced(t *testing.T, h *fakeHost, want ...netip.Addr) {
	t.Helper()
	waitFor(t, fmt.Sprintf("announced %v", want), func() bool { return slices.Equal(h.bgp.announced(), want) })
}

// afterAnnounce makes change and waits for the Announce of the apply it
// causes, so what is not announced can be asserted too.
func afterAnnounce(t *testing.T, h *fakeHost, what string, change func()) {
	t.Helper()
	n := h.bgp.calls()
	change()
	waitFor(t, "the announcements after "+what, func() bool { return h.bgp.calls() > n })
}

// bothUp passes web's checks and waits for web to be announced.
func bothUp(t *testing.T, h *fakeHost) {
	t.Helper()
	h.health.set("web/a", health.Up)
	h.health.set("web/b", health.Up)
	waitAnnounced(t, h, vipWeb, vipDNS)
}

// TestLifecycleBGPStart: the speaker starts once the data plane is
// attached, announces only the VIPs whose service has min_healthy servers
// up, before READY=1, with the service's attributes; no VIP is put on the
// interface. A VIP enters as its service comes to qualify.
func TestLifecycleBGPStart(t *testing.T) {
	h, r := startBGPResolved(t, bgpConfig)

	want := []string{"open", "apply", "attach", "bgp start", "apply", "announce 192.0.2.20", "READY=1"}
	if got := h.steps.first(len(want)); !slices.Equal(got, want) {
		t.Errorf("start steps %q, want %q", got, want)
	}
	if h.bgp.started != 1 || h.bgp.iface != "eth0" || h.bgp.cfg.ASN != 64497 || len(h.bgp.cfg.Peers) != 1 {
		t.Errorf("speaker started %d times on %q with %+v: want once, on eth0, the configured ASN and peer", h.bgp.started, h.bgp.iface, h.bgp.cfg)
	}
	if got := h.vips.calls(); len(got) != 0 {
		t.Errorf("VIP calls %q in BGP mode, want none: the routers route the VIPs", got)
	}
	if got := h.bgp.announced(); !slices.Equal(got, []netip.Addr{vipDNS}) {
		t.Errorf("announced %v at start, want dns alone (web has 0 of 2 servers up)", got)
	}
	var st BGPStatus
	b, err := os.ReadFile(r.bgpStatus)
	if err == nil {
		err = json.Unmarshal(b, &st)
	}
	if err != nil || st.PID != os.Getpid() || st.ASN != 64497 || !slices.Equal(st.Announced, []netip.Addr{vipDNS}) {
		t.Errorf("BGP status file %+v, %v: want this process, ASN 64497, dns announced", st, err)
	}

	// One of web's two servers up is not enough; both are.
	afterAnnounce(t, h, "web/a up", func() { h.health.set("web/a", health.Up) })
	if got := h.dp.last()["web"]["a"]; got != datapath.Up {
		t.Fatalf("web/a %v in the data plane, want up", got)
	}
	if got := h.bgp.announced(); !slices.Equal(got, []netip.Addr{vipDNS}) {
		t.Errorf("announced %v with 1 of web's 2 servers up, want dns alone", got)
	}
	h.health.set("web/b", health.Up)
	waitAnnounced(t, h, vipWeb, vipDNS)
	if got := h.bgp.history(); !slices.Equal(got, []string{"announce 192.0.2.20", "announce 192.0.2.10"}) {
		t.Errorf("announcements %q, want dns then web, once each", got)
	}
	rt, _ := h.bgp.route(vipWeb)
	if !slices.Equal(rt.Communities, []uint32{64496<<16 | 100}) || rt.MED == nil || *rt.MED != 10 {
		t.Errorf("web route %+v: want community 64496:100 and MED 10", rt)
	}
}

// TestLifecycleBGPHealthFlap: a service falling below min_healthy has its
// VIP withdrawn while the data plane keeps its remaining backend; it is
// announced again when the service qualifies. The other VIP stays put.
func TestLifecycleBGPHealthFlap(t *testing.T) {
	h, r := startBGPResolved(t, bgpConfig)
	bothUp(t, h)

	from := len(h.bgp.history())
	for round := range 2 {
		h.health.set("web/b", health.Down)
		waitAnnounced(t, h, vipDNS)
		if got := h.dp.last()["web"]; got["a"] != datapath.Up || got["b"] != datapath.Down {
			t.Fatalf("round %d: web in the data plane %v, want a still serving, b out", round, got)
		}
		h.health.set("web/b", health.Up)
		waitAnnounced(t, h, vipWeb, vipDNS)
	}
	want := []string{"withdraw 192.0.2.10", "announce 192.0.2.10", "withdraw 192.0.2.10", "announce 192.0.2.10"}
	if got := h.bgp.history()[from:]; !slices.Equal(got, want) {
		t.Errorf("announcements during the flaps %q, want %q (dns untouched)", got, want)
	}
	// A MAC lost takes the server out like a failed check.
	h.neigh.set(addrB, nil)
	waitAnnounced(t, h, vipDNS)
	h.neigh.set(addrB, macB)
	waitAnnounced(t, h, vipWeb, vipDNS)
	if r.n.index(0, "READY=1") < 0 {
		t.Error("no READY=1")
	}
}

// TestLifecycleBGPReload: a reload that removes a service withdraws its
// VIP and leaves the others announced; an announce change is taken by a
// reload (changed attributes replace the route; min_healthy 0 announces
// whatever the checks say); a balancer.bgp change is refused and changes
// nothing.
func TestLifecycleBGPReload(t *testing.T) {
	h, r := startBGPResolved(t, bgpConfig)
	bothUp(t, h)

	from := len(h.bgp.history())
	r.write(bgpWebOnly)
	if resp := r.call(control.CmdReload); !resp.OK || resp.Message != "configuration reloaded: 1 services, 2 servers" {
		t.Fatalf("reload verdict %+v", resp)
	}
	if got := h.bgp.history()[from:]; !slices.Equal(got, []string{"withdraw 192.0.2.20"}) {
		t.Errorf("announcements after removing dns %q, want its VIP withdrawn alone", got)
	}
	if got := h.bgp.announced(); !slices.Equal(got, []netip.Addr{vipWeb}) {
		t.Errorf("announced %v, want web", got)
	}
	if got := h.vips.calls(); len(got) != 0 {
		t.Errorf("VIP calls %q in BGP mode, want none", got)
	}

	from = len(h.bgp.history())
	r.write(strings.Replace(bgpWebOnly, "{min_healthy: 2, communities: [\"64496:100\"], med: 10}", "{min_healthy: 0, med: 20}", 1))
	if resp := r.call(control.CmdReload); !resp.OK {
		t.Fatalf("reload of announce: %+v", resp)
	}
	if got := h.bgp.history()[from:]; !slices.Equal(got, []string{"withdraw 192.0.2.10", "announce 192.0.2.10"}) {
		t.Errorf("announcements after changing web's attributes %q, want its route replaced", got)
	}
	if rt, _ := h.bgp.route(vipWeb); rt.MED == nil || *rt.MED != 20 || len(rt.Communities) != 0 {
		t.Errorf("web route %+v after reload, want MED 20 and no community", rt)
	}
	afterAnnounce(t, h, "web/a down", func() { h.health.set("web/a", health.Down) })
	afterAnnounce(t, h, "web/b down", func() { h.health.set("web/b", health.Down) })
	if got := h.dp.last()["web"]; got["a"] != datapath.Down || got["b"] != datapath.Down {
		t.Fatalf("web in the data plane %v, want both down", got)
	}
	if got := h.bgp.announced(); !slices.Equal(got, []netip.Addr{vipWeb}) {
		t.Errorf("announced %v with min_healthy 0 and no server up, want web kept", got)
	}

	from, announces := len(h.bgp.history()), h.bgp.announces
	r.write(strings.Replace(bgpWebOnly, "asn: 64497", "asn: 64498", 1))
	resp := r.call(control.CmdReload)
	if resp.OK || !slices.ContainsFunc(resp.Errors, func(e string) bool { return strings.Contains(e, "balancer.bgp: changed; this takes a restart") }) {
		t.Errorf("reload changing balancer.bgp: %+v, want refused as restart-only", resp)
	}
	h.bgp.mu.Lock()
	defer h.bgp.mu.Unlock()
	if len(h.bgp.events) != from || h.bgp.announces != announces {
		t.Errorf("a rejected reload reached the speaker: %q", h.bgp.events[from:])
	}
}

// TestLifecycleBGPStop: stopping withdraws every VIP while the data plane
// still forwards, gives the speaker withdraw_wait, removes the BGP status
// file and leaves the data plane pinned (docs/scale-out.md: on SIGTERM,
// withdraw, wait, close the sessions).
func TestLifecycleBGPStop(t *testing.T) {
	h, r := startBGPResolved(t, bgpConfig)
	bothUp(t, h)
	if err := r.stop(); err != nil {
		t.Fatalf("Run returned %v after a clean stop, want nil", err)
	}
	all := h.steps.first(1000)
	want := []string{"STOPPING=1", "withdraw 192.0.2.10", "withdraw 192.0.2.20", "bgp stop"}
	if got := all[max(0, len(all)-len(want)):]; !slices.Equal(got, want) {
		t.Errorf("last steps %q, want %q", got, want)
	}
	if h.bgp.stopped != 1 || h.bgp.stopWait != 3*time.Second || h.bgp.closedAtStop {
		t.Errorf("speaker stopped %d times, wait %v, data plane closed first %v: want once, withdraw_wait 3s, while still forwarding",
			h.bgp.stopped, h.bgp.stopWait, h.bgp.closedAtStop)
	}
	if _, removed, closed := h.dp.state(); removed || !closed {
		t.Errorf("data plane removed %v, closed %v: want left pinned and closed", removed, closed)
	}
	if _, err := os.Stat(r.bgpStatus); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("BGP status file left behind: %v", err)
	}
}

// TestLifecycleBGPFailedStart: a speaker that cannot start, or cannot
// announce, fails the start before READY=1; the data plane the start
// created is removed and a started speaker is stopped.
func TestLifecycleBGPFailedStart(t *testing.T) {
	for _, c := range []struct {
		name        string
		start, ann  error
		want        string
		wantStopped int
	}{
		{"speaker start", errFake, nil, "fake failure", 0},
		{"announce", nil, errFake, "update BGP announcements", 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := newFakeHost()
			h.neigh.macs[addrA] = macA
			h.bgp.startErr, h.bgp.announceErr = c.start, c.ann
			r := newRun(t, h, bgpConfig)
			err := Run(context.Background(), r.options(nil))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Run = %v, want %q", err, c.want)
			}
			if _, removed, _ := h.dp.state(); !removed {
				t.Error("the data plane this start created was left attached")
			}
			if h.bgp.stopped != c.wantStopped || len(h.bgp.announced()) != 0 {
				t.Errorf("speaker stopped %d times, announcing %v: want stopped %d, nothing announced", h.bgp.stopped, h.bgp.announced(), c.wantStopped)
			}
			if r.n.index(0, "READY=1") >= 0 {
				t.Error("READY=1 sent by a failed start")
			}
		})
	}
}

// TestLifecycleBGPSharedVIP: a VIP shared by two services (the config
// makes them carry the same attributes) is announced once, while either
// qualifies, and withdrawn only when neither does.
func TestLifecycleBGPSharedVIP(t *testing.T) {
	yaml := bgpWebOnly + `  - name: tls
    vip: 192.0.2.10
    ports: [443]
    announce: {communities: ["64496:100"], med: 10}
    servers:
      - {name: a, address: 192.0.2.11, weight: 1}
`
	h, r := startBGPResolved(t, yaml)
	h.health.set("tls/a", health.Up)
	waitAnnounced(t, h, vipWeb) // tls qualifies alone (min_healthy 1)
	afterAnnounce(t, h, "web/a up", func() { h.health.set("web/a", health.Up) })
	afterAnnounce(t, h, "web/b up", func() { h.health.set("web/b", health.Up) })
	afterAnnounce(t, h, "tls/a down", func() { h.health.set("tls/a", health.Down) })
	if got := h.bgp.announced(); !slices.Equal(got, []netip.Addr{vipWeb}) {
		t.Errorf("announced %v with web qualifying and tls not, want the shared VIP", got)
	}
	h.health.set("web/b", health.Down)
	waitAnnounced(t, h)
	r.waitState("web", "b", datapath.Down)
	h.bgp.mu.Lock()
	defer h.bgp.mu.Unlock()
	if len(h.bgp.dups) != 0 {
		t.Errorf("VIPs given twice in one announcement: %v", h.bgp.dups)
	}
	if want := []string{"announce 192.0.2.10", "withdraw 192.0.2.10"}; !slices.Equal(h.bgp.events, want) {
		t.Errorf("announcements %q, want %q: one route, kept while either service qualifies", h.bgp.events, want)
	}
}
