package daemon

import (
	"log/slog"
	"net"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dsrlb/dsrlb/lbd/control"
	"github.com/dsrlb/dsrlb/lbd/datapath"
	"github.com/dsrlb/dsrlb/lbd/health"
	"github.com/dsrlb/dsrlb/lbd/notify"
	"github.com/dsrlb/dsrlb/lbd/statusjson"
)

const withFallback = `
balancer: {interface: eth0}
services:
  - name: web
    vip: 192.0.2.10
    ports: [80]
    on_failure: %s
    servers:
      - {name: a, address: 192.0.2.11, mac: "02:00:00:00:00:11"}
      - {name: b, address: 192.0.2.12, mac: "02:00:00:00:00:12", weight: 4}
    fallback:
      - {name: sorry, address: 192.0.2.13, mac: "02:00:00:00:00:13"}
      - {name: sorry2, address: 192.0.2.14}
`

func u32(v uint32) *uint32 { return &v }

// TestDesiredFallbackAndAdmin: a table over health, on_failure and lbd
// set: the state of each backend (a, b, sorry, sorry2), the reasons that
// matter, and whether the fallback is active.
func TestDesiredFallbackAndAdmin(t *testing.T) {
	mac14, _ := net.ParseMAC("02:00:00:00:00:14")
	up := health.Up
	type row struct {
		name      string
		onFailure string
		health    map[string]health.State // missing: Down
		noMAC14   bool
		admin     map[string]adminSetting
		fresh     time.Time // a fresh start's time
		want      string    // states of a b sorry sorry2: u(p) d(rain) x (down)
		reasons   map[string]string
		active    bool
	}
	all := map[string]health.State{"web/a": up, "web/b": up, "web/sorry": up, "web/sorry2": up}
	without := func(keys ...string) map[string]health.State {
		m := map[string]health.State{}
		for k, v := range all {
			m[k] = v
		}
		for _, k := range keys {
			delete(m, k)
		}
		return m
	}
	rows := []row{
		{name: "primaries up: fallbacks stand by", onFailure: "down", health: all, want: "uudd",
			reasons: map[string]string{"web/sorry": reasonStandby}},
		{name: "one primary down", onFailure: "down", health: without("web/a"), want: "xudd"},
		{name: "every primary down: fallbacks take over", onFailure: "down", health: without("web/a", "web/b"), want: "xxuu", active: true},
		{name: "failed fallback stays down", onFailure: "down", health: without("web/a", "web/b", "web/sorry"), want: "xxxu", active: true},
		{name: "every fallback down too: nothing active", onFailure: "down", health: without("web/a", "web/b", "web/sorry"), noMAC14: true, want: "xxxx"},
		{name: "fresh start: fallbacks held while the primaries rise", onFailure: "down", health: without("web/a", "web/b"), fresh: time.Now(), want: "xxdd",
			reasons: map[string]string{"web/sorry": reasonHeld}},
		{name: "fresh start long ago: no hold", onFailure: "down", health: without("web/a", "web/b"), fresh: time.Now().Add(-time.Hour), want: "xxuu", active: true},
		{name: "fallback without MAC is down", onFailure: "down", health: without("web/a", "web/b"), noMAC14: true, want: "xxux", active: true},
		{name: "on_failure drain keeps failed primaries' flows; fallback takes the new ones", onFailure: "drain",
			health: without("web/a", "web/b"), want: "dduu", active: true,
			reasons: map[string]string{"web/a": "health check failing (on_failure: drain: established flows stay, no new ones)"}},
		{name: "on_failure drain with one primary failing", onFailure: "drain", health: without("web/b"), want: "udd" + "d"},
		{name: "admin drain of every primary activates the fallback", onFailure: "down", health: all,
			admin: map[string]adminSetting{"web/a": {State: adminDrain}, "web/b": {State: adminDrain}}, want: "dduu", active: true,
			reasons: map[string]string{"web/a": reasonDrain}},
		{name: "admin maint is down, even when healthy", onFailure: "drain", health: all,
			admin: map[string]adminSetting{"web/a": {State: adminMaint}}, want: "xudd", reasons: map[string]string{"web/a": reasonMaint}},
		{name: "maint beats a failing check under on_failure drain", onFailure: "drain", health: without("web/a"),
			admin: map[string]adminSetting{"web/a": {State: adminMaint}}, want: "xudd"},
		{name: "admin weight 0 drains", onFailure: "down", health: all,
			admin: map[string]adminSetting{"web/b": {Weight: u32(0)}}, want: "udd" + "d",
			reasons: map[string]string{"web/b": "weight 0 (admin): draining"}},
		{name: "admin drain of a failed server: the check wins (down)", onFailure: "down", health: without("web/a"),
			admin: map[string]adminSetting{"web/a": {State: adminDrain}}, want: "xudd"},
		{name: "admin drain of a fallback", onFailure: "down", health: without("web/a", "web/b"),
			admin: map[string]adminSetting{"web/sorry": {State: adminDrain}}, want: "xxdu", active: true},
	}
	for _, r := range rows {
		t.Run(r.name, func(t *testing.T) {
			cfg := mustParse(t, strings.Replace(withFallback, "%s", r.onFailure, 1))
			obs := observed{health: r.health, macs: map[netip.Addr]net.HardwareAddr{}, admin: r.admin, fresh: r.fresh}
			if !r.noMAC14 {
				obs.macs[netip.MustParseAddr("192.0.2.14")] = mac14
			}
			svcs, why := desired(cfg, obs)
			got := ""
			for _, b := range svcs[0].Backends {
				got += map[datapath.State]string{datapath.Up: "u", datapath.Drain: "d", datapath.Down: "x"}[b.State]
			}
			if got != r.want {
				t.Errorf("states %s, want %s (reasons %v)", got, r.want, why)
			}
			for k, want := range r.reasons {
				if why[k] != want {
					t.Errorf("reason of %s = %q, want %q", k, why[k], want)
				}
			}
			if a := FallbackActive(&cfg.Services[0], svcs[0]); a != r.active {
				t.Errorf("fallback active %t, want %t", a, r.active)
			}
		})
	}
}

