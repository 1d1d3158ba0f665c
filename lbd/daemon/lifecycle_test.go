package daemon

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dsrlb/dsrlb/lbd/control"
	"github.com/dsrlb/dsrlb/lbd/datapath"
	"github.com/dsrlb/dsrlb/lbd/health"
)

// In-process lifecycle tests: the real Run against a fakeHost
// (fakes_test.go), from start to stop, through the control socket and the
// SIGHUP channel as `lbd reload` and systemd use them.

const lifeConfig = `balancer:
  interface: eth0
  pin_path: PIN
  metrics: {listen: ""}
services:
  - name: web
    vip: 192.0.2.10
    ports: [80]
    servers:
      - {name: a, address: 192.0.2.11, weight: 10}
      - {name: b, address: 192.0.2.12, weight: 10}
`

// lifeConfig2 adds a server and a service.
const lifeConfig2 = lifeConfig + `      - {name: c, address: 192.0.2.13, weight: 5}
  - name: dns
    vip: 192.0.2.20
    protocol: udp
    ports: [53]
    check: {type: none}
    servers:
      - {name: a, address: 192.0.2.11, weight: 1}
`

var (
	addrA, addrB, addrC = netip.MustParseAddr("192.0.2.11"), netip.MustParseAddr("192.0.2.12"), netip.MustParseAddr("192.0.2.13")
	vipWeb, vipDNS      = netip.MustParseAddr("192.0.2.10"), netip.MustParseAddr("192.0.2.20")
	macA, _             = net.ParseMAC("02:00:00:00:00:11")
	macB, _             = net.ParseMAC("02:00:00:00:00:12")
	macC, _             = net.ParseMAC("02:00:00:00:00:13")
)

// lbdRun is one in-process Run and the files it was given.
type lbdRun struct {
	t                             *testing.T
	h                             *fakeHost
	n                             *notes
	dir, cfgPath, sock, vipRecord string
	runningCopy, bgpStatus        string
	reload                        chan struct{}
	cancel                        context.CancelFunc
	done                          chan error
	d                             *Daemon // the one start runs, to look inside
}

// newRun writes yaml (PIN replaced by a temp directory) and prepares a
// Run against h; start starts it.
func newRun(t *testing.T, h *fakeHost, yaml string) *lbdRun {
	dir := t.TempDir()
	r := &lbdRun{t: t, h: h, n: &notes{steps: h.steps}, dir: dir, cfgPath: filepath.Join(dir, "lbd.yaml"),
		sock: filepath.Join(dir, "lbd.sock"), vipRecord: filepath.Join(dir, "lbd.vips"),
		runningCopy: filepath.Join(dir, "lbd.running.yaml"), bgpStatus: filepath.Join(dir, "lbd.bgp.json"),
		reload: make(chan struct{}, 1)}
	r.write(yaml)
	return r
}

func (r *lbdRun) write(yaml string) {
	r.t.Helper()
	if err := os.WriteFile(r.cfgPath, []byte(strings.ReplaceAll(yaml, "PIN", filepath.Join(r.dir, "pin"))), 0o644); err != nil {
		r.t.Fatal(err)
	}
}

func (r *lbdRun) options(ready chan<- struct{}) Options {
	return Options{
		ConfigPath: r.cfgPath, Notify: r.n.notify, Reload: r.reload, Ready: ready,
		RunningCopy: r.runningCopy, VIPRecord: r.vipRecord, ControlSocket: r.sock, BGPStatusFile: r.bgpStatus,
		Version: "test", Watchdog: 20 * time.Millisecond, sys: r.h.system(),
	}
}

// start runs lbd until the test ends and waits for it to be ready.
func (r *lbdRun) start() {
	r.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	r.cancel, r.done = cancel, make(chan error, 1)
	r.d = newDaemon(r.options(ready))
	go func() { r.done <- r.d.run(ctx) }()
	r.t.Cleanup(func() { cancel(); <-r.done })
	select {
	case <-ready:
	case err := <-r.done:
		r.done <- err // for the cleanup, which would wait forever
		r.t.Fatalf("Run returned before ready: %v", err)
	case <-time.After(5 * time.Second):
		r.t.Fatal("lbd not ready after 5s")
	}
}

