package daemon

import (
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/dsrlb/dsrlb/lbd/statusjson"
)

// TestStatusPageRenders: the server-side rendering shows what the script
// later refreshes: services, backends with state and reason, alerts; and
// names are escaped.
func TestStatusPageRenders(t *testing.T) {
	since := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	next := since.Add(8 * time.Second)
	doc := statusjson.Status{SchemaVersion: statusjson.SchemaVersion, Generated: since, Interface: "eth0", Version: "1.2.3",
		NotAttached: "program replaced by <other>",
		Services: []statusjson.Service{{Name: "web", VIP: "192.0.2.10", Protocol: "tcp", Ports: []uint16{80, 443}, Scheduler: "maglev",
			Backends: []statusjson.Backend{
				{Name: "b1", Address: "192.0.2.11", MAC: "02:00:00:00:00:01", State: "up", Weight: 1, StateSince: &since},
				{Name: "b2", Address: "192.0.2.12", State: "down", StateReason: "health check failing", StateSince: &since},
			}}},
		VIPConflicts: []statusjson.VIPConflict{{VIP: "192.0.2.20", MAC: "02:00:00:00:00:99"}},
		VIPsUntaken:  []statusjson.VIPUntaken{{VIP: "192.0.2.30", Error: "add <addr>: denied", Since: since, NextTry: &next}},
		BGP:          &statusjson.BGP{Peers: []statusjson.BGPPeer{{Address: "192.0.2.1", State: "active"}}},
	}
	rec := httptest.NewRecorder()
	renderStatusPage(rec, doc)
	body := rec.Body.String()
	for _, want := range []string{
		`data-backend="b1"`, `class="state up">up<`, `class="state down">down<`, "health check failing", "192.0.2.10:80,443",
		"maglev", "03:04:05", "VIP 192.0.2.20 NOT TAKEN", "BGP peer 192.0.2.1 is active", "program replaced by &lt;other&gt;",
		"VIP 192.0.2.30 NOT TAKEN YET: no traffic is drawn to it; taking it failed since 2026-01-02T03:04:05Z: add &lt;addr&gt;: denied; retrying in 8s",
		`fetch("status.json"`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("status page lacks %q", want)
		}
	}
	for _, external := range []string{"src=\"http", "href=\"http", "@import", "<link"} {
		if strings.Contains(body, external) {
			t.Errorf("status page refers to an external asset (%q)", external)
		}
	}
}

func TestRateOf(t *testing.T) {
	if r := rateOf(300, 100, 2*time.Second); r != 100 {
		t.Errorf("rateOf(300, 100, 2s) = %v, want 100", r)
	}
	if r := rateOf(5, 100, 2*time.Second); r != 0 {
		t.Errorf("a counter that went back gives %v, want 0", r)
	}
}
