package main

import (
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/dsrlb/dsrlb/integration/pktgen"
)

// TestParseModes: -modes takes every path the bench measures, track too,
// and names the valid ones when given another.
func TestParseModes(t *testing.T) {
	valid := func() options {
		return options{duration: 6 * time.Second, runs: 3, conns: 32, threads: 2, backends: 1, sched: "roundrobin", conntrack: 1 << 20, forwardCPU: -1}
	}
	o := valid()
	if err := o.parse("64", "dsrlb, floor,track,slot"); err != nil {
		t.Fatal(err)
	}
	if want := []string{"dsrlb", "floor", "track", "slot"}; !slices.Equal(o.modes, want) {
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

// TestCPUPlan: -forward-cpu splits this process's CPUs into the
// forwarding one and the others, as taskset lists and rps_cpus bitmaps,
// refuses a CPU it may not use and any other negative value, and -1
// changes nothing; haproxy cannot be measured with it.
func TestCPUPlan(t *testing.T) {
	if p, err := newCPUPlan(-1); err != nil || p.active() {
		t.Fatalf("-1: %+v, %v; want no plan", p, err)
	}
	if name, args := (cpuPlan{fwd: -1}).command("wrk", "-t", "2"); name != "wrk" || !slices.Equal(args, []string{"-t", "2"}) {
		t.Errorf("no plan runs %s %q, want wrk itself", name, args)
	}
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		t.Fatal(err)
	}
	var cpus []int
	for c := range 1024 {
		if set.IsSet(c) {
			cpus = append(cpus, c)
		}
	}
	for _, bad := range []int{-5, cpus[len(cpus)-1] + 1} {
		if _, err := newCPUPlan(bad); err == nil || !strings.Contains(err.Error(), "-forward-cpu") {
			t.Errorf("-forward-cpu %d: %v, want refused", bad, err)
		}
	}
	if len(cpus) < 2 || cpus[len(cpus)-1] > 31 {
		t.Skipf("CPUs %v: no plan possible here", cpus)
	}
	fwd := cpus[len(cpus)-1]
	p, err := newCPUPlan(fwd)
	if err != nil {
		t.Fatal(err)
	}
	var others []string
	var mask uint64
	for _, c := range cpus[:len(cpus)-1] {
		others, mask = append(others, strconv.Itoa(c)), mask|1<<c
	}
	if p.fwdMask != strconv.FormatUint(1<<fwd, 16) || p.others != strings.Join(others, ",") || p.othersMask != strconv.FormatUint(mask, 16) {
		t.Errorf("CPU %d of %v: %+v; want masks %x and %x, others %q", fwd, cpus, p, 1<<fwd, mask, strings.Join(others, ","))
	}
	if name, args := p.command("wrk", "-t", "2"); name != "taskset" || !slices.Equal(args[:3], []string{"-c", p.others, "wrk"}) {
		t.Errorf("plan runs %s %q, want wrk under taskset -c %s", name, args, p.others)
	}
	o := options{duration: 6 * time.Second, runs: 3, conns: 32, threads: 2, backends: 1, sched: "maglev", conntrack: 1 << 20, forwardCPU: fwd}
	if err := o.parse("64", "dsrlb,haproxy"); err == nil || !strings.Contains(err.Error(), "measure haproxy without it") {
		t.Errorf("-forward-cpu with haproxy: %v, want refused", err)
	}
}

// TestParseGen: -gen takes the generator's mixes, and only with the
// modes that measure the balancer's program; -gen-flows and -gen-cpu are
// checked against what the generator and this process can do.
func TestParseGen(t *testing.T) {
	if mixes, err := parseGen("established, connections"); err != nil || len(mixes) != 2 || mixes[0] != pktgen.Established || mixes[1] != pktgen.Connections {
		t.Errorf("-gen established,connections: %v, %v", mixes, err)
	}
	if mixes, err := parseGen(""); err != nil || mixes != nil {
		t.Errorf("-gen \"\": %v, %v; want wrk's load", mixes, err)
	}
	if _, err := parseGen("established,syn-flood"); err == nil || !strings.Contains(err.Error(), `"syn-flood"`) {
		t.Errorf("-gen syn-flood: %v, want refused by name", err)
	}
	for _, c := range []struct {
		modes                string
		flows, burst, genCPU int
		want                 string // "": accepted
	}{
		{"dsrlb,floor,track", 1024, 1, 0, ""},
		{"dsrlb", 1024, 64, 0, ""},
		{"direct,dsrlb", 1024, 1, 0, "not direct"},
		{"dsrlb,haproxy", 1024, 1, 0, "not haproxy"},
		{"dsrlb", 0, 1, 0, "-gen-flows 0"},
		{"dsrlb", pktgen.MaxFlows + 1, 1, 0, "-gen-flows 16384001"},
		{"dsrlb", 1024, 0, 0, "-gen-burst 0"},
		{"dsrlb", 1024, 65, 0, "-gen-burst 65"},
		{"dsrlb", 1024, 1, 1023, "-gen-cpu 1023"},
		{"dsrlb", 1024, 1, -1, "-gen-cpu -1"},
	} {
		o := options{duration: 6 * time.Second, runs: 3, conns: 32, threads: 2, backends: 1, sched: "maglev", conntrack: 1 << 20, forwardCPU: -1,
			gen: []pktgen.Mix{pktgen.Established}, genFlows: c.flows, genBurst: c.burst, genCPU: c.genCPU}
		err := o.parse("64", c.modes)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("-gen with %s, %d flows, CPU %d: %v; want accepted", c.modes, c.flows, c.genCPU, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("-gen with %s, %d flows, CPU %d: %v; want %q", c.modes, c.flows, c.genCPU, err, c.want)
		}
	}
}
