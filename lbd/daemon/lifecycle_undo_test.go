package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dsrlb/dsrlb/lbd/control"
	"github.com/dsrlb/dsrlb/lbd/datapath"
	"github.com/dsrlb/dsrlb/lbd/health"
)

// replacedHost is a host where lbd A's maps were incompatible and this
// start's Open replaces them (--replace-incompatible): the data plane is
// not adopted (fresh, empty maps under <pin_path>/next until the Attach)
// but A's program is still attached, forwarding with its old maps, still
// pinned.
func replacedHost() *fakeHost {
	h := newFakeHost()
	h.neigh.macs[addrA], h.neigh.macs[addrB] = macA, macB
	h.dp.foundAttached, h.dp.replaced = true, true
	return h
}

// TestLifecycleReplacedFreshOrder: a start on replaced maps programs them
// before it attaches (apply → attach → take, as on fresh maps: attaching
// first would forward every VIP to the stack until the Apply), restores
// no settings, and a failure never detaches the program that forwards:
// before the Attach A's still forwards with its own maps, so only this
// start's maps are unpinned (Unpin removes next/, A's pins stay); after it
// this one forwards with the maps it programmed, moved in place of A's,
// so it stays.
func TestLifecycleReplacedFreshOrder(t *testing.T) {
	t.Run("start", func(t *testing.T) {
		h := replacedHost()
		r := newRun(t, h, lifeConfig)
		r.start()
		if got, want := h.steps.first(5), []string{"open", "apply", "attach", "take [192.0.2.10]", "READY=1"}; !slices.Equal(got, want) {
			t.Errorf("start steps %q, want %q", got, want)
		}
		if h.dp.restores != 0 || h.dp.detaches != 0 {
			t.Errorf("restored settings %d times, detached %d times: want neither", h.dp.restores, h.dp.detaches)
		}
	})
	for _, c := range []struct {
		name         string
		fail         func(h *fakeHost)
		want         string
		wantUnpinned bool
	}{
		{name: "apply", fail: func(h *fakeHost) { h.dp.applyErr = errFake }, want: "program data plane", wantUnpinned: true},
		{name: "attach", fail: func(h *fakeHost) { h.dp.attachErr = errFake }, want: "attach data plane", wantUnpinned: true},
		{name: "take VIPs", fail: func(h *fakeHost) { h.vips.takeErr = errFake }, want: "take VIPs on eth0"},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := replacedHost()
			c.fail(h)
			newRun(t, h, lifeConfig).mustFail(t, c.want)
			h.dp.mu.Lock()
			removed, unpinned, detaches, restores, closed := h.dp.removed, h.dp.unpinned, h.dp.detaches, h.dp.restores, h.dp.closed
			h.dp.mu.Unlock()
			if removed || detaches != 0 || restores != 0 {
				t.Errorf("removed %v, detached %d times, restored settings %d times: want none (the program attached forwards)", removed, detaches, restores)
			}
			if unpinned != c.wantUnpinned {
				t.Errorf("maps unpinned %v, want %v", unpinned, c.wantUnpinned)
			}
			if !c.wantUnpinned && !closed {
				t.Error("descriptors not closed")
			}
			if owned, _ := h.vips.Owned("eth0"); len(owned) != 0 {
				t.Errorf("VIPs %v left after the failed start", owned)
			}
		})
	}
}

// TestLifecycleReplacedFailedStartInDoubt: when a start on replaced maps
// cannot tell whether a program is attached already, it assumes so: a
// failure before its Attach unpins this start's maps (next/) and removes
// nothing else, rather than detaching what may forward.
func TestLifecycleReplacedFailedStartInDoubt(t *testing.T) {
	h := replacedHost()
	h.dp.foundAttached, h.dp.attachedErr = false, errFake
	h.dp.applyErr = errFake
	newRun(t, h, lifeConfig).mustFail(t, "program data plane")
	h.dp.mu.Lock()
	removed, unpinned, detaches := h.dp.removed, h.dp.unpinned, h.dp.detaches
	h.dp.mu.Unlock()
	if removed || detaches != 0 || !unpinned {
		t.Errorf("removed %v, detached %d times, unpinned %v; want only unpinned", removed, detaches, unpinned)
	}
}