// runReady runs lbd with opts until the test ends and waits for it to be
// ready (opts.Ready is its own).
func runReady(t *testing.T, opts Options) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	opts.Ready = ready
	done := make(chan error, 1)
	go func() { done <- Run(ctx, opts) }()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case <-ready:
	case err := <-done:
		done <- err // for the cleanup, which would wait forever
		t.Fatalf("Run returned before ready: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("lbd not ready after 5s")
	}
}

// stop ends Run and returns what it returned.
func (r *lbdRun) stop() error {
	r.t.Helper()
	r.cancel()
	select {
	case err := <-r.done:
		r.done <- err // for the cleanup
		return err
	case <-time.After(5 * time.Second):
		r.t.Fatal("Run did not return 5s after its context ended")
		return nil
	}
}

// call sends one control command, as `lbd reload` does.
func (r *lbdRun) call(cmd string) control.Response {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := control.Call(ctx, r.sock, control.Request{Command: cmd})
	if err != nil {
		r.t.Fatalf("control %s: %v", cmd, err)
	}
	return resp
}

// waitState waits until the last Apply gives backend be of service svc state s.
func (r *lbdRun) waitState(svc, be string, s datapath.State) {
	r.t.Helper()
	waitFor(r.t, svc+"/"+be+" "+s.String()+" in the data plane", func() bool {
		st, ok := r.h.dp.last()[svc][be]
		return ok && st == s
	})
}

// startResolved starts lbd on lifeConfig with every backend's MAC known
// and a's checks passing.
func startResolved(t *testing.T) (*fakeHost, *lbdRun) {
	h := newFakeHost()
	h.neigh.macs[addrA], h.neigh.macs[addrB], h.neigh.macs[addrC] = macA, macB, macC
	r := newRun(t, h, lifeConfig)
	r.start()
	h.health.set("web/a", health.Up)
	r.waitState("web", "a", datapath.Up)
	return h, r
}

