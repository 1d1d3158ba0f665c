package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dsrlb/dsrlb/lbd/datapath"
)

// Issue 12: a start on an adopted data plane that fails after it began
// changing the kernel leaves that data plane as it found it: the services,
// backends and tables the previous lbd left, its reasons and lbd set
// files, and only the VIPs that were there.

var vipAPI = netip.MustParseAddr("192.0.2.30")

// adoptConfig is what lbd B starts with after lbd A ran lifeConfig2: web
// loses c, dns is gone, api (a new VIP) is added.
const adoptConfig = lifeConfig + `  - name: api
    vip: 192.0.2.30
    ports: [8080]
    servers:
      - {name: a, address: 192.0.2.11, weight: 1}
`

// adoptBGPConfig is B's configuration in BGP mode: dns is gone.
var adoptBGPConfig = bgpWebOnly

// foundHost is a host where lbd A, running lifeConfig2 (or bgpConfig)
// with web/c in maintenance, stopped: its services pinned and
// forwarding, its VIPs on the interface (ARP mode).
func foundHost(bgp bool) *fakeHost {
	h := newFakeHost()
	h.neigh.macs[addrA], h.neigh.macs[addrB], h.neigh.macs[addrC] = macA, macB, macC
	be := func(name string, a netip.Addr, mac []byte, st datapath.State) datapath.BackendStats {
		return datapath.BackendStats{Name: name, Addr: a, MAC: mac, State: st, Weight: 10}
	}
	web := datapath.ServiceStats{Name: "web", VIP: vipWeb, Proto: datapath.TCP, Ports: []uint16{80}, Backends: []datapath.BackendStats{
		be("a", addrA, macA, datapath.Up), be("b", addrB, macB, datapath.Up)}}
	if !bgp {
		web.Backends = append(web.Backends, be("c", addrC, macC, datapath.Down))
	}
	dns := datapath.ServiceStats{Name: "dns", VIP: vipDNS, Proto: datapath.UDP, Ports: []uint16{53}, Backends: []datapath.BackendStats{
		be("a", addrA, macA, datapath.Up)}}
	h.dp.adopted, h.dp.pinned = true, []datapath.ServiceStats{web, dns}
	if !bgp {
		h.vips.owned[vipWeb], h.vips.owned[vipDNS] = true, true
	}
	return h
}