// TestAdminWeightOverride: lbd set weight replaces the configured weight
// in the data plane.
func TestAdminWeightOverride(t *testing.T) {
	cfg := mustParse(t, strings.Replace(withFallback, "%s", "down", 1))
	obs := observed{health: map[string]health.State{"web/a": health.Up, "web/b": health.Up}, admin: map[string]adminSetting{"web/b": {Weight: u32(9)}}}
	svcs, _ := desired(cfg, obs)
	if b := svcs[0].Backends[1]; b.Weight != 9 || b.State != datapath.Up {
		t.Errorf("backend b = %+v, want weight 9 up", b)
	}
}

// adminDaemon is a Daemon with just what record needs (doSet is record
// and an apply, which needs a data plane: integration/fallback_admin_test.go).
func adminDaemon(t *testing.T, yaml string) *Daemon {
	t.Helper()
	d := &Daemon{cfg: mustParse(t, yaml), log: slog.New(slog.DiscardHandler), dirty: make(chan struct{}, 1),
		opts: Options{ControlSocket: filepath.Join(t.TempDir(), "lbd-test.sock")},
		obs:  observed{health: map[string]health.State{}}}
	d.adm.loaded, d.adm.started = true, true
	return d
}

func set(d *Daemon, req control.Request) control.Response {
	resp, _ := d.record(req)
	return resp
}

func setReq(target, action string, weight ...int) control.Request {
	svc, srv, _ := strings.Cut(target, "/")
	r := control.Request{Command: control.CmdSet, Service: svc, Server: srv, Action: action}
	if len(weight) > 0 {
		r.Weight = &weight[0]
	}
	return r
}