// TestLifecycleStart: a fresh start checks, programs and attaches the data
// plane, takes the VIP, and only then says READY=1; backends enter
// rotation as their checks and MACs arrive.
func TestLifecycleStart(t *testing.T) {
	h := newFakeHost()
	h.neigh.macs[addrA] = macA // already in the neighbour table
	r := newRun(t, h, lifeConfig)
	r.start()

	// DESIGN §4: the data plane is programmed and attached before the VIP
	// draws traffic to it, and READY=1 comes last.
	if got, want := h.steps.first(5), []string{"open", "apply", "attach", "take [192.0.2.10]", "READY=1"}; !slices.Equal(got, want) {
		t.Errorf("start steps %q, want %q", got, want)
	}
	if attached, removed, _ := h.dp.state(); attached != 1 || removed {
		t.Errorf("attached %d times, removed %v: want attached once, not removed", attached, removed)
	}
	if h.dp.applies() == 0 {
		t.Fatal("ready before the data plane was programmed")
	}
	// A fresh start knows no health yet: every backend starts Down.
	if got := h.dp.last()["web"]; got["a"] != datapath.Down || got["b"] != datapath.Down {
		t.Errorf("first apply %v: want a and b down until checked", got)
	}
	if got := h.health.initial(); len(got) != 2 || got["web/a"] != health.Down || got["web/b"] != health.Down {
		t.Errorf("health targets %v: want web/a and web/b starting down", got)
	}
	if got := h.neigh.addrs(); !slices.Equal(got, []netip.Addr{addrA, addrB}) {
		t.Errorf("neighbours watched %v, want %v", got, []netip.Addr{addrA, addrB})
	}
	if got := h.vips.calls(); !slices.Equal(got, []string{"prepare eth0 [192.0.2.10]", "take [192.0.2.10]"}) {
		t.Errorf("VIP calls %q: want prepare then take of the VIP", got)
	}
	rec, err := ReadVIPRecord(r.vipRecord)
	if err != nil || !slices.Equal(rec.Added, []netip.Addr{vipWeb}) || !rec.Updated.Equal(h.now) {
		t.Errorf("VIP record %+v, %v: want the VIP added at the fake clock's time", rec, err)
	}
	if b, err := os.ReadFile(r.runningCopy); err != nil || !strings.Contains(string(b), "name: web") {
		t.Errorf("running copy not kept: %v", err)
	}
	i := r.n.index(0, "READY=1")
	if i < 0 || !strings.Contains(r.n.all()[i], "STATUS=1 services, 2 servers, 2 out of rotation") {
		t.Fatalf("notifications %q: want READY=1 with the status line", r.n.all())
	}
	waitFor(t, "a watchdog ping", func() bool { return r.n.index(0, "WATCHDOG=1") >= 0 })
	if resp := r.call(control.CmdPing); !resp.OK || resp.Message != "lbd test" {
		t.Errorf("ping = %+v", resp)
	}

	// a passes its checks: it has a MAC, so it is in. b passes too, but
	// only enters once its MAC is resolved.
	h.health.set("web/a", health.Up)
	r.waitState("web", "a", datapath.Up)
	h.health.set("web/b", health.Up)
	waitFor(t, "STATUS= naming b alone out of rotation", func() bool {
		return r.n.index(0, "STATUS=1 services, 2 servers, 1 out of rotation (web/b)") >= 0
	})
	if got := h.dp.last()["web"]["b"]; got != datapath.Down {
		t.Fatalf("b is %v without a MAC, want down", got)
	}
	h.neigh.set(addrB, macB)
	r.waitState("web", "b", datapath.Up)
	waitFor(t, "STATUS= with nothing out of rotation", func() bool {
		return r.n.index(0, "STATUS=1 services, 2 servers, 0 out of rotation") >= 0
	})
	if resp := r.call(control.CmdStatus); !resp.OK || !strings.HasPrefix(resp.Message, "1 services, 2 servers, 0 out of rotation") {
		t.Errorf("control status = %+v", resp)
	}
}

// TestLifecycleHealthFlap: a backend whose checks fail leaves the data
// plane's desired tables at once and comes back when they pass again; the
// other backend stays up throughout.
func TestLifecycleHealthFlap(t *testing.T) {
	h, r := startResolved(t)
	h.health.set("web/b", health.Up)
	r.waitState("web", "b", datapath.Up)

	for round := range 2 {
		h.health.set("web/a", health.Down)
		r.waitState("web", "a", datapath.Down)
		if got := h.dp.last()["web"]["b"]; got != datapath.Up {
			t.Fatalf("round %d: b is %v while a is down, want up", round, got)
		}
		waitFor(t, "STATUS= naming a out of rotation", func() bool {
			return r.n.index(0, "STATUS=1 services, 2 servers, 1 out of rotation (web/a)") >= 0
		})
		h.health.set("web/a", health.Up)
		r.waitState("web", "a", datapath.Up)
	}
	// A MAC lost (neighbour FAILED) takes a backend out like a failed check.
	h.neigh.set(addrB, nil)
	r.waitState("web", "b", datapath.Down)
	h.neigh.set(addrB, macB)
	r.waitState("web", "b", datapath.Up)
}

// TestLifecycleReloadRefusedForRoom: a reload the data plane has no room
// for (datapath.Fits) is refused before anything changes: no VIP claimed,
// no check added, nothing applied, the running configuration kept; before,
// it was taken into force and its Apply failed on every retry, the running
// services' health changes with it.
func TestLifecycleReloadRefusedForRoom(t *testing.T) {
	h, r := startResolved(t)
	applies, claims, updates := h.dp.applies(), len(h.vips.calls()), h.health.updates
	h.dp.mu.Lock()
	h.dp.fitsErr = fmt.Errorf("%w: fake", datapath.ErrCapacity)
	h.dp.mu.Unlock()
	r.write(lifeConfig2)
	resp := r.call(control.CmdReload)
	if resp.OK || !strings.Contains(strings.Join(resp.Errors, "\n"), "not enough room in the data plane") {
		t.Fatalf("reload verdict %+v; want refused for room", resp)
	}
	if n := h.dp.applies(); n != applies {
		t.Errorf("%d applies after the refused reload, want %d", n, applies)
	}
	if n := len(h.vips.calls()); n != claims {
		t.Errorf("VIP calls %q after the refused reload: want none more", h.vips.calls()[claims:])
	}
	if h.health.updates != updates {
		t.Errorf("health updated %d times, want %d: the new checks must not run", h.health.updates, updates)
	}
	if got := h.dp.last(); len(got) != 1 {
		t.Errorf("applied %v: want the running configuration (web alone)", got)
	}
}

