package main

import (
	"context"
	"fmt"
	"os/exec"
	"runtime"
	"strconv"
	"strings"

	"github.com/dsrlb/dsrlb/integration/topo"
)

// cpuPlan gives one CPU to forwarding alone (-forward-cpu), as on a
// balancer host that does nothing else: RPS steers the frames the
// balancer's interface receives to that CPU, so its tc ingress (dsrlb's
// program or the reference) runs there; the backends' and the client's
// receive processing is steered to the other CPUs, where every process
// of the benchmark (wrk, the servers, lbd, HAProxy) is pinned. Without
// it, everything shares every CPU and the program's maps are cold between
// packets.
type cpuPlan struct {
	fwd                 int    // the forwarding CPU; -1: no plan
	others              string // the other CPUs, as taskset lists them
	fwdMask, othersMask string // the same as rps_cpus bitmaps
}

func newCPUPlan(fwd int) (cpuPlan, error) {
	n := runtime.NumCPU()
	if fwd < 0 {
		return cpuPlan{fwd: -1}, nil
	}
	if n < 2 || fwd >= n || n > 64 {
		return cpuPlan{}, fmt.Errorf("-forward-cpu %d: want a CPU 0..%d of a machine with 2..64 CPUs (this one has %d)", fwd, n-1, n)
	}
	var others []string
	var mask uint64
	for c := range n {
		if c != fwd {
			others = append(others, strconv.Itoa(c))
			mask |= 1 << c
		}
	}
	return cpuPlan{fwd: fwd, others: strings.Join(others, ","), fwdMask: strconv.FormatUint(1<<fwd, 16),
		othersMask: strconv.FormatUint(mask, 16)}, nil
}

func (p cpuPlan) active() bool { return p.fwd >= 0 }

// steer sets the receive CPUs of the balancer's interface (the forwarding
// CPU) and of every other host's (the other CPUs).
func (p cpuPlan) steer(ctx context.Context, tp *topo.Topology) error {
	if !p.active() {
		return nil
	}
	hosts := append([]*topo.Host{tp.Balancer, tp.Client}, tp.Backends...)
	for _, h := range hosts {
		mask := p.othersMask
		if h == tp.Balancer {
			mask = p.fwdMask
		}
		// ip netns exec mounts the namespace's own /sys.
		script := fmt.Sprintf("echo %s > /sys/class/net/%s/queues/rx-0/rps_cpus", mask, h.Link)
		if out, err := exec.CommandContext(ctx, "ip", "netns", "exec", h.NS.Name, "sh", "-c", script).CombinedOutput(); err != nil {
			return fmt.Errorf("steer %s's receive to CPUs %s: %w: %s", h.Role, mask, err, out)
		}
	}
	return nil
}

// pin keeps process pid, every thread of it, off the forwarding CPU.
func (p cpuPlan) pin(ctx context.Context, pid int) error {
	if !p.active() {
		return nil
	}
	if out, err := exec.CommandContext(ctx, "taskset", "-a", "-p", "-c", p.others, strconv.Itoa(pid)).CombinedOutput(); err != nil {
		return fmt.Errorf("pin process %d to CPUs %s: %w: %s", pid, p.others, err, out)
	}
	return nil
}

// command is name and args, run on the other CPUs when there is a plan.
func (p cpuPlan) command(name string, args ...string) (string, []string) {
	if !p.active() {
		return name, args
	}
	return "taskset", append([]string{"-c", p.others, name}, args...)
}