// TestSetRefusals: unknown names, actions and weights are refused with
// what to give instead, and nothing is recorded.
func TestSetRefusals(t *testing.T) {
	d := adminDaemon(t, strings.Replace(withFallback, "%s", "down", 1))
	for _, c := range []struct {
		req  control.Request
		want string
	}{
		{setReq("api/a", "drain"), `unknown service "api": this lbd serves web`},
		{setReq("web/z", "drain"), `unknown server "z" in service web: its servers are a, b, sorry, sorry2`},
		{setReq("web/a", "pause"), `unknown action "pause": give drain, maint, ready or weight N`},
		{setReq("web/a", "weight", 257), "weight must be 0-256"},
		{setReq("web/a", "weight", -1), "weight must be 0-256"},
		{setReq("web/a", "weight"), "weight must be 0-256"},
	} {
		resp := set(d, c.req)
		if resp.OK || !strings.Contains(resp.Message, c.want) {
			t.Errorf("%+v: %+v, want refusal %q", c.req, resp, c.want)
		}
	}
	if len(d.obs.admin) != 0 {
		t.Errorf("refused requests recorded %v", d.obs.admin)
	}
	if _, err := os.Stat(d.adminPath()); !os.IsNotExist(err) {
		t.Errorf("refused requests wrote the settings file: %v", err)
	}
}

// TestSetRecordedAndIdempotent: a setting is recorded in the file at once;
// the same request twice changes nothing the second time; ready removes
// it.
func TestSetRecordedAndIdempotent(t *testing.T) {
	d := adminDaemon(t, strings.Replace(withFallback, "%s", "down", 1))
	set(d, setReq("web/a", "drain"))
	if got := d.obs.admin["web/a"]; got.State != adminDrain || !strings.Contains(got.Config, "address=192.0.2.11") {
		t.Fatalf("setting %+v", got)
	}
	sets, err := ReadAdminFile(d.adminPath())
	if err != nil || len(sets) != 1 || sets[0].Service != "web" || sets[0].Server != "a" || sets[0].Label() != "drain (admin)" {
		t.Fatalf("file %+v %v", sets, err)
	}
	before, _ := os.ReadFile(d.adminPath())
	resp := set(d, setReq("web/a", "drain"))
	if !resp.OK || !strings.Contains(resp.Message, "unchanged, already drain (admin)") {
		t.Errorf("second drain: %+v", resp)
	}
	after, _ := os.ReadFile(d.adminPath())
	if string(before) != string(after) {
		t.Error("a repeated request rewrote the settings file")
	}
	set(d, setReq("web/a", "weight", 7))
	if sets, _ := ReadAdminFile(d.adminPath()); len(sets) != 1 || sets[0].Label() != "drain, weight 7 (admin)" {
		t.Errorf("after weight: %+v", sets)
	}
	set(d, setReq("web/a", "ready"))
	if sets, _ := ReadAdminFile(d.adminPath()); len(sets) != 0 || len(d.obs.admin) != 0 {
		t.Errorf("after ready: file %+v, daemon %v", sets, d.obs.admin)
	}
	if resp := set(d, setReq("web/a", "ready")); !resp.OK || !strings.Contains(resp.Message, "unchanged") {
		t.Errorf("second ready: %+v", resp)
	}
}

// TestSettingsRestoredAndPruned: a new daemon (an lbd restart) reads the
// settings back; a configuration that changes a server drops its setting
// (and only its), also from the file.
func TestSettingsRestoredAndPruned(t *testing.T) {
	yaml := strings.Replace(withFallback, "%s", "down", 1)
	d := adminDaemon(t, yaml)
	set(d, setReq("web/a", "maint"))
	set(d, setReq("web/b", "drain"))
	set(d, setReq("web/sorry", "weight", 3))

	restarted := adminDaemon(t, yaml)
	restarted.opts = d.opts
	restarted.adm.loaded = false
	restarted.syncAdmin()
	if len(restarted.obs.admin) != 3 || restarted.obs.admin["web/a"].State != adminMaint {
		t.Fatalf("restored %v", restarted.obs.admin)
	}
	// A reload: b's weight changes, sorry is removed; a stays as it was.
	restarted.cfg = mustParse(t, strings.NewReplacer("weight: 4", "weight: 5",
		"      - {name: sorry, address: 192.0.2.13, mac: \"02:00:00:00:00:13\"}\n", "").Replace(yaml))
	restarted.syncAdmin()
	if _, ok := restarted.obs.admin["web/a"]; !ok || len(restarted.obs.admin) != 1 {
		t.Errorf("after the reload: %v, want only web/a's setting", restarted.obs.admin)
	}
	if sets, _ := ReadAdminFile(d.adminPath()); len(sets) != 1 || sets[0].Server != "a" {
		t.Errorf("file after the reload: %+v", sets)
	}
}