// TestLifecycleReloadGood: a reload through the control socket answers
// with its verdict, programs the new services, claims the new VIP, adds
// the new checks (existing ones keep their state) and says so in STATUS=.
func TestLifecycleReloadGood(t *testing.T) {
	h, r := startResolved(t)

	r.write(lifeConfig2)
	from := len(r.n.all())
	resp := r.call(control.CmdReload)
	if !resp.OK || resp.Message != "configuration reloaded: 2 services, 4 servers" {
		t.Fatalf("reload verdict %+v", resp)
	}
	got := h.dp.last()
	if len(got) != 2 || got["web"]["c"] != datapath.Down || got["web"]["a"] != datapath.Up || got["dns"]["a"] != datapath.Up {
		t.Errorf("applied after reload %v: want web (a up, c down until checked) and dns (check none: up)", got)
	}
	if init := h.health.initial(); len(init) != 4 || init["web/c"] != health.Down {
		t.Errorf("health targets after reload %v: want 4, web/c new and down", init)
	}
	if st, _ := h.health.State("web/a"); st != health.Up || h.health.updates != 2 {
		t.Errorf("web/a %v after %d updates: want one more Update keeping it up", st, h.health.updates)
	}
	if calls := h.vips.calls(); calls[len(calls)-1] != "claim [192.0.2.20]" {
		t.Errorf("VIP calls %q: want the new VIP claimed last", calls)
	}
	if rec, _ := ReadVIPRecord(r.vipRecord); !slices.Equal(rec.Added, []netip.Addr{vipWeb, vipDNS}) {
		t.Errorf("VIP record %v, want both VIPs", rec.Added)
	}
	if b, _ := os.ReadFile(r.runningCopy); !strings.Contains(string(b), "name: dns") {
		t.Error("running copy is not the reloaded file")
	}
	i := r.n.index(from, "RELOADING=1")
	j := r.n.index(max(i, 0), "READY=1\nSTATUS=2 services, 4 servers")
	if i < 0 || j < 0 || !strings.HasSuffix(r.n.all()[j], "last reload ok at 12:00:00") {
		t.Errorf("notifications %q: want RELOADING=1 then READY=1 with the reload's outcome", r.n.all()[from:])
	}

	// Back to one service: its VIP is released once the data plane no
	// longer serves it, and its checks are forgotten. SIGHUP this time.
	r.write(lifeConfig)
	from = len(r.n.all())
	r.reload <- struct{}{}
	waitFor(t, "the SIGHUP reload's READY=1", func() bool { return r.n.index(from, "READY=1\nSTATUS=1 services, 2 servers") >= 0 })
	if got := h.dp.last(); len(got) != 1 {
		t.Errorf("applied after the second reload %v, want web alone", got)
	}
	if calls := h.vips.calls(); calls[len(calls)-1] != "release-added [192.0.2.20]" {
		t.Errorf("VIP calls %q: want the VIP that left released (recorded as lbd's)", calls)
	}
	if init := h.health.initial(); len(init) != 2 {
		t.Errorf("health targets %v, want web's two", init)
	}
}

