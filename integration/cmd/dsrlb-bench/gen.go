package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/dsrlb/dsrlb/integration/pktgen"
	"github.com/dsrlb/dsrlb/integration/topo"
)

// genRunFrames is the frames of one live-frames test run: about 0.5–0.8 s
// here, so a cell overshoots its duration by less than that.
const genRunFrames = 1 << 17

// genLoad is the packet generator's part of the bench (-gen): the
// generator itself for each mix, the XDP program the client's bridge
// port needs to receive its frames, and each backend's drop.
type genLoad struct {
	gens    map[pktgen.Mix]*pktgen.Gen
	ifindex int // the client's eth0
	cpu     int
	pass    *pktgen.Pass
	drops   []*pktgen.Drop
}

// genResult is what one generator cell sent and what reached a backend.
type genResult struct {
	sent, delivered uint64
	took            time.Duration
}

// parseGen reads -gen's mixes; "" is none (wrk's load).
func parseGen(s string) ([]pktgen.Mix, error) {
	if s == "" {
		return nil, nil
	}
	var mixes []pktgen.Mix
	for _, f := range strings.Split(s, ",") {
		m, err := pktgen.ParseMix(strings.TrimSpace(f))
		if err != nil {
			return nil, fmt.Errorf("-gen: %w", err)
		}
		mixes = append(mixes, m)
	}
	return mixes, nil
}

// checkGen is what -gen allows with the other flags.
func (o *options) checkGen() error {
	if len(o.gen) == 0 {
		return nil
	}
	for _, m := range o.modes {
		if !slices.Contains(kernelModes, m) {
			return fmt.Errorf("-gen measures the balancer's program (modes %s), not %s: the generator's frames reach no server", strings.Join(kernelModes, ", "), m)
		}
	}
	if o.genFlows < 1 || o.genFlows > pktgen.MaxFlows {
		return fmt.Errorf("-gen-flows %d: want 1..%d", o.genFlows, pktgen.MaxFlows)
	}
	if o.genBurst < 1 || o.genBurst > pktgen.MaxBurstFrames {
		return fmt.Errorf("-gen-burst %d: want 1..%d", o.genBurst, pktgen.MaxBurstFrames)
	}
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return fmt.Errorf("-gen-cpu: read this process's CPUs: %w", err)
	}
	if o.genCPU < 0 || o.genCPU >= 1024 || !set.IsSet(o.genCPU) {
		return fmt.Errorf("-gen-cpu %d: want one of this process's CPUs", o.genCPU)
	}
	return nil
}

// startGen loads a generator per mix (frames from the client's MAC to the
// balancer's, for the VIP), lets the client's bridge port receive XDP
// frames and attaches the drop to every backend.
func (b *bench) startGen() (err error) {
	tp := b.tp
	g := &genLoad{gens: map[pktgen.Mix]*pktgen.Gen{}, cpu: b.o.genCPU}
	b.gen = g
	l, err := tp.Client.NS.Netlink().LinkByName(tp.Client.Link)
	if err != nil {
		return fmt.Errorf("find the client's %s: %w", tp.Client.Link, err)
	}
	g.ifindex = l.Attrs().Index
	for _, m := range b.o.gen {
		gen, err := pktgen.Load(pktgen.Config{Mix: m, Flows: uint32(b.o.genFlows), Burst: uint32(b.o.genBurst), Sources: pktgen.Sources,
			VIP: topo.VIP4, Port: topo.HTTPPort, Dst: tp.Balancer.MAC, Src: tp.Client.MAC})
		if err != nil {
			return err
		}
		g.gens[m] = gen
	}
	port, err := tp.Bridge.Netlink().LinkByName(tp.Client.Role)
	if err != nil {
		return fmt.Errorf("find the client's bridge port: %w", err)
	}
	if err := tp.Bridge.Do(func() (err error) { g.pass, err = pktgen.AttachPass(port.Attrs().Index); return err }); err != nil {
		return err
	}
	for _, be := range tp.Backends {
		l, err := be.NS.Netlink().LinkByName(be.Link)
		if err != nil {
			return fmt.Errorf("find %s's %s: %w", be.Role, be.Link, err)
		}
		var d *pktgen.Drop
		if err := be.NS.Do(func() (err error) { d, err = pktgen.AttachDrop(l.Attrs().Index, pktgen.Sources); return err }); err != nil {
			return err
		}
		g.drops = append(g.drops, d)
	}
	return nil
}

// close releases everything startGen made.
func (g *genLoad) close() {
	for _, gen := range g.gens {
		gen.Close()
	}
	if g.pass != nil {
		g.pass.Close()
	}
	for _, d := range g.drops {
		d.Close()
	}
}

// settled is the frames the backends' drops have counted once the count
// stops moving (two reads 20 ms apart agree; at most 2 s).
func (g *genLoad) settled() (uint64, error) {
	last, err := g.delivered()
	for deadline := time.Now().Add(2 * time.Second); err == nil && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
		var n uint64
		if n, err = g.delivered(); n == last {
			break
		}
		last = n
	}
	return last, err
}

// delivered is the frames every backend's drop has counted.
func (g *genLoad) delivered() (uint64, error) {
	var n uint64
	for _, d := range g.drops {
		k, err := d.Dropped()
		if err != nil {
			return 0, err
		}
		n += k
	}
	return n, nil
}