// foundFiles writes the files lbd A left beside the data plane: why web/c
// is out of rotation, and its lbd set setting (B's configuration drops
// the server, so B would rewrite both).
func foundFiles(t *testing.T, r *lbdRun, opts *Options) (reasons, admin []byte) {
	t.Helper()
	opts.ReasonsFile = filepath.Join(r.dir, "lbd.reasons")
	reasons = []byte(`{"web/c": "maint (admin)"}` + "\n")
	doc := adminFileDoc{Note: "written by lbd A", Settings: []AdminSetting{{Service: "web", Server: "c",
		adminSetting: adminSetting{State: adminMaint, Since: time.Date(2026, 12, 1, 11, 0, 0, 0, time.UTC), Config: "192.0.2.13 weight 5"}}}}
	admin, _ = json.Marshal(doc)
	if err := os.WriteFile(opts.ReasonsFile, reasons, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(AdminFile(opts.ControlSocket), admin, 0o644); err != nil {
		t.Fatal(err)
	}
	return reasons, admin
}

// TestLifecycleAdoptedFailedStart: whichever late step fails, the adopted
// data plane keeps what A left: no Apply reached it, the reasons and lbd
// set files are unchanged, a VIP the start added is released (api's, new
// in B's configuration, is never taken before the Apply), BGP announces
// nothing and is withdrawn before anything is detached, READY=1 is never
// sent; a data plane found detached is detached again.
func TestLifecycleAdoptedFailedStart(t *testing.T) {
	// webGone: web's VIP, which A's data plane serves, is missing on the
	// interface, so B takes it before the Apply.
	webGone := func(h *fakeHost) { delete(h.vips.owned, vipWeb) }
	cases := []struct {
		name     string
		bgp      bool
		detached bool // the adopted data plane was found detached
		fail     func(h *fakeHost)
		want     string
		bgpStops int
		added    []netip.Addr // the VIPs the start added before failing
	}{
		{name: "probe", fail: func(h *fakeHost) { h.vips.probeErr = errFake }, want: "take VIPs on eth0"},
		{name: "attach", fail: func(h *fakeHost) { h.dp.attachErr = errFake }, want: "attach data plane to eth0"},
		{name: "take VIPs", fail: func(h *fakeHost) { webGone(h); h.vips.takeErr = errFake }, want: "take VIPs on eth0", added: []netip.Addr{vipWeb}},
		{name: "apply", fail: func(h *fakeHost) { h.dp.applyErr = errFake }, want: "program data plane"},
		{name: "apply, web's VIP taken", fail: func(h *fakeHost) { webGone(h); h.dp.applyErr = errFake }, want: "program data plane", added: []netip.Addr{vipWeb}},
		{name: "take VIPs, found detached", detached: true, fail: func(h *fakeHost) { webGone(h); h.vips.takeErr = errFake }, want: "take VIPs on eth0", added: []netip.Addr{vipWeb}},
		{name: "BGP speaker start", bgp: true, fail: func(h *fakeHost) { h.bgp.startErr = errFake }, want: "fake failure"},
		{name: "BGP announce", bgp: true, fail: func(h *fakeHost) { h.bgp.announceErr = errFake }, want: "update BGP announcements", bgpStops: 1},
		{name: "BGP apply", bgp: true, fail: func(h *fakeHost) { h.dp.applyErr = errFake }, want: "program data plane", bgpStops: 1},
		{name: "BGP apply, found detached", bgp: true, detached: true, fail: func(h *fakeHost) { h.dp.applyErr = errFake }, want: "program data plane", bgpStops: 1},
	}
	for _, c := range cases {
		t.Run(strings.ReplaceAll(c.name, " ", "_"), func(t *testing.T) {
			h := foundHost(c.bgp)
			h.dp.foundDetached = c.detached
			c.fail(h)
			yaml := adoptConfig
			if c.bgp {
				yaml = adoptBGPConfig
			}
			r := newRun(t, h, yaml)
			opts := r.options(nil)
			reasons, admin := foundFiles(t, r, &opts)
			before, _ := h.dp.Stats()
			vipsBefore, _ := h.vips.Owned("eth0")

			// A start that wrongly succeeds ends with the context, not
			// with the test binary's timeout.
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err := Run(ctx, opts)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Run = %v, want the failure %q", err, c.want)
			}
			if after, _ := h.dp.Stats(); h.dp.applies() != 0 || !reflect.DeepEqual(after, before) {
				t.Errorf("data plane after the failed start (%d applies):\n%+v\nwant as found:\n%+v", h.dp.applies(), after, before)
			}
			if _, removed, closed := h.dp.state(); removed || !closed {
				t.Errorf("adopted data plane removed %v, closed %v: want kept, descriptors closed", removed, closed)
			}
			if want := map[bool]int{false: 0, true: 1}[c.detached]; h.dp.detaches != want {
				t.Errorf("detached %d times, want %d (found detached: %v)", h.dp.detaches, want, c.detached)
			}
			if h.dp.restores != 1 {
				t.Errorf("settings restored %d times, want once", h.dp.restores)
			}
			if b, _ := os.ReadFile(opts.ReasonsFile); string(b) != string(reasons) {
				t.Errorf("reasons file %q after the failed start, want as found %q", b, reasons)
			}
			if b, _ := os.ReadFile(AdminFile(opts.ControlSocket)); string(b) != string(admin) {
				t.Errorf("lbd set file %s after the failed start, want as found %s", b, admin)
			}
			if owned, _ := h.vips.Owned("eth0"); !slices.Equal(owned, vipsBefore) {
				t.Errorf("VIPs %v after the failed start, want as found %v", owned, vipsBefore)
			}
			released := slices.ContainsFunc(h.vips.calls(), func(s string) bool { return strings.HasPrefix(s, "release-added") })
			if want := fmt.Sprintf("release-added %v", c.added); released != (len(c.added) > 0) ||
				released && !slices.Contains(h.vips.calls(), want) {
				t.Errorf("VIP calls %q: want the added VIPs %v released", h.vips.calls(), c.added)
			}
			if slices.Contains(h.vips.calls(), fmt.Sprintf("take [%s]", vipAPI)) {
				t.Errorf("VIP calls %q: api's VIP, new in the configuration, taken although the Apply did not succeed", h.vips.calls())
			}
			if stop, detach := h.steps.index("bgp stop"), h.steps.index("detach"); c.bgp && detach >= 0 && (stop < 0 || stop > detach) {
				t.Errorf("steps %q: the data plane detached before BGP withdrew", h.steps.first(100))
			}
			if rec, _ := ReadVIPRecord(r.vipRecord); slices.Contains(rec.Added, vipAPI) {
				t.Errorf("VIP record still lists %v as added", vipAPI)
			}
			if h.bgp.stopped != c.bgpStops || len(h.bgp.announced()) != 0 {
				t.Errorf("speaker stopped %d times, announcing %v: want stopped %d, nothing announced", h.bgp.stopped, h.bgp.announced(), c.bgpStops)
			}
			if r.n.index(0, "READY=1") >= 0 {
				t.Error("READY=1 sent by a failed start")
			}
		})
	}
}