// TestLifecycleReloadBad: a broken file, a restart-only change and an
// off-link backend are each rejected with file:line (or the field), and
// the running configuration stays: nothing new is applied or taken.
func TestLifecycleReloadBad(t *testing.T) {
	h, r := startResolved(t)

	h.offLink[netip.MustParseAddr("198.51.100.7")] = true
	cases := []struct{ name, yaml, want string }{
		{"unknown key", strings.Replace(lifeConfig2, "    protocol: udp\n", "    protocol: udp\n    colour: blue\n", 1),
			r.cfgPath + ":16: services[1]: unknown field \"colour\""},
		{"restart only", strings.Replace(lifeConfig2, "interface: eth0", "interface: eth1", 1),
			"balancer.interface: changed; this takes a restart"},
		{"off-link", strings.Replace(lifeConfig2, "{name: c, address: 192.0.2.13", "{name: c, address: 198.51.100.7", 1),
			r.cfgPath + ":12: service web, server c: 198.51.100.7 is not on-link from eth0"},
	}
	for _, c := range cases {
		applies, vipCalls, targets := h.dp.applies(), len(h.vips.calls()), h.health.initial()
		r.write(c.yaml)
		resp := r.call(control.CmdReload)
		if resp.OK || resp.Message != "reload rejected; the running configuration stays" || len(resp.Errors) == 0 {
			t.Fatalf("%s: verdict %+v, want rejected with reasons", c.name, resp)
		}
		if !slices.ContainsFunc(resp.Errors, func(e string) bool { return strings.Contains(e, c.want) }) {
			t.Errorf("%s: reasons %q, want one containing %q", c.name, resp.Errors, c.want)
		}
		if h.dp.applies() != applies || len(h.vips.calls()) != vipCalls || len(h.health.initial()) != len(targets) {
			t.Errorf("%s: a rejected reload changed the data plane, the VIPs or the checks", c.name)
		}
		// The loop publishes the status line once the verdict is sent.
		waitFor(t, c.name+": the old configuration and the rejection in the status", func() bool {
			st := r.call(control.CmdStatus).Message
			return strings.HasPrefix(st, "1 services, 2 servers") && strings.Contains(st, "last reload rejected at 12:00:00")
		})
	}
	// A reload the health checker refuses takes back the VIP it claimed:
	// nothing of the rejected configuration stays behind.
	h.health.mu.Lock()
	h.health.updateErr = errFake
	h.health.mu.Unlock()
	r.write(lifeConfig2)
	resp := r.call(control.CmdReload)
	if resp.OK || !slices.ContainsFunc(resp.Errors, func(e string) bool { return strings.Contains(e, "update health checks") }) {
		t.Errorf("reload with the checker refusing: %+v", resp)
	}
	if calls := h.vips.calls(); !slices.Equal(calls[len(calls)-2:], []string{"claim [192.0.2.20]", "release-added [192.0.2.20]"}) {
		t.Errorf("VIP calls %q: want the new VIP claimed, then it alone released (not the running one)", calls)
	}
	if rec, _ := ReadVIPRecord(r.vipRecord); !slices.Equal(rec.Added, []netip.Addr{vipWeb}) {
		t.Errorf("VIP record %v after the rejected reload, want web's alone", rec.Added)
	}
	if owned, _ := h.vips.Owned("eth0"); !slices.Equal(owned, []netip.Addr{vipWeb}) {
		t.Errorf("VIPs %v after the rejected reload, want web's alone", owned)
	}
	h.health.mu.Lock()
	h.health.updateErr = nil
	h.health.mu.Unlock()

	// The old configuration is the one in force: health events still
	// reach the data plane under it.
	h.health.set("web/b", health.Up)
	r.waitState("web", "b", datapath.Up)
	if got := h.dp.last(); len(got) != 1 || len(got["web"]) != 2 {
		t.Errorf("applied %v, want the running configuration (web: a, b)", got)
	}
	if b, _ := os.ReadFile(r.runningCopy); strings.Contains(string(b), "name: dns") {
		t.Error("the running copy took a rejected file")
	}
}

