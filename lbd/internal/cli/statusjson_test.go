package cli

import (
	"encoding/json"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/dsrlb/dsrlb/lbd/daemon"
	"github.com/dsrlb/dsrlb/lbd/datapath"
	"github.com/dsrlb/dsrlb/shared/config"
)

// TestStatusDocSchema: `lbd status --json` writes string enums, MACs as
// aa:bb:..., the scheduler from the configuration, and a reason for every
// backend not up.
func TestStatusDocSchema(t *testing.T) {
	cfg := &config.Config{Balancer: config.Balancer{Interface: "eth0", PinPath: "/sys/fs/bpf/x", Conntrack: config.Conntrack{Size: 4096}},
		Services: []config.Service{{Name: "web", Balance: config.RoundRobin}}}
	mac, _ := net.ParseMAC("00:00:5e:00:53:0b")
	st := datapath.Stats{Reasons: map[datapath.Reason]datapath.Counters{datapath.ReasonRedirect: {Packets: 7}},
		Services: []datapath.ServiceStats{{Name: "web", VIP: netip.MustParseAddr("192.0.2.10"), Proto: datapath.UDP,
			Backends: []datapath.BackendStats{
				{Name: "b1", Addr: netip.MustParseAddr("192.0.2.11"), MAC: mac, State: datapath.Up, Weight: 2},
				{Name: "b2", Addr: netip.MustParseAddr("192.0.2.12"), MAC: mac, State: datapath.Down},
				{Name: "b3", Addr: netip.MustParseAddr("192.0.2.13"), State: datapath.Down},
				{Name: "b4", Addr: netip.MustParseAddr("192.0.2.14"), MAC: mac, State: datapath.Drain},
			}}}}
	b, err := json.Marshal(statusDoc(cfg, st, datapath.ConntrackStats{Entries: 3}, nil, daemonJSON{Running: true, PID: 42}))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for _, want := range []string{
		`"schema_version":1`, `"protocol":"udp"`, `"scheduler":"roundrobin"`, `"ports":[]`, `"mac":"00:00:5e:00:53:0b"`,
		`"state":"up"`, `"state":"down","state_reason":"health check failing"`,
		`"state_reason":"no MAC: 192.0.2.13 does not answer ARP/ND on the balancer interface"`,
		`"state":"drain","state_reason":"weight 0: draining"`, `"verdicts":{`, `"redirect":7`,
		`"conntrack":{"entries":3,"limit":4096`, `"daemon":{"running":true,"pid":42}`, `"vip_conflicts":[]`,
	} {
		if !strings.Contains(s, want) {
			t.Errorf("lbd status --json lacks %s:\n%s", want, s)
		}
	}
	if strings.Contains(s, `"AABeAFML"`) || strings.Contains(s, `"State":`) {
		t.Errorf("internal encoding leaked: %s", s)
	}
	down := statusDoc(cfg, st, datapath.ConntrackStats{}, nil, daemonJSON{})
	if r := down.Services[0].Backends[1].StateReason; !strings.Contains(r, "lbd is not running") {
		t.Errorf("reason with lbd stopped: %q, want it to say the state is as last written", r)
	}
}

// TestStatusReasonFromDaemon: a backend down for its checks shows the
// daemon's recorded reason (which check failed, and how); a recorded
// reason that disagrees with the maps (the backend has no MAC now) is not
// shown.
func TestStatusReasonFromDaemon(t *testing.T) {
	cfg := &config.Config{Services: []config.Service{{Name: "web"}}}
	mac, _ := net.ParseMAC("00:00:5e:00:53:0b")
	st := datapath.Stats{Services: []datapath.ServiceStats{{Name: "web", VIP: netip.MustParseAddr("192.0.2.10"),
		Backends: []datapath.BackendStats{
			{Name: "b1", Addr: netip.MustParseAddr("192.0.2.11"), MAC: mac, State: datapath.Down},
			{Name: "b2", Addr: netip.MustParseAddr("192.0.2.12"), State: datapath.Down},
		}}}}
	why := "health check failing: 3 consecutive failed tcp checks, last: VIP 192.0.2.10:80 not answered by 192.0.2.11 through the DSR path (no SYN-ACK within the check timeout): is hostprep applied (VIP on lo)?"
	d := daemonJSON{Running: true, Reasons: map[string]string{"web/b1": why, "web/b2": why}}
	doc := statusDoc(cfg, st, datapath.ConntrackStats{}, nil, d)
	if r := doc.Services[0].Backends[0].StateReason; r != why {
		t.Errorf("reason of a backend failing its checks: %q, want %q", r, why)
	}
	if r := doc.Services[0].Backends[1].StateReason; !strings.HasPrefix(r, "no MAC") {
		t.Errorf("reason of a backend without a MAC: %q, want no MAC", r)
	}
}

// TestStatusShowsUntaken: a VIP the running lbd failed to take and
// retries is an alert line of lbd status, with the error and when the
// next try is, and a vips_untaken entry of --json; with no lbd running it
// says nobody retries, and the JSON has no next_try.
func TestStatusShowsUntaken(t *testing.T) {
	cfg := &config.Config{Balancer: config.Balancer{Interface: "eth0"}}
	since := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	u := daemon.VIPUntaken{VIP: netip.MustParseAddr("192.0.2.30"), Error: "add 192.0.2.30/32 to eth0: permission denied",
		Since: since, NextTry: time.Now().Add(8*time.Second + 400*time.Millisecond)}
	for _, c := range []struct {
		running         bool
		text, json, not string
	}{
		{true, "VIP 192.0.2.30 NOT TAKEN YET: no traffic is drawn to it; taking it failed since 2026-12-01T12:00:00Z: add 192.0.2.30/32 to eth0: permission denied; retrying in 8s",
			`"vips_untaken":[{"vip":"192.0.2.30","error":"add 192.0.2.30/32 to eth0: permission denied","since":"2026-12-01T12:00:00Z","next_try":"`, ""},
		{false, "VIP 192.0.2.30 NOT TAKEN YET: no traffic is drawn to it; taking it failed since 2026-12-01T12:00:00Z: add 192.0.2.30/32 to eth0: permission denied; no lbd runs to retry (the next lbd start takes it)",
			`"vips_untaken":[{"vip":"192.0.2.30","error":"add 192.0.2.30/32 to eth0: permission denied","since":"2026-12-01T12:00:00Z"}]`, "next_try"},
	} {
		d := daemonJSON{Running: c.running, VIPsUntaken: []daemon.VIPUntaken{u}}
		var out strings.Builder
		printDaemon(&out, d)
		if !strings.Contains(out.String(), c.text+"\n") {
			t.Errorf("lbd status (running %v):\n%s\nwant the line %q", c.running, out.String(), c.text)
		}
		b, err := json.Marshal(statusDoc(cfg, datapath.Stats{}, datapath.ConntrackStats{}, nil, d))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), c.json) || (c.not != "" && strings.Contains(string(b), c.not)) {
			t.Errorf("lbd status --json (running %v):\n%s\nwant %s, not %q", c.running, b, c.json, c.not)
		}
	}
	b, _ := json.Marshal(statusDoc(cfg, datapath.Stats{}, datapath.ConntrackStats{}, nil, daemonJSON{Running: true}))
	if !strings.Contains(string(b), `"vips_untaken":[]`) {
		t.Errorf("lbd status --json with nothing pending: %s, want \"vips_untaken\":[]", b)
	}
}
