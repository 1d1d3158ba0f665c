package arpguard

import (
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/dsrlb/dsrlb/lbd/vip"
)

var (
	own     = net.HardwareAddr{0x02, 0, 0, 0, 1, 1}
	beMAC   = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x11}
	peerMAC = net.HardwareAddr{0x02, 0, 0, 0, 2, 2}
	web1    = Backend{Service: "web", Name: "web1", Addr: netip.MustParseAddr("203.0.113.11")}
	vip4    = netip.MustParseAddr("192.0.2.10")
)

// TestJudge: who may answer for a VIP in each mode. A backend may never;
// this balancer always may; another host (the keepalived peer) only with
// an external owner.
func TestJudge(t *testing.T) {
	backends := map[string][]Backend{beMAC.String(): {web1}}
	for _, tc := range []struct {
		mode       Mode
		mac        net.HardwareAddr
		report     bool
		hasBackend bool
	}{
		{OwnerLBD, own, false, false},
		{OwnerLBD, beMAC, true, true},
		{OwnerLBD, peerMAC, true, false},
		{OwnerExternal, own, false, false},
		{OwnerExternal, beMAC, true, true},
		{OwnerExternal, peerMAC, false, false}, // the peer balancer while it is master
		{OwnerBGP, own, false, false},
		{OwnerBGP, beMAC, true, true},
		{OwnerBGP, peerMAC, true, false},
	} {
		report, bs := Policy{Mode: tc.mode, Backends: backends}.Judge(own, tc.mac)
		if report != tc.report || (len(bs) > 0) != tc.hasBackend {
			t.Errorf("mode %s, mac %s: report %v backends %v, want report %v with backend %v", tc.mode, tc.mac, report, bs, tc.report, tc.hasBackend)
		}
	}
}

// TestTrackerLogsOnceThenRepeats: a conflict is logged when it begins,
// again when its MAC becomes known as a backend, then at most every
// repeat, and clears once unseen for the hold time.
func TestTrackerLogsOnceThenRepeats(t *testing.T) {
	tr := newTracker(time.Minute)
	t0 := time.Unix(1000, 0)
	s := vip.Sighting{VIP: vip4, MAC: beMAC, Kind: vip.ARPReply}
	steps := []struct {
		at   time.Duration
		bs   []Backend
		want event
	}{
		{0, nil, evNew},
		{time.Second, nil, evNone},
		{2 * time.Second, []Backend{web1}, evNewOwner},
		{30 * time.Second, []Backend{web1}, evNone},
		{62 * time.Second, []Backend{web1}, evRepeat},
		{70 * time.Second, []Backend{web1}, evNone},
	}
	for _, st := range steps {
		c, ev := tr.seen(s, st.bs, t0.Add(st.at))
		if ev != st.want {
			t.Errorf("at %s: event %d, want %d", st.at, ev, st.want)
		}
		if !c.Since.Equal(t0) {
			t.Errorf("at %s: since %s, want %s", st.at, c.Since, t0)
		}
	}
	if got := tr.expire(t0.Add(80*time.Second), 15*time.Second); len(got) != 0 {
		t.Fatalf("expired after 10s unseen with a 15s hold: %v", got)
	}
	if l := tr.list(); len(l) != 1 || l[0].Seen != uint64(len(steps)) || BackendsText(l[0].Backends) != web1.String() {
		t.Fatalf("conflicts %+v, want one with %d frames owned by %s", l, len(steps), web1)
	}
	if got := tr.expire(t0.Add(85*time.Second), 15*time.Second); len(got) != 1 || got[0].VIP != vip4 {
		t.Fatalf("not cleared after 15s unseen: %v", got)
	}
	if l := tr.list(); len(l) != 0 {
		t.Fatalf("conflicts after clearing: %v", l)
	}
	// Seen again after clearing: a new conflict, logged again.
	if _, ev := tr.seen(s, nil, t0.Add(90*time.Second)); ev != evNew {
		t.Errorf("after clearing: event %d, want a new conflict", ev)
	}
}

