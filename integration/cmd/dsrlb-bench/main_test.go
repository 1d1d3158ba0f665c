package main

import (
	"slices"
	"strings"
	"testing"
	"time"
)

// TestParseModes: -modes takes every path the bench measures, track too,
// and names the valid ones when given another.
func TestParseModes(t *testing.T) {
	valid := func() options {
		return options{duration: 6 * time.Second, runs: 3, conns: 32, threads: 2, backends: 1, sched: "roundrobin", conntrack: 1 << 20}
	}
	o := valid()
	if err := o.parse("64", "dsrlb, floor,track"); err != nil {
		t.Fatal(err)
	}
	if want := []string{"dsrlb", "floor", "track"}; !slices.Equal(o.modes, want) {
		t.Errorf("modes %q, want %q", o.modes, want)
	}
	o = valid()
	err := o.parse("64", "dsrlb,tracked")
	if err == nil || !strings.Contains(err.Error(), `"tracked"`) || !strings.Contains(err.Error(), "floor, track") {
		t.Errorf("-modes dsrlb,tracked: %v; want the unknown mode and the valid ones", err)
	}
}

// TestParseSchedConntrack: -sched takes lbd's schedulers only, -conntrack
// the sizes balancer.conntrack.size takes, each refused with what it wants.
func TestParseSchedConntrack(t *testing.T) {
	for _, c := range []struct {
		sched     string
		conntrack int
		want      string // "" : accepted
	}{
		{"maglev", 65536, ""},
		{"source", 1 << 20, ""},
		{"wrr", 1 << 20, "-sched \"wrr\": want roundrobin, maglev or source"},
		{"maglev", 100, "-conntrack 100: want 1024..67108864"},
	} {
		o := options{duration: 6 * time.Second, runs: 3, conns: 32, threads: 2, backends: 1, sched: c.sched, conntrack: c.conntrack}
		err := o.parse("64", "dsrlb")
		switch {
		case c.want == "" && err != nil:
			t.Errorf("-sched %s -conntrack %d: %v; want accepted", c.sched, c.conntrack, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("-sched %s -conntrack %d: %v; want %q", c.sched, c.conntrack, err, c.want)
		}
	}
}