// TestLifecycleAdoptedStartOrder: on an adopted data plane the maps are
// programmed last, after the attach and the VIPs; once the start
// succeeds the lbd set setting the configuration dropped is written.
func TestLifecycleAdoptedStartOrder(t *testing.T) {
	h := foundHost(false)
	r := newRun(t, h, adoptConfig)
	opts := r.options(nil)
	foundFiles(t, r, &opts)
	runReady(t, opts)
	if got, want := h.steps.first(5), []string{"open", "attach", "apply", "take [192.0.2.30]", "READY=1"}; !slices.Equal(got, want) {
		t.Errorf("start steps %q, want %q", got, want)
	}
	if h.dp.restores != 0 || h.dp.detaches != 0 {
		t.Errorf("a start that succeeded restored settings %d times, detached %d times", h.dp.restores, h.dp.detaches)
	}
	if sets, err := ReadAdminFile(AdminFile(opts.ControlSocket)); err != nil || len(sets) != 0 {
		t.Errorf("lbd set settings %+v, %v after the start: want web/c's dropped (no longer configured)", sets, err)
	}
	if got := h.dp.last(); len(got) != 2 || got["web"]["a"] != datapath.Up || got["api"] == nil {
		t.Errorf("applied %v, want web (a kept up) and api", got)
	}
}

// TestLifecycleAdoptedApplyPastCommit: an Apply that failed past its
// commit point has put the new services in force: the start goes on
// (failing would leave them with no lbd) and the loop finishes the job.
func TestLifecycleAdoptedApplyPastCommit(t *testing.T) {
	h := foundHost(false)
	h.dp.applyErr = fmt.Errorf("apply services: %w: write final backend states: %w", datapath.ErrCommitted, errFake)
	r := newRun(t, h, adoptConfig)
	opts := r.options(nil)
	opts.ReasonsFile = filepath.Join(r.dir, "lbd.reasons")
	if err := os.WriteFile(opts.ReasonsFile, []byte(`{"web/gone": "left by lbd A"}`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	runReady(t, opts)
	if i := r.n.index(0, "READY=1"); i < 0 {
		t.Fatal("no READY=1 after an Apply that put the new services in force")
	}
	// In force, so noted as applied: the reasons file is this start's.
	if b, err := os.ReadFile(opts.ReasonsFile); err != nil || strings.Contains(string(b), "web/gone") {
		t.Errorf("reasons file after an Apply past its commit point: %q, %v; want the new configuration's, not A's", b, err)
	}
	h.dp.mu.Lock()
	h.dp.applyErr = nil
	h.dp.mu.Unlock()
	waitFor(t, "the loop's retry of the Apply", func() bool { return h.dp.applies() > 0 })
	if got := h.dp.last(); got["api"] == nil {
		t.Errorf("applied %v, want the new configuration", got)
	}
}