// TestNoteChanges: after the first apply (the baseline), each state change
// reaches the notifier; a fallback's events say so.
func TestNoteChanges(t *testing.T) {
	d := adminDaemon(t, strings.Replace(withFallback, "%s", "down", 1))
	out := filepath.Join(t.TempDir(), "events")
	hook := filepath.Join(t.TempDir(), "hook")
	os.WriteFile(hook, []byte("#!/bin/sh\necho \"$DSRLB_SERVER $DSRLB_OLD_STATE $DSRLB_NEW_STATE $DSRLB_FALLBACK $DSRLB_REASON\" >> "+out+"\n"), 0o755)
	d.cfg.Balancer.Notify = nil
	d.openAdmin()
	defer d.closeAdmin()
	d.adm.notifier.Set(nil)
	step := func(h map[string]health.State) {
		d.obs.health = h
		svcs, why := desired(d.cfg, d.obs)
		d.noteChanges(svcs, why)
	}
	up := health.Up
	d.obs.macs = map[netip.Addr]net.HardwareAddr{netip.MustParseAddr("192.0.2.14"): {2, 0, 0, 0, 0, 0x14}}
	step(map[string]health.State{"web/a": up, "web/b": up, "web/sorry": up, "web/sorry2": up}) // baseline
	setHook(d, hook)
	step(map[string]health.State{"web/b": up, "web/sorry": up, "web/sorry2": up})
	step(map[string]health.State{"web/sorry": up, "web/sorry2": up})
	want := "a up down 0 health check failing\nb up down 0 health check failing\nsorry drain up 1 \nsorry2 drain up 1 \n"
	var got string
	waitUntil(t, func() bool {
		b, _ := os.ReadFile(out)
		got = string(b)
		return strings.Count(got, "\n") >= 4
	})
	if got != want {
		t.Errorf("events:\n%s\nwant:\n%s", got, want)
	}
}

func setHook(d *Daemon, path string) {
	d.adm.notifier.Set(&notify.Command{Path: path, Timeout: 5 * time.Second})
}

func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(10 * time.Second); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatal("condition not met within 10s")
		}
	}
}

// TestStatusMarks: the status schema marks fallbacks, fallback activity
// and lbd set's settings, and the page shows them.
func TestStatusMarks(t *testing.T) {
	cfg := mustParse(t, strings.Replace(withFallback, "%s", "down", 1))
	svcs := []statusjson.Service{{Name: "web", Backends: []statusjson.Backend{
		{Name: "a", State: "down", Weight: 1}, {Name: "b", State: "drain", Weight: 4},
		{Name: "sorry", State: "up", Weight: 1}, {Name: "sorry2", State: "up", Weight: 1}}}}
	markFallbacks(&cfg.Services[0], &svcs[0])
	MarkAdmin(svcs, []AdminSetting{{Service: "web", Server: "b", adminSetting: adminSetting{State: adminDrain}}})
	s := svcs[0]
	if !s.FallbackActive || s.Backends[0].Fallback || !s.Backends[2].Fallback || s.Backends[1].Admin != "drain (admin)" || s.Backends[0].Admin != "" {
		t.Fatalf("marks %+v", s)
	}
	rec := httptest.NewRecorder()
	renderStatusPage(rec, statusjson.Status{Services: svcs})
	for _, want := range []string{"fallback active", "sorry (fallback)", `class="state drain">drain (admin)<`} {
		if !strings.Contains(rec.Body.String(), want) {
			t.Errorf("status page lacks %q", want)
		}
	}
	svcs[0].Backends[0].State = "up"
	markFallbacks(&cfg.Services[0], &svcs[0])
	if svcs[0].FallbackActive {
		t.Error("fallback active with a primary up")
	}
}
