// Command dsrlb-bench measures dsrlb end to end in network namespaces
// against the two paths a user compares it with, on the integration
// topology (integration/topo): a client, a balancer and backends on one
// bridge, backends prepared by hostprep and serving dsrlb-testsrv.
//
//   - direct:  the client's neighbour entry for the VIP points at backend b1,
//     which holds the VIP on lo (DSR by hand, no balancer): the limit.
//   - dsrlb:   lbd runs on the balancer, the client reaches the VIP through
//     it (roundrobin over every backend, or the -sched scheduler), replies
//     go straight back.
//   - haproxy: Debian's HAProxy in TCP mode in the balancer's namespace on
//     192.0.2.20:80, roundrobin over the same backends (full proxy: both
//     directions cross the balancer).
//   - floor:   (not in the default modes) the client reaches the VIP through
//     the balancer as for dsrlb, but bpf/bench/floor.c's floor_vip, attached
//     with tcx ahead of lbd's program for the cell only, rewrites the MACs of
//     every frame to the VIP and redirects it to backend b1: the reference
//     the in-kernel cost of dsrlb's program is compared with under the same
//     load (use -backends 1 so that both send everything to b1).
//   - track:   (not in the default modes) as floor, with floor_vip_track:
//     floor_vip plus an LRU lookup of each TCP/UDP flow to the VIP, inserted
//     on a miss, in a table of lbd's conntrack size (-conntrack): the least
//     a balancer that remembers flows costs under the same load.
//   - slot:    (not in the default modes) as floor, with floor_vip_slot:
//     floor_vip plus one slot of a plain array per TCP/UDP flow (hashed
//     5-tuple, lbd's conntrack size rounded up to a power of two), read and
//     written on a miss: the least per-flow state a balancer can look up.
//
// wrk, in the client's namespace, opens a new connection for every request
// (Connection: close) for a fixed duration per cell; each cell (mode x
// response size) runs -runs times, modes interleaved, and the table gives
// medians with each figure's ratio to direct. During dsrlb, floor, track
// and slot cells the kernel's BPF run-time statistics are on
// (kernel.bpf_stats_enabled=1, the previous value restored after each cell)
// and the program's run_time_ns / run_cnt is reported. Last, lbd is reloaded with -rss-services services
// and its resident memory read from /proc.
//
// With -gen MIXES the load is integration/pktgen's packet generator
// instead of wrk: TCP frames from 203.0.113.0/24 to the VIP, transmitted
// out of the client's eth0 by BPF_PROG_TEST_RUN in live-frames mode as fast
// as the path takes them, on one CPU (-gen-cpu), through the bridge, the
// balancer's tc ingress (dsrlb's program or the reference) and its redirect
// to a backend, whose tc ingress counts and drops them. wrk leaves the CPU
// idle between a flow's packets; the generator keeps it busy, so the
// in-kernel cost is measured with warm code and the working set of
// -gen-flows flows (established mix) or of a new connection every five
// frames (connections mix). Only dsrlb, floor, track and slot are measured then.
//
// Everything it creates (namespaces, processes, pins, programs) is removed
// at the end, also on failure and on SIGINT/SIGTERM. It needs root, wrk and
// haproxy (scripts/setup-debian.sh installs them; -gen needs neither).
// scripts/bench.sh runs it.
//
//	dsrlb-bench [-bin DIR] [-duration 8s] [-runs 3] [-sizes 64,1048576]
//	dsrlb-bench -gen established,connections [-gen-flows 1024] -modes dsrlb,floor,track,slot -backends 1
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/dsrlb/dsrlb/integration/pktgen"
	"github.com/dsrlb/dsrlb/integration/topo"
	"github.com/dsrlb/dsrlb/lbd/datapath/floor"
	"github.com/dsrlb/dsrlb/shared/config"
)

// haproxyAddr is where HAProxy listens: the balancer's second address, so
// that lbd (holding the VIP) and HAProxy run side by side and the modes
// can be interleaved.
var haproxyAddr = netip.MustParseAddr("192.0.2.20")

type options struct {
	binDir      string
	duration    time.Duration
	warmup      time.Duration
	runs        int
	conns       int
	threads     int
	sizes       []int
	modes       []string
	backends    int
	rssServices int
	sched       string       // scheduler of the benchmark service
	conntrack   int          // lbd's conntrack size, and floor_vip_track's table
	forwardCPU  int          // -1, or the CPU given to forwarding alone (cpus.go)
	gen         []pktgen.Mix // -gen: the packet generator's load instead of wrk's (gen.go)
	genFlows    int
	genBurst    int
	genCPU      int
}

