package daemon

import (
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/dsrlb/dsrlb/lbd/datapath"
	"github.com/dsrlb/dsrlb/lbd/health"
	"github.com/dsrlb/dsrlb/shared/config"
)

func mustParse(t *testing.T, yaml string) *config.Config {
	t.Helper()
	cfg, err := config.Parse("test.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

const twoServers = `
balancer: {interface: eth0}
services:
  - name: web
    vip: 192.0.2.10
    ports: [80]
    balance: roundrobin
    servers:
      - {name: a, address: 192.0.2.11, weight: 3}
      - {name: b, address: 192.0.2.12, weight: 0}
      - {name: c, address: 192.0.2.13, mac: "02:00:00:00:00:13", check: false}
      - {name: d, address: 192.0.2.14}
`

// TestDesired: health, MAC and weight decide each backend's state, and the
// reason a backend is out of rotation is reported.
func TestDesired(t *testing.T) {
	cfg := mustParse(t, twoServers)
	macA, _ := net.ParseMAC("02:00:00:00:00:11")
	macB, _ := net.ParseMAC("02:00:00:00:00:12")
	obs := observed{
		health: map[string]health.State{"web/a": health.Up, "web/b": health.Up, "web/c": health.Up, "web/d": health.Up},
		macs:   map[netip.Addr]net.HardwareAddr{netip.MustParseAddr("192.0.2.11"): macA, netip.MustParseAddr("192.0.2.12"): macB},
	}
	svcs, why := desired(cfg, obs)
	if len(svcs) != 1 || svcs[0].Scheduler != datapath.RoundRobin || svcs[0].Proto != datapath.TCP || svcs[0].Ports[0] != 80 {
		t.Fatalf("service = %+v", svcs)
	}
	want := map[string]datapath.State{"a": datapath.Up, "b": datapath.Drain, "c": datapath.Up, "d": datapath.Down}
	for _, b := range svcs[0].Backends {
		if b.State != want[b.Name] {
			t.Errorf("backend %s: state %v, want %v", b.Name, b.State, want[b.Name])
		}
	}
	if svcs[0].Backends[2].MAC.String() != "02:00:00:00:00:13" {
		t.Error("static MAC not used")
	}
	if !strings.Contains(why["web/d"], "no MAC") || !strings.Contains(why["web/b"], "draining") || why["web/a"] != "" {
		t.Errorf("reasons = %v", why)
	}

	obs.health["web/a"] = health.Down
	svcs, why = desired(cfg, obs)
	if svcs[0].Backends[0].State != datapath.Down || why["web/a"] != "health check failing" {
		t.Errorf("failing check did not take a down: %+v %v", svcs[0].Backends[0], why)
	}
	// The last failed check's error is the status reason; the same error
	// again changes nothing; coming up clears it.
	if !obs.noteFailure("web/a", "VIP 192.0.2.10:80 not answered") || obs.noteFailure("web/a", "VIP 192.0.2.10:80 not answered") {
		t.Error("noteFailure: want a change the first time only")
	}
	if _, why = desired(cfg, obs); why["web/a"] != "health check failing: VIP 192.0.2.10:80 not answered" {
		t.Errorf("reason of a failing check: %q", why["web/a"])
	}
	obs.noteCheck("web/a", health.Up)
	if obs.checkWhy["web/a"] != "" {
		t.Errorf("reason kept after the backend came up: %q", obs.checkWhy["web/a"])
	}
}

// TestHealthTargets: check: false becomes type none; the check port is the
// service's; Initial comes from the caller (the adopted data plane).
func TestHealthTargets(t *testing.T) {
	cfg := mustParse(t, twoServers)
	ts := healthTargets(cfg, func(svc string, a netip.Addr) health.State {
		if a == netip.MustParseAddr("192.0.2.11") {
			return health.Up
		}
		return health.Down
	})
	if len(ts) != 4 {
		t.Fatalf("%d targets", len(ts))
	}
	if ts[0].Key != "web/a" || ts[0].Addr.String() != "192.0.2.11:80" || ts[0].Initial != health.Up || ts[1].Initial != health.Down {
		t.Errorf("target a/b = %+v %+v", ts[0], ts[1])
	}
	if ts[2].Check.Type != config.CheckNone || ts[3].Check.Type != config.CheckTCP {
		t.Errorf("check types %v %v", ts[2].Check.Type, ts[3].Check.Type)
	}
	// Through the DSR path by default: the target names the service's VIP
	// and carries a static MAC.
	for _, tg := range ts {
		if tg.VIP != cfg.Services[0].VIP {
			t.Errorf("target %s: VIP %s, want the service's %s", tg.Key, tg.VIP, cfg.Services[0].VIP)
		}
	}
	if ts[3].Check.Via != config.ViaVIP {
		t.Errorf("target %s: via %q, want vip by default", ts[3].Key, ts[3].Check.Via)
	}
	if got := net.HardwareAddr(ts[2].MAC[:]).String(); got != "02:00:00:00:00:13" {
		t.Errorf("target %s: static MAC %s", ts[2].Key, got)
	}
}

// TestHealthTargetsOverride: a server's check_port and check_address are
// where its check connects; the others keep the service's port and their
// own address; the VIP goes with every target.
func TestHealthTargetsOverride(t *testing.T) {
	cfg := mustParse(t, `
balancer: {interface: eth0}
services:
  - name: web
    vip: 192.0.2.10
    ports: [80]
    servers:
      - {name: a, address: 192.0.2.11, check_port: 8080}
      - {name: b, address: 192.0.2.12, check_address: 198.51.100.12}
      - {name: c, address: 192.0.2.13, check_address: 2001:db8::13, check_port: 9000}
      - {name: d, address: 192.0.2.14}
`)
	ts := healthTargets(cfg, func(string, netip.Addr) health.State { return health.Down })
	want := []string{"192.0.2.11:8080", "198.51.100.12:80", "[2001:db8::13]:9000", "192.0.2.14:80"}
	for i, tg := range ts {
		if tg.Addr.String() != want[i] || tg.VIP != netip.MustParseAddr("192.0.2.10") {
			t.Errorf("target %s: checks %s (VIP %s), want %s (VIP 192.0.2.10)", tg.Key, tg.Addr, tg.VIP, want[i])
		}
	}
}

// TestRestartOnly: a reload refuses changes that resize or move the maps,
// naming each, and accepts everything else.
func TestRestartOnly(t *testing.T) {
	cur := mustParse(t, twoServers)
	same := mustParse(t, strings.Replace(twoServers, "weight: 3", "weight: 5", 1))
	if err := restartOnly(cur, same); err != nil {
		t.Errorf("service change refused: %v", err)
	}
	moved := mustParse(t, strings.Replace(twoServers, "interface: eth0", "interface: eth1, maglev_table_size: 251", 1))
	err := restartOnly(cur, moved)
	var es config.Errors
	if !errors.As(err, &es) || len(es) != 2 || !strings.Contains(es[0].Error(), "balancer.interface: changed; this takes a restart") {
		t.Errorf("restartOnly = %v", err)
	}
}

// TestRestartOnlyVIPOwner: handing the VIPs to keepalived (or back) takes a
// restart; adding BGP says so once, under bgp, though it changes the owner.
func TestRestartOnlyVIPOwner(t *testing.T) {
	cur := mustParse(t, twoServers)
	external := mustParse(t, strings.Replace(twoServers, "interface: eth0", "interface: eth0, vip_owner: external", 1))
	for _, c := range []struct{ from, to *config.Config }{{cur, external}, {external, cur}} {
		err := restartOnly(c.from, c.to)
		var es config.Errors
		if !errors.As(err, &es) || len(es) != 1 || !strings.Contains(es[0].Error(), "balancer.vip_owner: changed; this takes a restart") {
			t.Errorf("restartOnly %s -> %s = %v", c.from.Balancer.VIPOwner, c.to.Balancer.VIPOwner, err)
		}
	}
	if err := restartOnly(external, external); err != nil {
		t.Errorf("unchanged vip_owner external refused: %v", err)
	}
	bgp := mustParse(t, strings.Replace(twoServers, "interface: eth0", "interface: eth0, bgp: {asn: 64497, peers: [{address: 192.0.2.254, asn: 64496}]}", 1))
	err := restartOnly(cur, bgp)
	var es config.Errors
	if !errors.As(err, &es) || len(es) != 1 || !strings.Contains(es[0].Error(), "balancer.bgp: changed") {
		t.Errorf("restartOnly lbd -> bgp = %v, want one error about bgp", err)
	}
}

// TestVIPChanges: a reload takes and releases VIPs only when lbd owns
// them; with vip_owner external (keepalived) or BGP it touches none, even
// when services and their VIPs come and go.
func TestVIPChanges(t *testing.T) {
	withVIP := func(owner, vip string) *config.Config {
		y := strings.Replace(twoServers, "interface: eth0", "interface: eth0"+owner, 1)
		return mustParse(t, strings.Replace(y, "192.0.2.10", vip, 1))
	}
	v10, v20 := netip.MustParseAddr("192.0.2.10"), netip.MustParseAddr("192.0.2.20")
	take, release := vipChanges(withVIP("", "192.0.2.10"), withVIP("", "192.0.2.20"))
	if len(take) != 1 || take[0] != v20 || len(release) != 1 || release[0] != v10 {
		t.Errorf("vip_owner lbd: take %v release %v, want take [%s] release [%s]", take, release, v20, v10)
	}
	for _, owner := range []string{", vip_owner: external", ", bgp: {asn: 64497, peers: [{address: 192.0.2.254, asn: 64496}]}"} {
		take, release := vipChanges(withVIP(owner, "192.0.2.10"), withVIP(owner, "192.0.2.20"))
		if take != nil || release != nil {
			t.Errorf("balancer {interface: eth0%s}: take %v release %v, want nothing", owner, take, release)
		}
	}
}

// TestUpdateChecksFollowsChanges: a reload forgets the health of servers
// it removes, gives new ones the manager's state, keeps the observed state
// of unchanged ones, and skips the manager when no target changed.
func TestUpdateChecksFollowsChanges(t *testing.T) {
	const base = `
balancer: {interface: eth0}
services:
  - name: web
    vip: 192.0.2.10
    ports: [80]
    check: {type: none}
    servers:
      - {name: a, address: 192.0.2.11}
      - {name: b, address: 192.0.2.12}
`
	cfg0 := mustParse(t, base)
	cfg1 := mustParse(t, strings.Replace(base, "{name: b, address: 192.0.2.12}", "{name: c, address: 192.0.2.13}", 1))
	cfg2 := mustParse(t, strings.Replace(base, "{name: b, address: 192.0.2.12}", "{name: c, address: 192.0.2.13, weight: 2}", 1))
	d := &Daemon{cfg: cfg0, obs: observed{health: map[string]health.State{}}, dirty: make(chan struct{}, 1)}
	d.checks = health.New(t.Context(), health.Options{OnChange: d.onHealth})
	t.Cleanup(d.checks.Close)
	if err := d.updateChecks(cfg0, cfg0); err != nil {
		t.Fatal(err)
	}
	if d.obs.health["web/a"] != health.Up || d.obs.health["web/b"] != health.Up {
		t.Fatalf("check none: want both up, got %v", d.obs.health)
	}
	d.obs.health["web/a"] = health.Down // as if observed since: an unchanged target keeps it
	d.cfg = cfg1
	if err := d.updateChecks(cfg0, cfg1); err != nil {
		t.Fatal(err)
	}
	if _, ok := d.obs.health["web/b"]; ok {
		t.Error("removed server web/b still has an observed state")
	}
	if d.obs.health["web/c"] != health.Up || d.obs.health["web/a"] != health.Down {
		t.Errorf("after the reload: %v, want web/c up (new, check none) and web/a down (unchanged, as observed)", d.obs.health)
	}
	if len(d.checks.Status()) != 2 {
		t.Errorf("manager has %d targets, want 2", len(d.checks.Status()))
	}
	// A weight change changes no target: the manager is not called.
	d.cfg = cfg2
	before := d.targets.list
	if err := d.updateChecks(cfg1, cfg2); err != nil {
		t.Fatal(err)
	}
	if len(d.targets.list) != len(before) {
		t.Errorf("targets %d, want %d", len(d.targets.list), len(before))
	}
	if _, ok := d.checks.State("web/c"); !ok {
		t.Error("web/c lost its checker on a reload that changed no target")
	}
}
