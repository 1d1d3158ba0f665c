package integration

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dsrlb/dsrlb/integration/topo"
)

// TestReplaceIncompatibleSwapsPins: lbd A runs and stops, its data plane
// pinned and forwarding; lbd B starts with another conntrack size (the
// maps cannot be adopted) and --replace-incompatible. B makes its maps
// under <pin_path>/next, attaches, and only then moves them over A's
// pins: once B is ready the pin path is a plain plane of B's (no next or
// swapping left), `lbd status` reads B's services, and connections
// established through A stay on their backends (the Maglev fallback, the
// backend set unchanged).
func TestReplaceIncompatibleSwapsPins(t *testing.T) {
	s := begin(t, "replace-incompatible-swaps-pins")
	e := startLB(t, s, topo.Options{}, func(tp *topo.Topology) topo.Config { return web(tp, "maglev") })
	url := topo.URL(topo.VIP4, "/")
	ks := keepAlivesOnEach(t, e.tp.Client, url, "b1", "b2", "b3")
	if err := e.lbd.Stop(10 * time.Second); err != nil {
		t.Fatalf("lbd A did not stop cleanly: %v", err)
	}
	found := plane(t, e.tp)

	cfg := e.cfg
	cfg.ConntrackSize = 1 << 16
	api := e.tp.WebService("api", topo.VIP4, "", e.tp.Backends...)
	api.Ports = []int{8081} // the same VIP, another port: nothing connects to it
	cfg.Services = append(cfg.Services, api)
	if _, err := e.tp.WriteConfig(cfg); err != nil {
		t.Fatal(err)
	}
	b, err := e.tp.Start(e.tp.Balancer, "lbd B", e.tp.Bins.Lbd, "run", "--replace-incompatible", "--config", e.tp.ConfigPath())
	if err != nil {
		t.Fatal(err)
	}
	logOnFailure(t, b)
	ctx := ctxFor(t, time.Minute)
	if err := b.WaitOutput(ctx, "lbd ready", 30*time.Second); err != nil {
		t.Fatalf("lbd B: %v\n%s", err, b.Output())
	}
	out := b.Output()
	for _, want := range []string{"replacing its maps once this lbd's program is attached", "replaced the pinned maps with this program's"} {
		if !strings.Contains(out, want) {
			t.Errorf("lbd B's log lacks %q:\n%s", want, out)
		}
	}
	pin := e.tp.PinPathFor(e.tp.Balancer)
	for _, dir := range []string{"next", "swapping"} {
		if _, err := os.Lstat(filepath.Join(pin, dir)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left under %s once B is ready (%v)", dir, pin, err)
		}
	}
	got := plane(t, e.tp)
	if got == found || !strings.Contains(got, "api ") {
		t.Errorf("lbd status once B is ready:\n%s\nwant B's plane (with api), not A's:\n%s", got, found)
	}
	if err := topo.WaitServing(context.Background(), e.client, url, weighted(e.cfg.Services[0]), 20*time.Second); err != nil {
		t.Fatalf("B not serving: %v", err)
	}
	for _, k := range ks {
		if a := topo.Get(context.Background(), k.c, url); a.Err != nil || a.Backend != k.backend {
			t.Errorf("connection established on %s through A, after B replaced the maps: %+v", k.backend, a)
		}
	}
	if err := b.Stop(10 * time.Second); err != nil {
		t.Fatalf("lbd B did not stop cleanly: %v", err)
	}
}