// TestConflictText: the log line names the VIP, the MAC, the backend and
// what to do.
func TestConflictText(t *testing.T) {
	got := conflictText(Conflict{VIP: vip4, MAC: beMAC, Backends: []Backend{web1}}, OwnerLBD)
	for _, want := range []string{"VIP 192.0.2.10 answered by 02:00:00:00:00:11 = backend web/web1 (203.0.113.11)", "arp_ignore/arp_announce", "hostprep"} {
		if !strings.Contains(got, want) {
			t.Errorf("%q lacks %q", got, want)
		}
	}
	if got := conflictText(Conflict{VIP: vip4, MAC: peerMAC}, OwnerBGP); !strings.Contains(got, "with BGP nobody should") {
		t.Errorf("BGP text %q does not say nobody should answer", got)
	}
}

// TestTrackerBounded: past MaxConflicts, new (VIP, MAC) pairs are not
// tracked, and that is logged at most every repeat; known ones still are.
func TestTrackerBounded(t *testing.T) {
	tr := newTracker(time.Minute)
	tr.limit = 2
	t0 := time.Unix(1000, 0)
	mac := func(i byte) net.HardwareAddr { return net.HardwareAddr{2, 0, 0, 0, 9, i} }
	for i := range byte(2) {
		if _, ev := tr.seen(vip.Sighting{VIP: vip4, MAC: mac(i)}, nil, t0); ev != evNew {
			t.Fatalf("conflict %d: event %d, want new", i, ev)
		}
	}
	if _, ev := tr.seen(vip.Sighting{VIP: vip4, MAC: mac(3)}, nil, t0); ev != evOverflow {
		t.Errorf("third MAC: event %d, want overflow", ev)
	}
	if _, ev := tr.seen(vip.Sighting{VIP: vip4, MAC: mac(4)}, nil, t0.Add(time.Second)); ev != evNone {
		t.Errorf("fourth MAC a second later: event %d, want nothing logged", ev)
	}
	if c, ev := tr.seen(vip.Sighting{VIP: vip4, MAC: mac(5)}, nil, t0.Add(61*time.Second)); ev != evOverflow || c.Seen != 3 {
		t.Errorf("a minute later: event %d with %d untracked, want overflow with 3", ev, c.Seen)
	}
	if _, ev := tr.seen(vip.Sighting{VIP: vip4, MAC: mac(0)}, nil, t0.Add(62*time.Second)); ev != evRepeat {
		t.Errorf("a tracked MAC: event %d, want its repeat", ev)
	}
	if n := len(tr.list()); n != 2 {
		t.Errorf("%d conflicts tracked, want the limit 2", n)
	}
}

// TestProbesAreNotClaims: an RFC 5227 probe or a DAD solicitation for a VIP
// asks, it claims nothing (switches' IP device tracking send them): not a
// conflict from an unknown host; from a backend it means the VIP is on an
// interface other than lo there, and is reported.
func TestProbesAreNotClaims(t *testing.T) {
	for _, tc := range []struct {
		kind   vip.ClaimKind
		mac    net.HardwareAddr
		report bool
	}{
		{vip.ARPProbe, peerMAC, false},
		{vip.DADProbe, peerMAC, false},
		{vip.ARPProbe, beMAC, true},
		{vip.DADProbe, beMAC, true},
		{vip.ARPReply, peerMAC, true},
		{vip.GratuitousARP, peerMAC, true},
	} {
		g := &Guard{log: slog.New(slog.DiscardHandler), seg: &vip.Segment{Ifi: &net.Interface{HardwareAddr: own}},
			policy: Policy{Mode: OwnerLBD, Backends: map[string][]Backend{beMAC.String(): {web1}}}, track: newTracker(time.Minute)}
		g.judge(vip.Sighting{VIP: vip4, MAC: tc.mac, Kind: tc.kind}, time.Unix(1000, 0))
		if got := len(g.track.list()) > 0; got != tc.report {
			t.Errorf("%s from %s: reported %v, want %v", tc.kind, tc.mac, got, tc.report)
		}
	}
}