func main() {
	var o options
	var sizes, modes, gen string
	flag.StringVar(&o.binDir, "bin", "", "directory with hostprep, lbd and dsrlb-testsrv (built into a temp dir when empty)")
	flag.DurationVar(&o.duration, "duration", 8*time.Second, "load duration of each cell (1s..60s, whole seconds: wrk's unit)")
	flag.DurationVar(&o.warmup, "warmup", 2*time.Second, "unrecorded load per mode and size before the first run (0 for none)")
	flag.IntVar(&o.runs, "runs", 3, "runs of every cell (1..9); the table shows medians")
	flag.IntVar(&o.conns, "conns", 32, "concurrent connections of wrk")
	flag.IntVar(&o.threads, "threads", 2, "wrk threads")
	flag.StringVar(&sizes, "sizes", "64,1048576", "response body sizes in bytes, comma-separated")
	flag.StringVar(&modes, "modes", "direct,dsrlb,haproxy", "paths to measure, comma-separated (direct first: ratios are to it); floor, track, slot: the reference programs floor_vip, floor_vip_track, floor_vip_slot instead of lbd's")
	flag.IntVar(&o.backends, "backends", 3, "backends (1..9)")
	flag.IntVar(&o.rssServices, "rss-services", 1000, "services in the configuration lbd is reloaded with to read its RSS (0 skips)")
	flag.StringVar(&o.sched, "sched", "roundrobin", "scheduler of the benchmark service: roundrobin (as HAProxy's balance roundrobin), maglev (lbd's default) or source")
	flag.IntVar(&o.conntrack, "conntrack", config.DefaultConntrackSize, "lbd's balancer.conntrack.size, and the size of floor_vip_track's flow table (track mode) and floor_vip_slot's array (slot mode, rounded up to a power of two), so that all remember flows in tables of one size")
	flag.IntVar(&o.forwardCPU, "forward-cpu", -1, "give this CPU to forwarding alone: RPS steers the balancer's received frames to it, every process and the other hosts' receive processing run on the other CPUs (-1: share every CPU)")
	flag.StringVar(&gen, "gen", "", "load the balancer with the packet generator instead of wrk: mixes, comma-separated (established, connections); modes dsrlb, floor, track, slot only")
	flag.IntVar(&o.genFlows, "gen-flows", 1024, "flows the established mix cycles over")
	flag.IntVar(&o.genBurst, "gen-burst", 1, "frames of a flow in a row in the established mix (a TCP sender's burst; 1: the flows strictly in turn)")
	flag.IntVar(&o.genCPU, "gen-cpu", 0, "the CPU the generator runs on (the whole path of its frames runs there too, unless -forward-cpu steers the balancer's receive elsewhere)")
	flag.Parse()
	var err error
	if o.gen, err = parseGen(gen); err == nil {
		err = o.parse(sizes, modes)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "dsrlb-bench:", err)
		os.Exit(2)
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "dsrlb-bench: needs root (network namespaces, bpffs, sysctl)")
		os.Exit(1)
	}
	tools := []string{"nsenter", "ip"}
	if len(o.gen) == 0 {
		tools = append(tools, "wrk", "haproxy")
	}
	for _, bin := range tools {
		if _, err := exec.LookPath(bin); err != nil {
			fmt.Fprintf(os.Stderr, "dsrlb-bench: %s not found: run scripts/setup-debian.sh\n", bin)
			os.Exit(1)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	err = run(ctx, o)
	if cerr := topo.CloseAll(); cerr != nil {
		err = errors.Join(err, cerr)
	}
	if leaks := topo.Leaks(); len(leaks) > 0 {
		err = errors.Join(err, fmt.Errorf("left behind: %s", strings.Join(leaks, ", ")))
	}
	logf("teardown done: namespaces, processes and pins of %s removed", topo.RunID)
	if err != nil {
		fmt.Fprintln(os.Stderr, "dsrlb-bench:", err)
		os.Exit(1)
	}
}

// allModes are the paths -modes may name.
var allModes = []string{"direct", "dsrlb", "haproxy", "floor", "track", "slot"}

// refModes are the modes of a reference program in place of lbd's, and
// kernelModes those whose in-kernel cost is measured.
var (
	refModes    = []string{"floor", "track", "slot"}
	kernelModes = append([]string{"dsrlb"}, refModes...)
)

func (o *options) parse(sizes, modes string) error {
	for _, s := range strings.Split(sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 0 || n > 16<<20 {
			return fmt.Errorf("-sizes: %q is not a size in bytes (0..16 MiB)", s)
		}
		o.sizes = append(o.sizes, n)
	}
	for _, m := range strings.Split(modes, ",") {
		m = strings.TrimSpace(m)
		if !slices.Contains(allModes, m) {
			return fmt.Errorf("-modes: unknown mode %q (%s)", m, strings.Join(allModes, ", "))
		}
		o.modes = append(o.modes, m)
	}
	switch {
	case o.duration < time.Second || o.duration > time.Minute:
		return fmt.Errorf("-duration %v: want 1s..60s", o.duration)
	case o.warmup < 0 || o.warmup > 10*time.Second:
		return fmt.Errorf("-warmup %v: want 0..10s", o.warmup)
	case o.runs < 1 || o.runs > 9:
		return fmt.Errorf("-runs %d: want 1..9", o.runs)
	case o.conns < 1 || o.conns > 1000 || o.threads < 1 || o.threads > o.conns:
		return fmt.Errorf("-conns %d -threads %d: want 1 <= threads <= conns <= 1000", o.conns, o.threads)
	case o.backends < 1 || o.backends > 9:
		return fmt.Errorf("-backends %d: want 1..9", o.backends)
	case o.rssServices < 0 || o.rssServices > 4000:
		return fmt.Errorf("-rss-services %d: want 0..4000", o.rssServices)
	case !slices.Contains([]string{"roundrobin", "maglev", "source"}, o.sched):
		return fmt.Errorf("-sched %q: want roundrobin, maglev or source", o.sched)
	case o.conntrack < config.MinConntrackSize || o.conntrack > config.MaxConntrackSize:
		return fmt.Errorf("-conntrack %d: want %d..%d (balancer.conntrack.size)", o.conntrack, config.MinConntrackSize, config.MaxConntrackSize)
	}
	if _, err := newCPUPlan(o.forwardCPU); err != nil {
		return err
	}
	if o.forwardCPU >= 0 && slices.Contains(o.modes, "haproxy") {
		// HAProxy is a full proxy: its work is in the processes pinned
		// off the forwarding CPU, and its receive path is steered onto it.
		return fmt.Errorf("-forward-cpu measures in-kernel forwarding (dsrlb, floor, track, slot); measure haproxy without it")
	}
	return o.checkGen()
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

// bench is the running topology and what the cells need.
type bench struct {
	o      options
	tp     *topo.Topology
	lbd    *topo.Proc
	stats  bpfStats
	counts map[int]*bpfRun // in-kernel cost per size, summed over dsrlb cells
	// floor and track modes: their reference program, the balancer's interface.
	refs      map[string]*refProg
	lbIfindex int
	cpus      cpuPlan  // -forward-cpu
	gen       *genLoad // -gen
}

// refProg is a reference program of bpf/bench/floor.c loaded for a mode.
type refProg struct {
	prog  *ebpf.Program
	close func()
	stats bpfStats
}

func run(ctx context.Context, o options) error {
	bins, cleanup, err := binaries(ctx, o.binDir)
	if err != nil {
		return err
	}
	defer cleanup()
	tp, err := topo.New(ctx, bins, topo.Options{Backends: o.backends, Logf: logf})
	if err != nil {
		return err
	}
	cpus, err := newCPUPlan(o.forwardCPU) // checked by parse
	if err != nil {
		return err
	}
	b := &bench{o: o, tp: tp, counts: map[int]*bpfRun{}, refs: map[string]*refProg{}, cpus: cpus}
	if err := cpus.pinSelf(ctx); err != nil {
		return err
	}
	defer func() {
		for _, r := range b.refs {
			r.close()
		}
		if b.gen != nil {
			b.gen.close()
		}
	}()
	if err := b.setup(ctx); err != nil {
		return err
	}
	results, err := b.measure(ctx)
	if err != nil {
		return err
	}
	if len(o.gen) > 0 {
		fmt.Print(b.genTable(results))
	} else {
		fmt.Print(table(o, results))
		fmt.Print(b.kernelTable(results))
	}
	if o.rssServices > 0 && slices.Contains(o.modes, "dsrlb") {
		out, err := b.rss(ctx)
		if err != nil {
			return err
		}
		fmt.Print(out)
	}
	return nil
}

func binaries(ctx context.Context, dir string) (*topo.Bins, func(), error) {
	if dir != "" {
		return topo.BinsIn(dir), func() {}, nil
	}
	tmp, err := os.MkdirTemp("", topo.RunID+"-bin-")
	if err != nil {
		return nil, nil, err
	}
	logf("building hostprep, lbd, dsrlb-testsrv")
	bins, err := topo.Build(ctx, tmp)
	if err != nil {
		os.RemoveAll(tmp)
		return nil, nil, err
	}
	return bins, func() { os.RemoveAll(tmp) }, nil
}

// checkEvery is the health-check interval of both lbd and HAProxy.
const checkEvery = 2 * time.Second

func (b *bench) setup(ctx context.Context) error {
	tp := b.tp
	svc := tp.WebService("web", topo.VIP4, b.o.sched, tp.Backends...)
	svc.Check = topo.Check{Type: "tcp", Interval: checkEvery, Timeout: time.Second, Rise: 1, Fall: 3, Port: topo.HTTPPort}
	if _, err := tp.WriteConfig(topo.Config{Services: []topo.Service{svc}, ConntrackSize: b.o.conntrack}); err != nil {
		return err
	}
	if out, err := tp.Lbd(ctx, "validate"); err != nil {
		return fmt.Errorf("lbd refuses the benchmark configuration: %w\n%s", err, out)
	}
	if _, err := tp.PrepareBackends(ctx); err != nil {
		return err
	}
	servers, err := tp.StartServers(ctx)
	if err != nil {
		return err
	}
	for _, p := range servers {
		if err := b.cpus.pin(ctx, p.PID()); err != nil {
			return err
		}
	}
	if err := b.cpus.steer(ctx, tp); err != nil {
		return err
	}
	// One client making every request on a new connection: widen its
	// ephemeral port range (its sockets close passively, without
	// TIME_WAIT, so ports come back at once).
	if err := tp.Client.NS.SetSysctl("net/ipv4/ip_local_port_range", "1024 65535"); err != nil {
		return err
	}
	if err := tp.TakeVIPByHand(haproxyAddr); err != nil {
		return err
	}
	if slices.Contains(b.o.modes, "dsrlb") {
		var err error
		if b.lbd, err = tp.StartLbd(); err != nil {
			return err
		}
		if err := b.cpus.pin(ctx, b.lbd.PID()); err != nil {
			return err
		}
		var want []string
		for _, be := range tp.Backends {
			want = append(want, be.Role)
		}
		if err := topo.WaitServing(ctx, tp.Client.HTTPClient(false, netip.Addr{}), topo.URL(topo.VIP4, "/"), want, 20*time.Second); err != nil {
			return fmt.Errorf("lbd not serving: %w\n%s", err, b.lbd.Output())
		}
		if b.stats, err = findProgram(tp.PinPath); err != nil {
			return err
		}
	}
	if err := b.loadRefs(); err != nil {
		return err
	}
	if len(b.o.gen) > 0 {
		return b.startGen()
	}
	if slices.Contains(b.o.modes, "haproxy") {
		cfg := filepath.Join(tp.Dir, "haproxy.cfg")
		if err := os.WriteFile(cfg, []byte(haproxyConfig(tp)), 0o644); err != nil {
			return err
		}
		p, err := tp.Start(tp.Balancer, "haproxy", "haproxy", "-db", "-f", cfg)
		if err != nil {
			return err
		}
		if err := b.cpus.pin(ctx, p.PID()); err != nil {
			return err
		}
		if err := topo.WaitServing(ctx, tp.Client.HTTPClient(false, netip.Addr{}), "http://"+haproxyAddr.String()+"/", nil, 10*time.Second); err != nil {
			return fmt.Errorf("haproxy not serving: %w\n%s", err, p.Output())
		}
	}
	return nil
}

// haproxyConfig is HAProxy in TCP mode tuned for this machine: one thread
// per CPU, no logging, splice for large bodies, roundrobin, the same
// health-check interval as lbd. maxconn and ulimit-n stay under the hard
// fd limit (20,000 here: HAProxy needs two fds per proxied connection);
// the load has far fewer connections open at once.
func haproxyConfig(tp *topo.Topology) string {
	var s strings.Builder
	fmt.Fprintf(&s, `# written by dsrlb-bench for %s
global
    nbthread 2
    maxconn 4000
    ulimit-n 10000
    pidfile %s

defaults
    mode tcp
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    option splice-auto

frontend bench
    bind %s:80
    maxconn 4000
    default_backend servers

backend servers
    balance roundrobin
`, tp.ID, filepath.Join(tp.Dir, "haproxy.pid"), haproxyAddr)
	for _, be := range tp.Backends {
		fmt.Fprintf(&s, "    server %s %s:%d check inter %dms\n", be.Role, be.IPv4, topo.HTTPPort, checkEvery.Milliseconds())
	}
	return s.String()
}

// cell is one measurement: a mode and size, one run.
type cell struct {
	mode string
	size int        // wrk's cells: the response size
	mix  pktgen.Mix // the generator's cells (-gen)
	wrk  wrkResult
	gen  genResult
	bpf  bpfRun
	cpu  cpuTime
}

// cpuTime is the machine's CPU time from /proc/stat, in USER_HZ ticks:
// everything running on it counts (client, balancer, backends, and any
// other work sharing the machine).
type cpuTime struct{ busy, total, softirq uint64 }

func readCPU() cpuTime {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuTime{}
	}
	line, _, _ := strings.Cut(string(data), "\n")
	f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal ...
	var t cpuTime
	for i, v := range f[1:] {
		n, _ := strconv.ParseUint(v, 10, 64)
		t.total += n
		if i != 3 && i != 4 { // idle, iowait
			t.busy += n
		}
		if i == 6 {
			t.softirq = n
		}
	}
	return t
}

func (t cpuTime) sub(o cpuTime) cpuTime {
	return cpuTime{busy: t.busy - o.busy, total: t.total - o.total, softirq: t.softirq - o.softirq}
}

func (b *bench) measure(ctx context.Context) ([]cell, error) {
	if len(b.o.gen) > 0 {
		return b.measureGen(ctx)
	}
	if b.o.warmup > 0 {
		for _, size := range b.o.sizes {
			for _, mode := range b.o.modes {
				if _, err := b.cell(ctx, mode, size, b.o.warmup); err != nil {
					return nil, fmt.Errorf("warm-up: %w", err)
				}
			}
		}
	}
	var cells []cell
	for r := range b.o.runs {
		for _, size := range b.o.sizes {
			// Rotate the order every run: no mode always follows another.
			modes := slices.Clone(b.o.modes)
			for range r % len(modes) {
				modes = append(modes[1:], modes[0])
			}
			for _, mode := range modes {
				c, err := b.cell(ctx, mode, size, b.o.duration)
				if err != nil {
					return nil, err
				}
				logf("run %d/%d %-7s %8d B: %9.0f req/s %8.1f MB/s p50 %v p99 %v errors %d bpf %.0f ns/run",
					r+1, b.o.runs, mode, size, c.wrk.rps, c.wrk.mbps, c.wrk.p50, c.wrk.p99, c.wrk.errors, c.bpf.perRun())
				cells = append(cells, c)
			}
		}
	}
	return cells, nil
}

// cell points the client at the path of mode and runs wrk for d.
func (b *bench) cell(ctx context.Context, mode string, size int, d time.Duration) (c cell, err error) {
	c = cell{mode: mode, size: size}
	host := topo.VIP4
	switch mode {
	case "direct":
		if err := b.tp.PointVIPAt(b.tp.Client, topo.VIP4, b.tp.Backends[0]); err != nil {
			return c, err
		}
	case "haproxy":
		host = haproxyAddr
	}
	err = b.observe(mode, &c, nil, func() error { return b.wrk(ctx, &c, host, d) })
	return c, err
}

// observe runs prime (nil: none) and then load on mode's path: for dsrlb,
// floor, track and slot with the client's neighbour entry for the VIP on the
// balancer, the mode's reference program attached (floor, track, slot) and the
// kernel's BPF statistics on, the program's runs during load (not prime)
// recorded in c.bpf.
func (b *bench) observe(mode string, c *cell, prime, load func() error) (err error) {
	tp := b.tp
	if prime == nil {
		prime = func() error { return nil }
	}
	if !slices.Contains(kernelModes, mode) {
		if err := prime(); err != nil {
			return err
		}
		return load()
	}
	if err := tp.PointVIPAt(tp.Client, topo.VIP4, tp.Balancer); err != nil {
		return err
	}
	stats := b.stats
	if ref := b.refs[mode]; ref != nil {
		detach, err := b.attachRef(ref)
		if err != nil {
			return err
		}
		defer detach()
		stats = ref.stats
	}
	if err := prime(); err != nil {
		return err
	}
	prev, err := enableBPFStats()
	if err != nil {
		return err
	}
	defer restoreBPFStats(prev)
	before, err := stats.read()
	if err != nil {
		return err
	}
	if err := load(); err != nil {
		return err
	}
	after, err := stats.read()
	if err != nil {
		return err
	}
	c.bpf = after.sub(before)
	return nil
}

// wrk runs wrk for d against host on the client, into c.
func (b *bench) wrk(ctx context.Context, c *cell, host netip.Addr, d time.Duration) error {
	tp := b.tp
	mode, size := c.mode, c.size
	url := fmt.Sprintf("http://%s/bytes?n=%d", netip.AddrPortFrom(host, topo.HTTPPort), size)
	wctx, cancel := context.WithTimeout(ctx, d+30*time.Second)
	defer cancel()
	cpu0 := readCPU()
	name, args := b.cpus.command("wrk", "-t", strconv.Itoa(b.o.threads), "-c", strconv.Itoa(b.o.conns),
		"-d", fmt.Sprintf("%ds", int(d.Round(time.Second).Seconds())), "--timeout", "5s", "--latency", "-H", "Connection: close", url)
	out, err := tp.Client.NS.Run(wctx, name, args...)
	if err != nil {
		return fmt.Errorf("wrk %s: %w\n%s", mode, err, out)
	}
	c.cpu = readCPU().sub(cpu0)
	if c.wrk, err = parseWrk(out); err != nil {
		return fmt.Errorf("wrk %s: %w\n%s", mode, err, out)
	}
	if c.wrk.requests == 0 {
		return fmt.Errorf("wrk %s: no request completed\n%s", mode, out)
	}
	return nil
}

// wrkResult is what one wrk run reported.
type wrkResult struct {
	requests int64
	rps      float64
	mbps     float64 // 10^6 bytes per second read (headers and bodies)
	p50, p99 time.Duration
	errors   int64 // socket errors and non-2xx answers
}

func parseWrk(out string) (wrkResult, error) {
	var r wrkResult
	var secs float64
	var bytes float64
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) == 2 && f[0] == "50%":
			r.p50 = parseLatency(f[1])
		case len(f) == 2 && f[0] == "99%":
			r.p99 = parseLatency(f[1])
		case len(f) >= 6 && f[1] == "requests" && f[2] == "in": // 1234 requests in 8.00s, 1.23MB read
			r.requests, _ = strconv.ParseInt(f[0], 10, 64)
			d, err := time.ParseDuration(strings.TrimSuffix(f[3], ","))
			if err != nil {
				return r, fmt.Errorf("parse %q: %w", line, err)
			}
			secs = d.Seconds()
			bytes = parseBytes(f[4])
		case len(f) > 2 && f[0] == "Socket" && f[1] == "errors:": // connect 0, read 0, write 0, timeout 0
			for i := 3; i < len(f); i += 2 {
				n, _ := strconv.ParseInt(strings.TrimSuffix(f[i], ","), 10, 64)
				r.errors += n
			}
		case strings.HasPrefix(line, "  Non-2xx or 3xx responses:"):
			n, _ := strconv.ParseInt(f[len(f)-1], 10, 64)
			r.errors += n
		}
	}
	if secs == 0 || r.p50 == 0 {
		return r, errors.New("no summary in the output")
	}
	r.rps = float64(r.requests) / secs
	r.mbps = bytes / secs / 1e6
	return r, nil
}