// TestLifecycleStop: stopping says STOPPING=1, closes the observers and
// the data plane's descriptors, and leaves program, maps and VIPs in
// place (DESIGN §3: forwarding continues until a new lbd adopts them).
func TestLifecycleStop(t *testing.T) {
	h := newFakeHost()
	r := newRun(t, h, lifeConfig)
	r.start()
	if err := r.stop(); err != nil {
		t.Fatalf("Run returned %v after a clean stop, want nil", err)
	}
	if all := h.steps.first(100); all[len(all)-1] != "STOPPING=1" {
		t.Errorf("steps %q: want STOPPING=1 last, nothing undone after it", all)
	}
	if _, removed, closed := h.dp.state(); removed || !closed {
		t.Errorf("data plane removed %v, closed %v: want left pinned and closed", removed, closed)
	}
	if !h.health.closed || !h.neigh.closed {
		t.Error("health checks or neighbour watch left running")
	}
	if owned, _ := h.vips.Owned("eth0"); !slices.Equal(owned, []netip.Addr{vipWeb}) {
		t.Errorf("VIPs after stop %v: want the VIP kept", owned)
	}
	if _, err := os.Stat(r.sock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("control socket left behind: %v", err)
	}
}

// TestLifecycleRestartAdopts: a start on an adopted data plane keeps the
// backends that were up there up (no flow moves on restart) and does not
// remove the data plane when the start then fails.
func TestLifecycleRestartAdopts(t *testing.T) {
	h := newFakeHost()
	h.dp.adopted = true
	h.dp.pinned = []datapath.ServiceStats{{VIP: vipWeb, Proto: datapath.TCP, Ports: []uint16{80}, Backends: []datapath.BackendStats{
		{Addr: addrA, MAC: macA, State: datapath.Up},
		{Addr: addrB, MAC: macB, State: datapath.Down},
	}}, {VIP: vipWeb, Proto: datapath.TCP, Ports: []uint16{8080}, Backends: []datapath.BackendStats{
		{Addr: addrB, MAC: macB, State: datapath.Up}, // another service: not b of web
	}}}
	r := newRun(t, h, lifeConfig)
	r.start()
	if got := h.dp.last()["web"]; got["a"] != datapath.Up || got["b"] != datapath.Down {
		t.Errorf("first apply after adopting %v: want a kept up (pinned MAC and state), b down", got)
	}
	if got := h.health.initial(); got["web/a"] != health.Up || got["web/b"] != health.Down {
		t.Errorf("health targets start %v: want a up as pinned", got)
	}
	r.stop()

	h2 := newFakeHost()
	h2.dp.adopted, h2.dp.attachErr = true, errFake
	err := Run(context.Background(), newRun(t, h2, lifeConfig).options(nil))
	if err == nil || !strings.Contains(err.Error(), "attach data plane to eth0") {
		t.Fatalf("Run = %v, want the attach failure", err)
	}
	if _, removed, closed := h2.dp.state(); removed || !closed {
		t.Errorf("failed start on an adopted data plane: removed %v, closed %v; want kept and closed", removed, closed)
	}
}

