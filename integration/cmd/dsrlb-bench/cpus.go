package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/dsrlb/dsrlb/integration/topo"
)

// cpuPlan gives one CPU to forwarding alone (-forward-cpu), as on a
// balancer host that does nothing else: RPS steers the frames the
// balancer's interface receives to that CPU, so its tc ingress (dsrlb's
// program or the reference) runs there; the backends' and the client's
// receive processing is steered to the other CPUs, where every process
// of the benchmark (wrk, the servers, lbd, dsrlb-bench itself) is pinned.
// Without it, everything shares every CPU.
type cpuPlan struct {
	fwd                 int    // the forwarding CPU; -1: no plan
	others              string // the other CPUs this process may use, as taskset lists them
	fwdMask, othersMask string // the same as rps_cpus bitmaps (hex)
}

// newCPUPlan plans around CPU fwd among the CPUs allowed to this process
// (its affinity, not merely their count: under a cpuset they need not
// start at 0). rps_cpus is written as one 32-bit word, so CPU ids stop at 31.
func newCPUPlan(fwd int) (cpuPlan, error) {
	if fwd == -1 {
		return cpuPlan{fwd: -1}, nil
	}
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return cpuPlan{}, fmt.Errorf("-forward-cpu: read this process's CPUs: %w", err)
	}
	var allowed, others []string
	var mask uint64
	for c := range 1024 {
		if !set.IsSet(c) {
			continue
		}
		allowed = append(allowed, strconv.Itoa(c))
		if c != fwd {
			others = append(others, strconv.Itoa(c))
			mask |= 1 << c
		}
	}
	switch {
	case fwd < 0 || !set.IsSet(fwd) || len(others) == 0:
		return cpuPlan{}, fmt.Errorf("-forward-cpu %d: want -1 (share every CPU) or one of this process's CPUs %s, with at least one left for the rest",
			fwd, strings.Join(allowed, ","))
	case fwd > 31 || mask >= 1<<32:
		return cpuPlan{}, fmt.Errorf("-forward-cpu %d: CPUs %s: the plan writes rps_cpus as one 32-bit word, CPU ids 0..31 only; run with taskset -c on CPUs below 32",
			fwd, strings.Join(allowed, ","))
	}
	return cpuPlan{fwd: fwd, others: strings.Join(others, ","), fwdMask: strconv.FormatUint(1<<fwd, 16),
		othersMask: strconv.FormatUint(mask, 16)}, nil
}

func (p cpuPlan) active() bool { return p.fwd >= 0 }

// steer sets the receive CPUs of every receive queue of the balancer's
// interface (the forwarding CPU) and of every other host's (the others).
func (p cpuPlan) steer(ctx context.Context, tp *topo.Topology) error {
	if !p.active() {
		return nil
	}
	hosts := append([]*topo.Host{tp.Balancer, tp.Client}, tp.Backends...)
	for _, h := range hosts {
		mask, cpus := p.othersMask, p.others
		if h == tp.Balancer {
			mask, cpus = p.fwdMask, strconv.Itoa(p.fwd)
		}
		// ip netns exec mounts the namespace's own /sys.
		script := fmt.Sprintf("for q in /sys/class/net/%s/queues/rx-*; do echo %s > $q/rps_cpus || exit 1; done", h.Link, mask)
		if out, err := exec.CommandContext(ctx, "ip", "netns", "exec", h.NS.Name, "sh", "-c", script).CombinedOutput(); err != nil {
			return fmt.Errorf("steer %s's receive to CPU %s (rps_cpus): %w: %s; a kernel without CONFIG_RPS cannot: run without -forward-cpu",
				h.Role, cpus, err, out)
		}
	}
	return nil
}

// pin keeps process pid, every thread it has, off the forwarding CPU;
// threads it starts later inherit that. (A thread started while taskset
// walks them may be missed: the processes are pinned right after they
// start, before any load.)
func (p cpuPlan) pin(ctx context.Context, pid int) error {
	if !p.active() {
		return nil
	}
	if out, err := exec.CommandContext(ctx, "taskset", "-a", "-p", "-c", p.others, strconv.Itoa(pid)).CombinedOutput(); err != nil {
		return fmt.Errorf("pin process %d to CPUs %s: %w: %s", pid, p.others, err, out)
	}
	return nil
}

// pinSelf pins dsrlb-bench, so that the processes it starts begin there.
func (p cpuPlan) pinSelf(ctx context.Context) error { return p.pin(ctx, os.Getpid()) }

// command is name and args, run on the other CPUs when there is a plan.
func (p cpuPlan) command(name string, args ...string) (string, []string) {
	if !p.active() {
		return name, args
	}
	return "taskset", append([]string{"-c", p.others, name}, args...)
}
