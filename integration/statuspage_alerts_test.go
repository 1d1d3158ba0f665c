package integration

import (
	"context"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dsrlb/dsrlb/integration/topo"
	"github.com/dsrlb/dsrlb/lbd/daemon"
	"github.com/dsrlb/dsrlb/lbd/statusjson"
)

// TestStatusPageAlerts: the page's script renders what a real lbd seldom
// shows on demand: VIP conflicts, a VIP awaiting a retry, a detached program, a read error, a BGP
// peer down, a draining backend with its reason and rates in KiB/s; it
// clears the alerts when the next document has none, and says the figures
// are stale when lbd stops answering. lbd's own page handler serves chosen
// documents inside a namespace of the test; Chromium reads the page.
func TestStatusPageAlerts(t *testing.T) {
	s := begin(t, "status-page-alerts-in-chromium")
	s.needRoot()
	s.needChromium()
	tp := mustTopology(t, topo.Options{})
	now := time.Now().UTC()
	since, next := now.Add(-90*time.Second), now.Add(8*time.Second)
	alerting := statusjson.Status{SchemaVersion: 1, Interface: "eth0", Generated: now, Attached: false,
		NotAttached: "program replaced by another", ReadError: "read data plane counters: test",
		RateInterval: 2,
		Services: []statusjson.Service{{Name: "web", VIP: "192.0.2.10", Protocol: "tcp", Ports: []uint16{80}, Scheduler: "roundrobin",
			Rates: &statusjson.Rates{Packets: 12, Bytes: 3072, NewFlows: 1.5},
			Backends: []statusjson.Backend{{Name: "b1", Address: "192.0.2.11", MAC: "00:00:5e:00:53:0b", State: "drain",
				StateReason: "weight 0: draining", StateSince: &since, Rates: &statusjson.Rates{Bytes: 3072}}}}},
		VIPConflicts: []statusjson.VIPConflict{{VIP: "192.0.2.20", MAC: "00:00:5e:00:53:99"}},
		VIPsUntaken:  []statusjson.VIPUntaken{{VIP: "192.0.2.30", Error: "add 192.0.2.30/32 to eth0: permission denied", Since: since, NextTry: &next}},
		BGP:          &statusjson.BGP{ASN: 64512, Peers: []statusjson.BGPPeer{{Address: "192.0.2.1", ASN: 64500, State: "active"}}},
		ARPGuard: &statusjson.ARPGuard{Running: true, Mode: "lbd", Conflicts: []statusjson.ARPConflict{{VIP: "192.0.2.10", MAC: "00:00:5e:00:53:0c",
			Backends: []statusjson.ARPBackend{{Service: "web", Name: "b2", Address: "192.0.2.12"}}, SeenAs: "ARP reply", Since: since, LastSeen: since, Frames: 3}}},
	}
	calm := alerting
	calm.ARPGuard = &statusjson.ARPGuard{Running: true, Mode: "lbd", Conflicts: []statusjson.ARPConflict{}}
	calm.Attached, calm.NotAttached, calm.ReadError, calm.VIPConflicts, calm.VIPsUntaken = true, "", "", []statusjson.VIPConflict{}, []statusjson.VIPUntaken{}
	calm.BGP = &statusjson.BGP{ASN: 64512, Peers: []statusjson.BGPPeer{{Address: "192.0.2.1", ASN: 64500, State: "established", Up: true}}}
	var doc atomic.Pointer[statusjson.Status]
	var down atomic.Bool
	doc.Store(&alerting)
	pages := daemon.StatusHandler(func() statusjson.Status { return *doc.Load() })
	var ln net.Listener
	if err := tp.Balancer.NS.Do(func() (err error) { ln, err = net.Listen("tcp", "127.0.0.1:0"); return err }); err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if down.Load() {
			http.Error(w, "gone", http.StatusServiceUnavailable)
			return
		}
		pages.ServeHTTP(w, r)
	}), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	br, err := topo.StartBrowser(tp.Balancer.NS, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := br.Close(); err != nil {
			t.Error(err)
		}
	})
	ctx := ctxFor(t, 60*time.Second)
	page, err := br.Open(ctx, "http://"+ln.Addr().String()+"/")
	if err != nil {
		t.Fatal(err)
	}
	// After the script's first refresh, what it rendered is on screen.
	waitText(ctx, t, page, `Number(document.body.dataset.refreshes) >= 1 ? document.body.innerText : ""`, "the script's first rendering",
		"VIP 192.0.2.20 NOT TAKEN", "PROGRAM NOT ATTACHED: program replaced by another", "read data plane counters: test",
		statusjson.UntakenText(alerting.VIPsUntaken[0], now), // the script's text is the server's
		"BGP peer 192.0.2.1 is active", "weight 0: draining",
		"VIP 192.0.2.10 ANSWERED BY 00:00:5e:00:53:0c = backend web/b2 (192.0.2.12): arp_ignore/arp_announce reset? run hostprep", "ARP guard (vip_owner lbd): 1 conflict(s)", "3.0 KiB", "1.5", "roundrobin", "1m30s ago")
	keepScreenshot(ctx, t, page, "status-page-alerts.png")

	doc.Store(&calm)
	waitText(ctx, t, page, `document.getElementById("alerts").innerText.trim() === "" ? document.getElementById("bgp-body").innerText : ""`,
		"alerts cleared, BGP established", "established")
	waitText(ctx, t, page, `document.getElementById("arpguard").innerText`, "the ARP guard line", "ARP guard (vip_owner lbd): no other MAC answers for a VIP")

	down.Store(true)
	waitText(ctx, t, page, `getComputedStyle(document.getElementById("stale")).display !== "none" ? document.getElementById("stale").innerText : ""`,
		"the stale banner", "not answering")
}

// waitText evaluates expr until its text contains every want, for at most
// 20s.
func waitText(ctx context.Context, t *testing.T, page *topo.Page, expr, what string, want ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	var text string
	for {
		err := page.Eval(ctx, expr, &text)
		missing := ""
		for _, w := range want {
			if !strings.Contains(text, w) {
				missing = w
				break
			}
		}
		if err == nil && missing == "" {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("status page: %s: %q not shown within 20s (%v); page text:\n%s", what, missing, err, text)
		case <-time.After(200 * time.Millisecond):
		}
	}
}
