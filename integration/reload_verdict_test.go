package integration

import (
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/dsrlb/dsrlb/integration/topo"
)

// TestReloadVerdict: `lbd reload` (which systemctl reload runs) waits for
// the daemon's answer through the control socket: 0 when the file is
// taken, 1 with the daemon's reasons when it is rejected, including a
// file that passes the local check but not the daemon's (a backend off the
// segment) and a change that takes a restart. Before, both exited 0.
func TestReloadVerdict(t *testing.T) {
	s := begin(t, "reload-verdict")
	e := startLB(t, s, topo.Options{}, func(tp *topo.Topology) topo.Config { return web(tp, "") })
	ctx := ctxFor(t, 60*time.Second)
	reload := func(cfg string) (string, error) {
		t.Helper()
		if err := os.WriteFile(e.tp.ConfigPath(), []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		return e.tp.Lbd(ctx, "reload")
	}
	good := e.tp.Render(e.cfg)
	if out, err := reload(good); err != nil || !strings.Contains(out, "configuration reloaded: 1 services") {
		t.Fatalf("good reload: %v\n%s", err, out)
	}

	offLink := e.cfg
	svc := offLink.Services[0]
	svc.Servers = append(append([]topo.Server(nil), svc.Servers...), topo.Server{Name: "far", Address: netip.MustParseAddr("203.0.113.250"), Weight: -1})
	offLink.Services = []topo.Service{svc}
	out, err := reload(e.tp.Render(offLink))
	if err == nil || !strings.Contains(out, "reload rejected") || !strings.Contains(out, "203.0.113.250") {
		t.Errorf("reload of a backend off the segment: err %v\n%s", err, out)
	}

	restart := strings.Replace(good, "maglev_table_size: 65537", "maglev_table_size: 251", 1)
	if restart == good {
		t.Fatalf("harness config has no maglev_table_size: 65537 line:\n%s", good)
	}
	out, err = reload(restart)
	if err == nil || !strings.Contains(out, "maglev_table_size: changed; this takes a restart") {
		t.Errorf("restart-only reload: err %v\n%s", err, out)
	}
	if out, err := e.tp.Lbd(ctx, "reload", "--dry-run"); err == nil || !strings.Contains(out, "restart only: ") {
		t.Errorf("dry run of a restart-only change: err %v\n%s", err, out)
	}
	if out, err := reload(good); err != nil {
		t.Errorf("reload back to the running file: %v\n%s", err, out)
	}
	if ok, _ := e.lbd.Exited(); ok {
		t.Fatal("lbd exited during the reloads")
	}
	mustNoFailures(t, "new connections after the reloads", e.newConns(e.client, topo.URL(topo.VIP4, "/"), 20, 4, 20*time.Second))
}
