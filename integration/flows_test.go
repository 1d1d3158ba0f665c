package integration

import (
	"context"
	"encoding/json"
	"regexp"
	"strings"
	"testing"

	"github.com/dsrlb/dsrlb/integration/topo"
	"github.com/dsrlb/dsrlb/lbd/statusjson"
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
	// --json: the same flows, in the schema's own types (unknown fields refused).
	out, err = e.tp.Lbd(ctx, "flows", "web", "--json")
	if err != nil {
		t.Fatalf("lbd flows web --json: %v\n%s", err, out)
	}
	var doc statusjson.Flows
	dec := json.NewDecoder(strings.NewReader(out))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&doc); err != nil || doc.SchemaVersion != statusjson.SchemaVersion || doc.Source != "lbd flows" || doc.Service != "web" {
		t.Fatalf("lbd flows web --json: %v (schema %d, source %q, service %q)\n%s", err, doc.SchemaVersion, doc.Source, doc.Service, out)
	}
	gotJSON := map[string]int{}
	for _, f := range doc.Flows {
		if f.State != "established" {
			continue
		}
		if f.Service != "web" || f.Protocol != "tcp" || f.Client != e.tp.Client.IPv4.String() || f.ClientPort == 0 || f.VIP != topo.VIP4.String() || f.Port != 80 {
			t.Errorf("flow %+v: want web tcp from %s to %s:80", f, e.tp.Client.IPv4, topo.VIP4)
		}
		gotJSON[f.Backend]++
	}
	for b, c := range want {
		if gotJSON[b] != c {
			t.Errorf("lbd flows --json shows %d established flows on %s, %d connections are open on it:\n%s", gotJSON[b], b, c, out)
		}
	}
	if doc.Total < n || len(doc.Flows) != doc.Total {
		t.Errorf("lbd flows --json: total %d, %d flows listed, want at least %d, all listed", doc.Total, len(doc.Flows), n)
	}
	out, err = e.tp.Lbd(ctx, "flows", "nosuch")
	if err == nil || !strings.Contains(out, `service "nosuch"`) || !strings.Contains(out, "services: web") {
		t.Errorf("lbd flows nosuch: want a refusal naming the services, got %v\n%s", err, out)
	}
}
