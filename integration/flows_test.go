package integration

import (
	"context"
	"regexp"
	"strings"
	"testing"

	"github.com/dsrlb/dsrlb/integration/topo"
)

// TestLbdFlows: `lbd flows web` lists each open keep-alive connection as
// established from the client's address to the VIP, on the backend that
// answered it; --limit bounds the list, an unknown service is refused
// with the names there are.
func TestLbdFlows(t *testing.T) {
	s := begin(t, "lbd-flows")
	e := startLB(t, s, topo.Options{}, func(tp *topo.Topology) topo.Config { return web(tp, "") })
	const n = 6
	ks := openKeepAlives(t, e.tp.Client, topo.URL(topo.VIP4, "/"), n)
	want := map[string]int{}
	for _, k := range ks {
		want[k.backend]++
	}
	ctx := context.Background()
	out, err := e.tp.Lbd(ctx, "flows", "web")
	if err != nil {
		t.Fatalf("lbd flows web: %v\n%s", err, out)
	}
	got := map[string]int{}
	row := regexp.MustCompile(`(?m)^web\s+tcp\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+established\s`)
	for _, m := range row.FindAllStringSubmatch(out, -1) {
		if !strings.HasPrefix(m[1], e.tp.Client.IPv4.String()+":") || m[2] != topo.VIP4.String()+":80" {
			t.Errorf("flow %s -> %s: want the client %s to the VIP %s:80", m[1], m[2], e.tp.Client.IPv4, topo.VIP4)
		}
		got[m[3]]++
	}
	for b, c := range want {
		if got[b] != c {
			t.Errorf("lbd flows shows %d established flows on %s, %d connections are open on it:\n%s", got[b], b, c, out)
		}
	}
	out, err = e.tp.Lbd(ctx, "flows", "--limit", "2")
	if err != nil || !regexp.MustCompile(`(?m)^2 of \d+ tracked flows shown$`).MatchString(out) || strings.Count(out, "\nweb ") != 2 {
		t.Errorf("lbd flows --limit 2: %v\n%s", err, out)
	}
	out, err = e.tp.Lbd(ctx, "flows", "nosuch")
	if err == nil || !strings.Contains(out, `service "nosuch"`) || !strings.Contains(out, "services: web") {
		t.Errorf("lbd flows nosuch: want a refusal naming the services, got %v\n%s", err, out)
	}
}