// parseLatency reads wrk's "1.23ms", "456.00us", "1.02s".
func parseLatency(s string) time.Duration {
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0
	}
	return d
}

// parseBytes reads wrk's "1.23MB" (binary units: wrk's MB is 2^20).
func parseBytes(s string) float64 {
	units := []struct {
		suffix string
		mult   float64
	}{{"TB", 1 << 40}, {"GB", 1 << 30}, {"MB", 1 << 20}, {"KB", 1 << 10}, {"B", 1}}
	for _, u := range units {
		if v, ok := strings.CutSuffix(s, u.suffix); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return 0
			}
			return f * u.mult
		}
	}
	return 0
}

// --- in-kernel cost ---------------------------------------------------

const bpfStatsKey = "/proc/sys/kernel/bpf_stats_enabled" // host-wide, not per namespace

func enableBPFStats() (string, error) {
	prev, err := os.ReadFile(bpfStatsKey)
	if err != nil {
		return "", fmt.Errorf("read kernel.bpf_stats_enabled: %w", err)
	}
	if err := os.WriteFile(bpfStatsKey, []byte("1"), 0o644); err != nil {
		return "", fmt.Errorf("set kernel.bpf_stats_enabled=1: %w", err)
	}
	return strings.TrimSpace(string(prev)), nil
}