// TestLifecycleFreshFailedStartWithdrawsFirst: a fresh start in BGP mode
// that fails once attached withdraws (and waits withdraw_wait) before it
// removes the data plane, which forwards meanwhile.
func TestLifecycleFreshFailedStartWithdrawsFirst(t *testing.T) {
	h := newFakeHost()
	h.neigh.macs[addrA], h.neigh.macs[addrB] = macA, macB
	h.bgp.announceErr = errFake
	newRun(t, h, bgpConfig).mustFail(t, "update BGP announcements")
	if stop, remove := h.steps.index("bgp stop"), h.steps.index("remove"); stop < 0 || remove < 0 || stop > remove {
		t.Errorf("steps %q: want bgp stop before remove", h.steps.first(100))
	}
}

// TestLifecycleFreshFailedStartInDoubt: when a fresh start cannot tell
// whether a program is attached already, its maps being fresh says none
// is: a failed start removes what it made rather than leaving its program
// attached with no lbd.
func TestLifecycleFreshFailedStartInDoubt(t *testing.T) {
	h := newFakeHost()
	h.neigh.macs[addrA], h.neigh.macs[addrB] = macA, macB
	h.dp.attachedErr = errFake
	h.bgp.announceErr = errFake
	newRun(t, h, bgpConfig).mustFail(t, "")
	if _, removed, _ := h.dp.state(); !removed {
		t.Errorf("steps %q: a failed fresh start left its data plane in place", h.steps.first(100))
	}
}

// TestLifecycleAdoptedNewVIPRetried: a new VIP an adopted start could not
// take after the Apply is taken by the loop's retry, and no longer retried
// once taken.
func TestLifecycleAdoptedNewVIPRetried(t *testing.T) {
	h := foundHost(false)
	h.vips.mu.Lock()
	h.vips.takeFails = true
	h.vips.mu.Unlock()
	r := newRun(t, h, adoptConfig)
	r.start()
	claim := fmt.Sprintf("claim [%s]", vipAPI)
	waitFor(t, "the loop's retry of api's VIP", func() bool { return h.steps.index(claim) >= 0 })
	h.vips.mu.Lock()
	owned := h.vips.owned[vipAPI]
	h.vips.mu.Unlock()
	if !owned {
		t.Fatalf("steps %q: api's VIP not held after the retry", h.steps.first(20))
	}
	n, ticks := strings.Count(strings.Join(h.vips.calls(), "\n"), "claim"), h.dp.attachChecks()
	waitFor(t, "five more ticks of the loop's retry", func() bool { return h.dp.attachChecks() >= ticks+5 })
	if m := strings.Count(strings.Join(h.vips.calls(), "\n"), "claim"); m != n {
		t.Errorf("VIPs claimed %d more times after api's was taken", m-n)
	}
}

// retryingTake starts an adopted lbd whose take of the new VIP (api's)
// fails, as does every retry, and waits for the loop's first retry.
func retryingTake(t *testing.T) (*fakeHost, *lbdRun) {
	h := foundHost(false)
	h.vips.mu.Lock()
	h.vips.takeFails, h.vips.claimFails = true, true
	h.vips.mu.Unlock()
	r := newRun(t, h, adoptConfig)
	r.start()
	waitFor(t, "the loop's first retry of api's VIP", func() bool { return h.steps.index(fmt.Sprintf("claim [%s] failed", vipAPI)) >= 0 })
	return h, r
}

// TestLifecycleAdoptedNewVIPRetryBacksOff: a retry that fails waits
// before the next (a take probes the segment for ~0.6 s): with the clock
// standing still, one failed retry and no more, however many ticks pass.
func TestLifecycleAdoptedNewVIPRetryBacksOff(t *testing.T) {
	h, _ := retryingTake(t)
	ticks := h.dp.attachChecks()
	waitFor(t, "five more ticks of the loop", func() bool { return h.dp.attachChecks() >= ticks+5 })
	if n := strings.Count(strings.Join(h.vips.calls(), "\n"), "claim"); n != 1 {
		t.Errorf("VIPs claimed %d times with the clock standing still; want 1, then a wait", n)
	}
}

