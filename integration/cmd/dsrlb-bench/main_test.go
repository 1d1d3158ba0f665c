package main

import (
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestParseModes: -modes takes every path the bench measures, track too,
// and names the valid ones when given another.
func TestParseModes(t *testing.T) {
	valid := func() options {
		return options{duration: 6 * time.Second, runs: 3, conns: 32, threads: 2, backends: 1, sched: "roundrobin", conntrack: 1 << 20, forwardCPU: -1}
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
		o := options{duration: 6 * time.Second, runs: 3, conns: 32, threads: 2, backends: 1, sched: c.sched, conntrack: c.conntrack, forwardCPU: -1}
		err := o.parse("64", "dsrlb")
		switch {
		case c.want == "" && err != nil:
			t.Errorf("-sched %s -conntrack %d: %v; want accepted", c.sched, c.conntrack, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("-sched %s -conntrack %d: %v; want %q", c.sched, c.conntrack, err, c.want)
		}
	}
}

// TestCPUPlan: -forward-cpu splits the machine's CPUs into the forwarding
// one and the others, as taskset lists and rps_cpus bitmaps, refuses a CPU
// the machine lacks, and -1 changes nothing.
func TestCPUPlan(t *testing.T) {
	if p, err := newCPUPlan(-1); err != nil || p.active() {
		t.Fatalf("-1: %+v, %v; want no plan", p, err)
	}
	if name, args := (cpuPlan{fwd: -1}).command("wrk", "-t", "2"); name != "wrk" || !slices.Equal(args, []string{"-t", "2"}) {
		t.Errorf("no plan runs %s %q, want wrk itself", name, args)
	}
	if _, err := newCPUPlan(runtime.NumCPU()); err == nil || !strings.Contains(err.Error(), "-forward-cpu") {
		t.Errorf("a CPU past the last: %v, want refused", err)
	}
	if runtime.NumCPU() < 2 {
		t.Skip("one CPU: no plan possible")
	}
	p, err := newCPUPlan(1)
	if err != nil {
		t.Fatal(err)
	}
	if p.fwdMask != "2" || strings.Contains(","+p.others+",", ",1,") || !strings.HasPrefix(p.others, "0") {
		t.Errorf("CPU 1: mask %s, others %q; want mask 2 and every CPU but 1", p.fwdMask, p.others)
	}
	if name, args := p.command("wrk", "-t", "2"); name != "taskset" || !slices.Equal(args[:3], []string{"-c", p.others, "wrk"}) {
		t.Errorf("plan runs %s %q, want wrk under taskset -c %s", name, args, p.others)
	}
}