func restoreBPFStats(prev string) {
	if err := os.WriteFile(bpfStatsKey, []byte(prev), 0o644); err != nil {
		logf("restore kernel.bpf_stats_enabled=%s: %v", prev, err)
	}
}

// bpfStats reads the run-time statistics of lbd's program.
type bpfStats struct {
	id   ebpf.ProgramID
	name string
}

type bpfRun struct {
	ns, runs uint64
}

func (r bpfRun) sub(o bpfRun) bpfRun { return bpfRun{ns: r.ns - o.ns, runs: r.runs - o.runs} }

func (r bpfRun) perRun() float64 {
	if r.runs == 0 {
		return 0
	}
	return float64(r.ns) / float64(r.runs)
}

// findProgram finds the program attached by the tcx link lbd pinned.
func findProgram(pinPath string) (bpfStats, error) {
	l, err := link.LoadPinnedLink(filepath.Join(pinPath, "link"), nil)
	if err != nil {
		return bpfStats{}, fmt.Errorf("load lbd's pinned link (tcx expected): %w", err)
	}
	defer l.Close()
	info, err := l.Info()
	if err != nil {
		return bpfStats{}, fmt.Errorf("read link info: %w", err)
	}
	s := bpfStats{id: info.Program}
	p, err := ebpf.NewProgramFromID(s.id)
	if err != nil {
		return s, fmt.Errorf("open program %d: %w", s.id, err)
	}
	defer p.Close()
	pi, err := p.Info()
	if err != nil {
		return s, fmt.Errorf("read program info: %w", err)
	}
	s.name = pi.Name
	if !strings.HasPrefix(s.name, "dsrlb") {
		return s, fmt.Errorf("program %d behind lbd's link is %q, not dsrlb's", s.id, s.name)
	}
	return s, nil
}