// TestLifecycleFailedStart: a start that fails undoes what it did, and
// one refused in preflight touches nothing.
func TestLifecycleFailedStart(t *testing.T) {
	t.Run("take VIPs", func(t *testing.T) {
		h := newFakeHost()
		h.vips.takeErr = errFake
		r := newRun(t, h, lifeConfig)
		err := Run(context.Background(), r.options(nil))
		if err == nil || !strings.Contains(err.Error(), "take VIPs on eth0") {
			t.Fatalf("Run = %v, want the VIP failure", err)
		}
		if owned, _ := h.vips.Owned("eth0"); len(owned) != 0 {
			t.Errorf("VIPs %v left after a failed start", owned)
		}
		if _, removed, _ := h.dp.state(); !removed {
			t.Error("the data plane this start created was left attached")
		}
		if rec, _ := ReadVIPRecord(r.vipRecord); len(rec.Added) != 0 {
			t.Errorf("VIP record still lists %v", rec.Added)
		}
		if r.n.index(0, "READY=1") >= 0 {
			t.Error("READY=1 sent by a failed start")
		}
	})
	t.Run("privileges", func(t *testing.T) {
		h := newFakeHost()
		h.privileges = ErrPrivileges
		err := Run(context.Background(), newRun(t, h, lifeConfig).options(nil))
		if !errors.Is(err, ErrPrivileges) || h.dp.opened != 0 || len(h.vips.calls()) != 0 {
			t.Errorf("Run = %v, data plane opened %d times, VIP calls %q: want refused before any change", err, h.dp.opened, h.vips.calls())
		}
	})
	t.Run("off-link", func(t *testing.T) {
		h := newFakeHost()
		h.offLink[addrB] = true
		r := newRun(t, h, lifeConfig)
		err := Run(context.Background(), r.options(nil))
		if err == nil || !strings.Contains(err.Error(), r.cfgPath+":11: service web, server b") || h.dp.opened != 0 {
			t.Errorf("Run = %v (data plane opened %d times): want file:line of b, nothing opened", err, h.dp.opened)
		}
	})
	t.Run("incompatible maps", func(t *testing.T) {
		h := newFakeHost()
		h.dp.openErr = datapath.ErrIncompatible
		err := Run(context.Background(), newRun(t, h, lifeConfig).options(nil))
		if !errors.Is(err, datapath.ErrIncompatible) || !strings.Contains(err.Error(), "--replace-incompatible") {
			t.Errorf("Run = %v, want the incompatible maps and what to do", err)
		}
	})
}

// TestLifecycleRepairsDetached: a program found detached is attached
// again by the loop; while re-attaching fails, lbd keeps trying and keeps
// serving.
func TestLifecycleRepairsDetached(t *testing.T) {
	h, r := startResolved(t)
	dp := h.dp
	set := func(detached bool, err error) {
		dp.mu.Lock()
		dp.detached, dp.reattachErr = detached, err
		dp.mu.Unlock()
	}
	reattached := func() int { dp.mu.Lock(); defer dp.mu.Unlock(); return dp.reattached }
	set(true, errFake)
	waitFor(t, "two re-attach attempts", func() bool { return reattached() >= 2 })
	if resp := r.call(control.CmdPing); !resp.OK {
		t.Errorf("lbd not answering while re-attaching fails: %+v", resp)
	}
	set(true, nil)
	waitFor(t, "the program attached again", func() bool { return dp.CheckAttached() == nil })
	n := reattached()
	h.health.set("web/b", health.Up) // a loop step after the repair
	r.waitState("web", "b", datapath.Up)
	if got := reattached(); got != n {
		t.Errorf("re-attached %d more times once attached", got-n)
	}
}

// TestLifecycleRestartKeepsFailingDrainOut: a backend of an on_failure:
// drain service is pinned as Drain while its checks fail; a restart must
// start it down (as the reasons file the last lbd wrote says), not seed it
// up as a drained healthy backend and send it new flows until it fails fall
// more checks.
func TestLifecycleRestartKeepsFailingDrainOut(t *testing.T) {
	h := newFakeHost()
	h.dp.adopted = true
	h.dp.pinned = []datapath.ServiceStats{{VIP: vipWeb, Proto: datapath.TCP, Ports: []uint16{80}, Backends: []datapath.BackendStats{
		{Addr: addrA, MAC: macA, State: datapath.Up},
		{Addr: addrB, MAC: macB, State: datapath.Drain},
	}}}
	r := newRun(t, h, strings.Replace(lifeConfig, "    ports: [80]\n", "    ports: [80]\n    on_failure: drain\n", 1))
	opts := r.options(nil)
	opts.ReasonsFile = filepath.Join(r.dir, "lbd.reasons")
	if err := os.WriteFile(opts.ReasonsFile, []byte(`{"web/b": "health check failing (on_failure: drain: established flows stay, no new ones)"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	runReady(t, opts)
	if got := h.health.initial(); got["web/a"] != health.Up || got["web/b"] != health.Down {
		t.Errorf("health targets start %v: want a up, b down (pinned Drain while failing)", got)
	}
	if got := h.dp.last()["web"]; got["b"] == datapath.Up {
		t.Errorf("first apply after adopting %v: b is failing and must not take new flows", got)
	}
}