// untakenViews is what the VIP record (lbd status), the metric
// dsrlb_vip_untaken and the status page show of the VIPs awaiting a
// retry, one line each, "" for none.
func untakenViews(t *testing.T, r *lbdRun) (record, metric, page string) {
	t.Helper()
	rec, err := ReadVIPRecord(r.vipRecord)
	if err != nil {
		t.Fatalf("read the VIP record: %v", err)
	}
	for _, u := range rec.Untaken {
		record += fmt.Sprintf("%s %q since %s next %s;", u.VIP, u.Error, u.Since.Format(time.TimeOnly), u.NextTry.Format(time.TimeOnly))
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collector{r.d, &flowCache{}})
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, m := range byName(mfs)["dsrlb_vip_untaken"].GetMetric() {
		metric += fmt.Sprintf("%s %v;", m.GetLabel()[0].GetValue(), m.GetGauge().GetValue())
	}
	p := &statusPage{d: r.d, marks: map[[2]string]stateMark{}}
	p.sample(time.Now())
	for _, u := range p.doc.VIPsUntaken {
		page += fmt.Sprintf("%s %q next %v;", u.VIP, u.Error, u.NextTry != nil)
	}
	return record, metric, page
}

// wantUntaken waits until the three views of untakenViews are want, up to
// waitFor's deadline.
func wantUntaken(t *testing.T, r *lbdRun, what, record, metric, page string) {
	t.Helper()
	var gr, gm, gp string
	deadline := time.Now().Add(5 * time.Second)
	for {
		if gr, gm, gp = untakenViews(t, r); gr == record && gm == metric && gp == page {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: VIPs awaiting a retry\nrecord %q\nmetric %q\npage   %q\nwant\nrecord %q\nmetric %q\npage   %q",
				what, gr, gm, gp, record, metric, page)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// startUntaken starts lbd B over A's data plane with api's VIP failing
// to be taken at start and at the loop's first retry, and checks the VIP
// is shown pending everywhere a VIP conflict is: the record (with the
// error, since when, and the next try, which the failed retry moved to
// one attach check later), the metric and the status page. The fake clock
// stands still: no second retry comes until it is advanced.
func startUntaken(t *testing.T) (*fakeHost, *lbdRun) {
	h, r := retryingTake(t)
	ticks := h.dp.attachChecks() // the next loop step begins once the retry's is over
	waitFor(t, "the loop's step after the retry", func() bool { return h.dp.attachChecks() > ticks })
	wantUntaken(t, r, "after the failed take and retry", `192.0.2.30 "fake failure" since 12:00:00 next 12:00:00;`, "192.0.2.30 1;", `192.0.2.30 "fake failure" next true;`)
	rec, _ := ReadVIPRecord(r.vipRecord)
	if u := rec.Untaken[0]; !u.Since.Equal(h.now) || !u.NextTry.Equal(h.now.Add(10*time.Millisecond)) {
		t.Errorf("pending since %v, next try %v: want the fake clock's time and one attach check (10ms) later", u.Since, u.NextTry)
	}
	if slices.Contains(rec.Added, vipAPI) {
		t.Errorf("VIP record lists %v as added while it is not taken", vipAPI)
	}
	return h, r
}

// TestLifecycleUntakenShownAtStart: the VIP the start failed to take is
// shown from READY=1 on, before any retry, the next try one attach check
// away.
func TestLifecycleUntakenShownAtStart(t *testing.T) {
	h := foundHost(false)
	h.vips.takeFails, h.attachEvery = true, time.Hour
	r := newRun(t, h, adoptConfig)
	r.start()
	wantUntaken(t, r, "after the failed take", `192.0.2.30 "fake failure" since 12:00:00 next 13:00:00;`, "192.0.2.30 1;", `192.0.2.30 "fake failure" next true;`)
	if n := strings.Count(strings.Join(h.vips.calls(), "\n"), "claim"); n != 0 {
		t.Errorf("VIPs claimed %d times: want no retry yet, the views shown by the start", n)
	}
}

// TestLifecycleUntakenShownUntilRetryTakes: a VIP awaiting a retry is
// shown until the retry takes it; then it is recorded as added.
func TestLifecycleUntakenShownUntilRetryTakes(t *testing.T) {
	h, r := startUntaken(t)
	h.vips.mu.Lock()
	h.vips.claimFails = false
	h.vips.mu.Unlock()
	h.advance(time.Second) // past the backoff
	wantUntaken(t, r, "after the retry took the VIP", "", "", "")
	if rec, _ := ReadVIPRecord(r.vipRecord); !slices.Contains(rec.Added, vipAPI) {
		t.Errorf("VIP record %v lacks %v, taken on retry", rec.Added, vipAPI)
	}
}

// TestLifecycleUntakenFoundHeld: a VIP the retry finds on the interface
// already (added by hand meanwhile; Claim adds nothing then) is held, so
// it is shown pending no longer: before, it stayed "not taken" for ever.
func TestLifecycleUntakenFoundHeld(t *testing.T) {
	h, r := startUntaken(t)
	h.vips.mu.Lock()
	h.vips.owned[vipAPI], h.vips.claimFails = true, false
	h.vips.mu.Unlock()
	h.advance(time.Second)
	wantUntaken(t, r, "after the retry found the VIP on the interface", "", "", "")
}

// TestLifecycleStaleVIPNotesDropped: an lbd that takes no VIPs (here
// vip_owner external) clears the conflicts and pending VIPs an earlier lbd
// recorded, which nothing would rewrite otherwise, and keeps what that lbd
// added, for lbd detach.
func TestLifecycleStaleVIPNotesDropped(t *testing.T) {
	h := newFakeHost()
	r := newRun(t, h, strings.Replace(lifeConfig, "interface: eth0", "interface: eth0\n  vip_owner: external", 1))
	stale := VIPRecord{Interface: "eth0", Added: []netip.Addr{vipWeb},
		Conflicts: []VIPConflict{{VIP: vipAPI, MAC: "02:00:00:00:00:99"}}, Untaken: []VIPUntaken{{VIP: vipAPI, Error: "old"}}}
	b, _ := json.Marshal(stale)
	if err := os.WriteFile(r.vipRecord, b, 0o644); err != nil {
		t.Fatal(err)
	}
	r.start()
	rec, err := ReadVIPRecord(r.vipRecord)
	if err != nil || len(rec.Untaken) != 0 || len(rec.Conflicts) != 0 || !slices.Equal(rec.Added, []netip.Addr{vipWeb}) {
		t.Fatalf("record after a start with vip_owner external: %+v, %v; want no conflict or pending VIP, %v still added", rec, err, vipWeb)
	}
}

// TestLifecycleUntakenClearedByReload: a reload takes every VIP, so the
// pending one is shown no longer (the clock standing still, no retry can
// have taken it); a reload whose take fails keeps it shown.
func TestLifecycleUntakenClearedByReload(t *testing.T) {
	h, r := startUntaken(t)
	if resp := r.call(control.CmdReload); resp.OK {
		t.Fatalf("reload succeeded with every take failing: %+v", resp)
	}
	wantUntaken(t, r, "after a rejected reload", `192.0.2.30 "fake failure" since 12:00:00 next 12:00:00;`, "192.0.2.30 1;", `192.0.2.30 "fake failure" next true;`)
	h.vips.mu.Lock()
	h.vips.claimFails = false
	h.vips.mu.Unlock()
	if resp := r.call(control.CmdReload); !resp.OK {
		t.Fatalf("reload: %+v", resp)
	}
	wantUntaken(t, r, "after a reload", "", "", "")
}

// TestLifecycleUntakenTurnsConflict: a retry that finds the VIP answered
// by another host shows it as a conflict, no longer as pending.
func TestLifecycleUntakenTurnsConflict(t *testing.T) {
	h, r := startUntaken(t)
	other, _ := net.ParseMAC("02:00:00:00:00:99")
	h.vips.mu.Lock()
	h.vips.claimFails, h.vips.claimAnswered = false, map[netip.Addr]net.HardwareAddr{vipAPI: other}
	h.vips.mu.Unlock()
	h.advance(time.Second)
	wantUntaken(t, r, "after the retry found the VIP answered elsewhere", "", "", "")
	rec, _ := ReadVIPRecord(r.vipRecord)
	if want := []VIPConflict{{VIP: vipAPI, MAC: other.String()}}; !slices.Equal(rec.Conflicts, want) {
		t.Errorf("VIP record conflicts %v, want %v", rec.Conflicts, want)
	}
}

// TestLifecycleAdoptedNewVIPAfterApply: a VIP new in the configuration is
// taken only once the Apply put its service in the maps; taking it then
// failing is reported and the start goes on (the maps are programmed:
// failing could no longer leave them as found).
func TestLifecycleAdoptedNewVIPAfterApply(t *testing.T) {
	h := foundHost(false)
	h.vips.takeErr = errFake
	r := newRun(t, h, adoptConfig)
	r.start()
	apply, take := h.steps.index("apply"), h.steps.index(fmt.Sprintf("take [%s]", vipAPI))
	if apply < 0 || take < apply {
		t.Errorf("steps %q: want api's VIP taken after the Apply", h.steps.first(10))
	}
	if r.n.index(0, "READY=1") < 0 {
		t.Error("no READY=1 after a failure to take a new VIP past the Apply")
	}
}

// apiBGP is B's configuration in BGP mode with api, a VIP A's data plane
// does not serve.
var apiBGP = bgpWebOnly + `  - name: api
    vip: 192.0.2.30
    ports: [8080]
    check: {type: none}
    servers:
      - {name: a, address: 192.0.2.11, weight: 1}
`

// TestLifecycleAdoptedBGPNewVIPAfterApply: in BGP mode, before the Apply
// only the VIPs the adopted data plane serves are announced; a new one
// only after.
func TestLifecycleAdoptedBGPNewVIPAfterApply(t *testing.T) {
	h := foundHost(true)
	r := newRun(t, h, apiBGP)
	r.start()
	web, apply, api := h.steps.index("announce "+vipWeb.String()), h.steps.index("apply"), h.steps.index("announce "+vipAPI.String())
	if web < 0 || apply < web || api < apply {
		t.Errorf("steps %q: want web announced before the Apply, api after", h.steps.first(10))
	}
}

// TestLifecycleAppliedPastCommit: an Apply past its commit point is in
// force: the announcements follow it, and lbd set answers that the
// setting holds.
func TestLifecycleAppliedPastCommit(t *testing.T) {
	h, r := startBGPResolved(t, bgpConfig)
	h.health.set("web/a", health.Up)
	h.health.set("web/b", health.Up)
	waitAnnounced(t, h, vipWeb, vipDNS)
	h.dp.mu.Lock()
	h.dp.applyErr = fmt.Errorf("apply services: %w: %w", datapath.ErrCommitted, errFake)
	h.dp.mu.Unlock()
	h.health.set("web/b", health.Down)
	waitAnnounced(t, h, vipDNS) // web below min_healthy 2
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := control.Call(ctx, r.sock, setReq("web/a", "drain"))
	if err != nil {
		t.Fatal(err)
	}
	if !resp.OK || !strings.Contains(resp.Message, "in force in the data plane, but retiring") {
		t.Errorf("lbd set answered %+v, want OK: the setting holds past the commit point", resp)
	}
	if got := h.dp.last(); got["web"]["a"] != datapath.Drain {
		t.Errorf("applied %v, want web/a drained", got)
	}
}

// mustFail runs lbd (up to 10 s) and requires its start to fail with an
// error containing want.
func (r *lbdRun) mustFail(t *testing.T, want string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := Run(ctx, r.options(nil)); err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("Run = %v, want a failed start (%q)", err, want)
	}
}