// loadRefs loads the reference program of each of the floor and track
// modes asked for, for the VIP, backend b1 and the balancer's MAC (each is
// attached per cell, attachRef).
func (b *bench) loadRefs() error {
	tp := b.tp
	l, err := tp.Balancer.NS.Netlink().LinkByName(tp.Balancer.Link)
	if err != nil {
		return fmt.Errorf("find %s in %s: %w", tp.Balancer.Link, tp.Balancer.NS.Name, err)
	}
	b.lbIfindex = l.Attrs().Index
	for _, mode := range refModes {
		if !slices.Contains(b.o.modes, mode) {
			continue
		}
		ref, err := loadRef(mode, tp.Backends[0].MAC, tp.Balancer.MAC, uint32(b.o.conntrack))
		if err != nil {
			return err
		}
		b.refs[mode] = ref
		info, err := ref.prog.Info()
		if err != nil {
			return fmt.Errorf("read %s mode's program info: %w", mode, err)
		}
		id, _ := info.ID()
		ref.stats = bpfStats{id: id, name: info.Name}
	}
	return nil
}

// loadRef loads mode's program for the VIP: floor_vip for floor,
// floor_vip_track for track and floor_vip_slot for slot, with a flow
// table of size entries.
func loadRef(mode string, dst, src net.HardwareAddr, size uint32) (*refProg, error) {
	load := map[string]func(netip.Addr, net.HardwareAddr, net.HardwareAddr, uint32) (*floor.VIPTrack, error){
		"track": floor.LoadVIPTrack, "slot": floor.LoadVIPSlot}[mode]
	if load != nil {
		t, err := load(topo.VIP4, dst, src, size)
		if err != nil {
			return nil, err
		}
		return &refProg{prog: t.Prog, close: func() { t.Close() }}, nil
	}
	p, err := floor.LoadVIP(topo.VIP4, dst, src)
	if err != nil {
		return nil, err
	}
	return &refProg{prog: p, close: func() { p.Close() }}, nil
}

