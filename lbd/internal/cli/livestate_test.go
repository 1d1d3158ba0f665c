package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dsrlb/dsrlb/internal/nettest"
	"github.com/dsrlb/dsrlb/lbd/control"
	"github.com/dsrlb/dsrlb/lbd/datapath"
	"github.com/dsrlb/dsrlb/lbd/statusjson"
)

func oneBackendDoc(now time.Time) statusjson.Status {
	return statusjson.Status{Generated: now, Services: []statusjson.Service{{Name: "web", VIP: "192.0.2.10", Protocol: "tcp",
		Backends: []statusjson.Backend{{Name: "web1", Address: "203.0.113.11", State: "up"}, {Name: "web2", Address: "203.0.113.12", State: "down"}}}}}
}

// TestLastChangeColumn: with the daemon's answer, LAST CHANGE shows how
// long each backend has been in its state; where the daemon's state is
// not the one the maps hold (it changed between the reads) and when no lbd
// answers, it shows "-".
func TestLastChangeColumn(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	since := now.Add(-95 * time.Second)
	doc := oneBackendDoc(now)
	addLive(&doc, &statusjson.Live{Backends: []statusjson.LiveBackend{
		{Service: "web", Name: "web1", State: "up", StateSince: &since},
		{Service: "web", Name: "web2", State: "up", StateSince: &since}, // maps say down
	}})
	var out bytes.Buffer
	printStatus(&out, doc, datapath.Stats{})
	lines := strings.Split(out.String(), "\n")
	if !strings.Contains(lines[1], "LAST CHANGE") {
		t.Fatalf("no LAST CHANGE column:\n%s", out.String())
	}
	col := strings.Index(lines[1], "LAST CHANGE")
	want := map[string]string{"web1": "1m35s ago", "web2": "-"}
	for _, l := range lines {
		for name, w := range want {
			if strings.Contains(l, "-> "+name) && !strings.HasPrefix(l[col:], w+" ") {
				t.Errorf("%s: LAST CHANGE %q, want %q:\n%s", name, l[col:], w, out.String())
			}
		}
	}
	// No lbd: nothing added, every backend "-".
	doc = oneBackendDoc(now)
	addLive(&doc, nil)
	out.Reset()
	printStatus(&out, doc, datapath.Stats{})
	if n := strings.Count(out.String(), " - "); n < 2 {
		t.Errorf("want \"-\" for both backends without lbd:\n%s", out.String())
	}
}

// TestAskLive: lbd status reads the daemon's live state over a real
// control socket, and gets nil (not an error, not a hang) when nothing
// answers or the daemon does not know the command.
func TestAskLive(t *testing.T) {
	nettest.Require(t) // the control socket answers root only
	sock := filepath.Join(t.TempDir(), "lbd.sock")
	if l := askLive(context.Background(), sock); l != nil {
		t.Fatalf("no daemon: %+v, want nil", l)
	}
	since := time.Date(2026, 12, 1, 11, 0, 0, 0, time.UTC)
	live := statusjson.Live{Backends: []statusjson.LiveBackend{{Service: "web", Name: "web1", State: "up", StateSince: &since}},
		ARPGuard: &statusjson.ARPGuard{Running: true, Mode: "lbd", Conflicts: []statusjson.ARPConflict{}}}
	data, _ := json.Marshal(live)
	srv, err := control.Listen(sock, func(_ context.Context, req control.Request) control.Response {
		if req.Command != control.CmdLive {
			return control.Response{Message: "unknown command"}
		}
		return control.Response{OK: true, Data: data}
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	l := askLive(context.Background(), sock)
	if l == nil || len(l.Backends) != 1 || !l.Backends[0].StateSince.Equal(since) || l.ARPGuard == nil || l.ARPGuard.Mode != "lbd" {
		t.Fatalf("live %+v, want what the daemon sent", l)
	}
}