// open readies mix for a cell: the established mix's flows of the cell are
// new ones, opened (SYN, ACK) before the cell is measured, so the cell
// measures their steady stream and no mode sees flows another left.
func (g *genLoad) open(tp *topo.Topology, mix pktgen.Mix) error {
	_, err := g.gens[mix].Open(tp.Client.NS.Do, g.ifindex, g.cpu)
	return err
}

// run sends mix for d from the client and waits until what it sent has
// stopped arriving at the backends (frames may sit in a CPU's backlog
// when the run returns).
func (g *genLoad) run(ctx context.Context, tp *topo.Topology, mix pktgen.Mix, d time.Duration) (genResult, error) {
	before, err := g.settled()
	if err != nil {
		return genResult{}, err
	}
	start := time.Now()
	sent, err := g.gens[mix].Run(ctx, tp.Client.NS.Do, g.ifindex, g.cpu, genRunFrames, d)
	r := genResult{sent: sent, took: time.Since(start)}
	if err != nil {
		return r, err
	}
	after, err := g.settled()
	if err != nil {
		return r, err
	}
	if r.delivered = after - before; r.delivered == 0 {
		return r, errors.New("the generator's frames reached no backend: the path through the balancer is broken")
	}
	return r, nil
}

// genTable is the generator cells' in-kernel cost, one row per mix and
// program, with what was sent and forwarded.
func (b *bench) genTable(cells []cell) string {
	var s strings.Builder
	fmt.Fprintf(&s, "\nUnder generator load: pktgen (BPF_PROG_TEST_RUN live frames) on the client's eth0, pinned to CPU %d, %v per cell, %d runs; established: %d flows new to each cell (opened with SYN, ACK before it is measured), bursts of %d; sources %s; service %s, conntrack %d%s; kernel.bpf_stats_enabled=1, all runs summed (× floor: ns/run / floor_vip's)\n\n",
		b.o.genCPU, b.o.duration, b.o.runs, b.o.genFlows, b.o.genBurst, pktgen.Sources, b.o.sched, b.o.conntrack, forwardNote(b.o.forwardCPU))
	s.WriteString("| mix | program | frames sent | reached a backend | Mframes/s | run_cnt | ns/run | × floor |\n|---|---|--:|--:|--:|--:|--:|--:|\n")
	for _, m := range b.o.gen {
		fl, _ := summarizeGen(cells, "floor", m)
		for _, mode := range b.o.modes {
			sum, ok := summarizeGen(cells, mode, m)
			if !ok {
				continue
			}
			fmt.Fprintf(&s, "| %s | %s | %d | %d | %.2f | %d | %.1f | %s |\n", m, mode, sum.gen.sent, sum.gen.delivered,
				float64(sum.gen.sent)/sum.gen.took.Seconds()/1e6, sum.bpf.runs, sum.bpf.perRun(), ratio(sum.bpf.perRun(), fl.bpf.perRun()))
		}
	}
	if b.o.runs > 1 {
		s.WriteString("\nPer run (ns/run): ")
		for _, c := range cells {
			fmt.Fprintf(&s, "%s/%s %.0f; ", c.mode, c.mix, c.bpf.perRun())
		}
		s.WriteString("\n")
	}
	return s.String()
}

// summarizeGen sums the generator cells of mode and mix.
func summarizeGen(cells []cell, mode string, mix pktgen.Mix) (cell, bool) {
	sum := cell{mode: mode, mix: mix}
	ok := false
	for _, c := range cells {
		if c.mode != mode || c.mix != mix {
			continue
		}
		ok = true
		sum.bpf.ns += c.bpf.ns
		sum.bpf.runs += c.bpf.runs
		sum.gen.sent += c.gen.sent
		sum.gen.delivered += c.gen.delivered
		sum.gen.took += c.gen.took
	}
	return sum, ok
}

// measureGen runs every mode under each mix: a warm-up cell first, then
// -runs rounds, the modes' order rotated every round.
func (b *bench) measureGen(ctx context.Context) ([]cell, error) {
	var cells []cell
	for r := -1; r < b.o.runs; r++ {
		for _, mix := range b.o.gen {
			modes := slices.Clone(b.o.modes)
			for range max(r, 0) % len(modes) {
				modes = append(modes[1:], modes[0])
			}
			for _, mode := range modes {
				d := b.o.duration
				if r < 0 {
					if b.o.warmup == 0 {
						continue
					}
					d = b.o.warmup
				}
				c := cell{mode: mode, mix: mix}
				err := b.observe(mode, &c, func() error { return b.gen.open(b.tp, mix) }, func() (err error) {
					c.gen, err = b.gen.run(ctx, b.tp, mix, d)
					return err
				})
				if err != nil {
					return nil, fmt.Errorf("%s under %s: %w", mode, mix, err)
				}
				if r < 0 {
					continue
				}
				logf("run %d/%d %-5s %-11s: sent %d, reached a backend %d, bpf %.0f ns/run over %d runs",
					r+1, b.o.runs, mode, mix, c.gen.sent, c.gen.delivered, c.bpf.perRun(), c.bpf.runs)
				cells = append(cells, c)
			}
		}
	}
	return cells, nil
}