// attachRef attaches ref's program with tcx at the head of the balancer
// interface's ingress (ahead of lbd's program, which then sees only what
// it lets continue: ARP, health-check replies) and returns its detach.
func (b *bench) attachRef(ref *refProg) (func(), error) {
	var l link.Link
	err := b.tp.Balancer.NS.Do(func() error {
		var err error
		l, err = link.AttachTCX(link.TCXOptions{Interface: b.lbIfindex, Program: ref.prog, Attach: ebpf.AttachTCXIngress, Anchor: link.Head()})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("attach %s to %s: %w", ref.stats.name, b.tp.Balancer.Link, err)
	}
	return func() {
		if err := l.Close(); err != nil {
			logf("detach %s: %v", ref.stats.name, err)
		}
	}, nil
}

func (s bpfStats) read() (bpfRun, error) {
	p, err := ebpf.NewProgramFromID(s.id)
	if err != nil {
		return bpfRun{}, fmt.Errorf("open program %d: %w", s.id, err)
	}
	defer p.Close()
	st, err := p.Stats()
	if err != nil {
		return bpfRun{}, fmt.Errorf("read program statistics: %w", err)
	}
	return bpfRun{ns: uint64(st.Runtime.Nanoseconds()), runs: st.RunCount}, nil
}

// --- tables -------------------------------------------------------------

func median[T ~float64 | ~int64](xs []T) T {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

type summary struct {
	rps, mbps        float64
	rpsMin, rpsMax   float64
	p50, p99         time.Duration
	errors, requests int64
	bpf              bpfRun
	cpu              cpuTime
}

func summarize(cells []cell, mode string, size int) (summary, bool) {
	var rps, mbps []float64
	var p50, p99 []time.Duration
	var s summary
	for _, c := range cells {
		if c.mode != mode || c.size != size {
			continue
		}
		rps, mbps = append(rps, c.wrk.rps), append(mbps, c.wrk.mbps)
		p50, p99 = append(p50, c.wrk.p50), append(p99, c.wrk.p99)
		s.errors += c.wrk.errors
		s.requests += c.wrk.requests
		s.bpf.ns += c.bpf.ns
		s.bpf.runs += c.bpf.runs
		s.cpu.busy += c.cpu.busy
		s.cpu.total += c.cpu.total
		s.cpu.softirq += c.cpu.softirq
	}
	if len(rps) == 0 {
		return s, false
	}
	s.rps, s.mbps, s.p50, s.p99 = median(rps), median(mbps), median(p50), median(p99)
	s.rpsMin, s.rpsMax = slices.Min(rps), slices.Max(rps)
	return s, true
}

// usage is the share of the machine's CPU time that was busy, and a
// function giving busy CPU microseconds per request.
func (t cpuTime) usage() (float64, func(int64) float64) {
	if t.total == 0 {
		return 0, func(int64) float64 { return 0 }
	}
	return 100 * float64(t.busy) / float64(t.total), func(req int64) float64 {
		// busy ticks are summed over CPUs, 1/clkTck s each
		return float64(t.busy) * 1e6 / clkTck / float64(max(req, 1))
	}
}

// clkTck is USER_HZ, the unit of /proc/stat (100 on Linux).
const clkTck = 100

func ratio(x, base float64) string {
	if base == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f", x/base)
}

func size(n int) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d B", n)
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f", float64(d.Microseconds())/1000) }

func table(o options, cells []cell) string {
	var b strings.Builder
	fmt.Fprintf(&b, "\nEnd to end: wrk -t%d -c%d, new connection per request, %v per cell, median of %d runs (ratio = / direct); service %s, conntrack %d%s\n\n",
		o.threads, o.conns, o.duration, o.runs, o.sched, o.conntrack, forwardNote(o.forwardCPU))
	b.WriteString("| response | path | req/s | × | MB/s | × | p50 ms | × | p99 ms | × | req/s min–max | errors | CPU busy | CPU µs/req |\n")
	b.WriteString("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
	for _, sz := range o.sizes {
		base, _ := summarize(cells, "direct", sz)
		for _, mode := range o.modes {
			s, ok := summarize(cells, mode, sz)
			if !ok {
				continue
			}
			busy, perReq := s.cpu.usage()
			fmt.Fprintf(&b, "| %s | %s | %.0f | %s | %.1f | %s | %s | %s | %s | %s | %.0f–%.0f | %d/%d | %.0f%% | %.0f |\n",
				size(sz), mode, s.rps, ratio(s.rps, base.rps), s.mbps, ratio(s.mbps, base.mbps),
				ms(s.p50), ratio(float64(s.p50), float64(base.p50)), ms(s.p99), ratio(float64(s.p99), float64(base.p99)),
				s.rpsMin, s.rpsMax, s.errors, s.requests, busy, perReq(s.requests))
		}
	}
	return b.String()
}

func (b *bench) kernelTable(cells []cell) string {
	progs := map[string]bpfStats{"dsrlb": b.stats}
	var modes, during []string
	for _, mode := range kernelModes {
		if !slices.Contains(b.o.modes, mode) {
			continue
		}
		st := progs[mode]
		if r := b.refs[mode]; r != nil {
			st = r.stats
		}
		modes = append(modes, mode)
		during = append(during, fmt.Sprintf("the %s cells (%s, prog id %d)", mode, st.name, st.id))
	}
	if len(modes) == 0 {
		return ""
	}
	var s strings.Builder
	fmt.Fprintf(&s, "\nIn-kernel cost during %s, kernel.bpf_stats_enabled=1, all runs summed (× floor: ns/run / floor_vip's)\n\n",
		strings.Join(during, ", "))
	s.WriteString("| response | program | run_cnt | run_time_ns | ns/run | runs/request | × floor |\n|---|---|--:|--:|--:|--:|--:|\n")
	for _, sz := range b.o.sizes {
		fl, _ := summarize(cells, "floor", sz)
		for _, mode := range modes {
			sum, ok := summarize(cells, mode, sz)
			if !ok {
				continue
			}
			fmt.Fprintf(&s, "| %s | %s | %d | %d | %.1f | %.2f | %s |\n", size(sz), mode, sum.bpf.runs, sum.bpf.ns, sum.bpf.perRun(),
				float64(sum.bpf.runs)/float64(max(sum.requests, 1)), ratio(sum.bpf.perRun(), fl.bpf.perRun()))
		}
	}
	if len(b.o.sizes) > 0 && b.o.runs > 1 {
		s.WriteString("\nPer run (ns/run): ")
		for _, c := range cells {
			if c.bpf.runs > 0 {
				fmt.Fprintf(&s, "%s/%s %.0f; ", c.mode, size(c.size), c.bpf.perRun())
			}
		}
		s.WriteString("\n")
	}
	return s.String()
}

// --- lbd memory -----------------------------------------------------------

// rss reloads lbd with o.rssServices services (each with every backend and
// a tcp check every 10 s) and reads its VmRSS and VmHWM before and after.
func (b *bench) rss(ctx context.Context) (string, error) {
	tp := b.tp
	before, err := procStatus(b.lbd.PID())
	if err != nil {
		return "", err
	}
	cfg := topo.Config{}
	for i := range b.o.rssServices {
		svc := tp.WebService(fmt.Sprintf("s%d", i), topo.VIP4, "", tp.Backends...)
		svc.Ports = []int{10000 + i}
		svc.Check = topo.Check{Type: "tcp", Interval: 10 * time.Second, Timeout: time.Second, Port: topo.HTTPPort}
		cfg.Services = append(cfg.Services, svc)
	}
	if _, err := tp.WriteConfig(cfg); err != nil {
		return "", err
	}
	n := strings.Count(b.lbd.Output(), "configuration reloaded")
	start := time.Now()
	if err := b.lbd.Signal(syscall.SIGHUP); err != nil {
		return "", err
	}
	for strings.Count(b.lbd.Output(), "configuration reloaded") == n {
		if time.Since(start) > 2*time.Minute || ctx.Err() != nil {
			return "", fmt.Errorf("lbd did not reload %d services within 2 minutes:\n%s", b.o.rssServices, tail(b.lbd.Output(), 20))
		}
		time.Sleep(20 * time.Millisecond)
	}
	took := time.Since(start)
	time.Sleep(3 * time.Second) // a round of health checks
	after, err := procStatus(b.lbd.PID())
	if err != nil {
		return "", err
	}
	var s strings.Builder
	fmt.Fprintf(&s, "\nlbd memory (/proc/<pid>/status of the running lbd)\n\n| configuration | VmRSS MiB | VmHWM MiB |\n|---|--:|--:|\n")
	fmt.Fprintf(&s, "| 1 service, %d servers, after the load | %.1f | %.1f |\n", len(tp.Backends), before["VmRSS"]/1024, before["VmHWM"]/1024)
	fmt.Fprintf(&s, "| %d services × %d servers (SIGHUP reload: %v) | %.1f | %.1f |\n", b.o.rssServices, len(tp.Backends),
		took.Round(time.Millisecond), after["VmRSS"]/1024, after["VmHWM"]/1024)
	return s.String(), nil
}

// procStatus reads the kB fields of /proc/<pid>/status.
func procStatus(pid int) (map[string]float64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return nil, fmt.Errorf("read lbd status: %w", err)
	}
	m := map[string]float64{}
	for _, line := range strings.Split(string(data), "\n") {
		k, v, ok := strings.Cut(line, ":")
		f := strings.Fields(v)
		if ok && len(f) == 2 && f[1] == "kB" {
			m[k], _ = strconv.ParseFloat(f[0], 64)
		}
	}
	return m, nil
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// forwardNote says, for the table's header, which CPU forwarded alone.
func forwardNote(cpu int) string {
	if cpu < 0 {
		return ""
	}
	return fmt.Sprintf("; CPU %d forwards alone (-forward-cpu)", cpu)
}
