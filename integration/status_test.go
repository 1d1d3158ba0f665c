package integration

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/dsrlb/dsrlb/integration/topo"
)

// counters are one service's forwarding counters as `lbd status --json`
// reports them.
type counters struct {
	Packets, Bytes, NewFlows uint64
}

// serviceCounters reads service's counters from lb's pinned data plane
// (lbd status --json reads the maps, lbd running or not).
func serviceCounters(t *testing.T, tp *topo.Topology, lb *topo.Host, service string) counters {
	t.Helper()
	out, err := tp.LbdOn(context.Background(), lb, "status", "--json")
	if err != nil {
		t.Fatalf("lbd status on %s: %v\n%s", lb.Role, err, out)
	}
	var st struct {
		Services []struct {
			Name     string
			Counters counters
		}
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("lbd status --json on %s: %v\n%s", lb.Role, err, out)
	}
	for _, s := range st.Services {
		if s.Name == service {
			return s.Counters
		}
	}
	t.Fatalf("lbd status on %s lists no service %s:\n%s", lb.Role, service, out)
	return counters{}
}
