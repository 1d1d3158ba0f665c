package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"

	"github.com/dsrlb/dsrlb/integration/topo"
	"github.com/dsrlb/dsrlb/lbd/statusjson"
)

// lbdStatus runs `lbd status --json` on lb and decodes it with the
// schema's own types (lbd/statusjson), refusing fields they do not name:
// what the tests read is what docs/status-json.md documents.
func lbdStatus(t *testing.T, tp *topo.Topology, lb *topo.Host) statusjson.Status {
	t.Helper()
	out, err := tp.LbdOn(context.Background(), lb, "status", "--json")
	if err != nil {
		t.Fatalf("lbd status on %s: %v\n%s", lb.Role, err, out)
	}
	var st statusjson.Status
	dec := json.NewDecoder(bytes.NewReader([]byte(out)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&st); err != nil {
		t.Fatalf("lbd status --json on %s: %v\n%s", lb.Role, err, out)
	}
	if st.SchemaVersion != statusjson.SchemaVersion {
		t.Fatalf("lbd status --json on %s: schema_version %d, these tests read %d", lb.Role, st.SchemaVersion, statusjson.SchemaVersion)
	}
	return st
}

// serviceCounters reads service's counters from lb's pinned data plane
// (lbd status --json reads the maps, lbd running or not).
func serviceCounters(t *testing.T, tp *topo.Topology, lb *topo.Host, service string) statusjson.Counters {
	t.Helper()
	st := lbdStatus(t, tp, lb)
	for _, s := range st.Services {
		if s.Name == service {
			return s.Counters
		}
	}
	t.Fatalf("lbd status on %s lists no service %s: %+v", lb.Role, service, st.Services)
	return statusjson.Counters{}
}
