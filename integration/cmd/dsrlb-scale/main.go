// Command dsrlb-scale measures lbd's control plane at scale, as systemd
// sees it: the real lbd binary in a network namespace of the integration
// harness, from exec to sd_notify READY=1 (NOTIFY_SOCKET), and from SIGHUP
// to the READY=1 after RELOADING=1. It prints a markdown table of
// BENCHMARKS.md ("Control plane at scale"):
//
//   - start: a clean host (no pinned state: `lbd detach` before each run)
//   - restart: lbd stopped and started again, adopting the pinned maps
//   - reload, every service changed (the first server's weight of each)
//   - reload, one service changed
//   - lbd's VmRSS after the reloads, and the kernel memory of the data
//     plane's maps (bpftool map show: bytes_memlock of the pinned maps and
//     of every table they hold)
//
// Services are as in issue 14: one VIP (192.0.2.10), ports 10001..,
// check none, servers with static MACs, so nothing waits for a probe or
// a neighbour. Servers are the topology's backends b1..b3, or for more
// than 3 per service on-link addresses 192.0.2.101.. (no host answers
// them; no packet is sent). Run as root (scripts/bench.sh scale).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/dsrlb/dsrlb/integration/topo"
)

type shape struct{ services, servers int }

func main() {
	bin := flag.String("bin", "", "directory holding the built lbd (required)")
	runs := flag.Int("runs", 3, "runs per shape (median reported)")
	shapesFlag := flag.String("shapes", "1x3,100x3,1000x3,100x100", "services x servers per service, comma-separated")
	flag.Parse()
	shapes, err := parseShapes(*shapesFlag)
	if err == nil && (*bin == "" || *runs < 1 || *runs > 20) {
		err = errors.New("need -bin DIR and -runs 1..20")
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "dsrlb-scale:", err)
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	if err := run(ctx, *bin, *runs, shapes); err != nil {
		fmt.Fprintln(os.Stderr, "dsrlb-scale:", err)
		os.Exit(1)
	}
}

func parseShapes(s string) ([]shape, error) {
	var out []shape
	for _, f := range strings.Split(s, ",") {
		a, b, ok := strings.Cut(f, "x")
		n, err1 := strconv.Atoi(a)
		m, err2 := strconv.Atoi(b)
		if !ok || err1 != nil || err2 != nil || n < 1 || n > 4000 || m < 1 || m > 100 || n*m > 10000 {
			return nil, fmt.Errorf("shape %q: want SERVICESxSERVERS, at most 4000 services, 100 servers each, 10,000 in all", f)
		}
		out = append(out, shape{n, m})
	}
	return out, nil
}

func run(ctx context.Context, bin string, runs int, shapes []shape) error {
	tp, err := topo.New(ctx, topo.BinsIn(bin), topo.Options{Backends: 3})
	if err != nil {
		return err
	}
	defer func() {
		if err := tp.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "dsrlb-scale: cleanup:", err)
		}
	}()
	b := &bench{tp: tp, lbd: filepath.Join(bin, "lbd"), config: filepath.Join(tp.Dir, "scale.yaml")}
	if err := b.listen(); err != nil {
		return err
	}
	defer b.sock.Close()
	load0 := loadavg()
	var rows []row
	for _, sh := range shapes {
		var samples []row
		for i := range runs {
			r, err := b.measure(ctx, sh)
			if err != nil {
				return fmt.Errorf("%d x %d, run %d: %w", sh.services, sh.servers, i+1, err)
			}
			fmt.Fprintf(os.Stderr, "%d x %d run %d: %s\n", sh.services, sh.servers, i+1, r)
			samples = append(samples, r)
		}
		rows = append(rows, median(samples))
	}
	printTable(rows, runs)
	// The machine may be shared: say how busy it was.
	fmt.Printf("\nload average (1, 5, 15 min) at start: %s; at end: %s\n", load0, loadavg())
	return nil
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); err == nil && len(f) >= 3 {
		return strings.Join(f[:3], " ")
	}
	return "unknown"
}

type bench struct {
	tp     *topo.Topology
	lbd    string
	config string
	sock   *net.UnixConn
	notes  chan note
}

type note struct {
	at  time.Time
	msg string
}

// listen opens the socket lbd's sd_notify writes to (NOTIFY_SOCKET is
// inherited by every process the harness starts).
func (b *bench) listen() error {
	path := filepath.Join(b.tp.Dir, "notify.sock")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("listen for sd_notify: %w", err)
	}
	b.sock, b.notes = c, make(chan note, 64)
	os.Setenv("NOTIFY_SOCKET", path)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := c.Read(buf)
			if err != nil {
				close(b.notes)
				return
			}
			b.notes <- note{time.Now(), string(buf[:n])}
		}
	}()
	return nil
}

// waitReady returns when lbd notifies READY=1 (after RELOADING=1 when
// reloading), or fails after d.
func (b *bench) waitReady(ctx context.Context, reloading bool, d time.Duration) (time.Time, error) {
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case n, ok := <-b.notes:
			if !ok {
				return time.Time{}, errors.New("notify socket closed")
			}
			if strings.Contains(n.msg, "RELOADING=1") {
				reloading = false
			}
			if !reloading && strings.Contains(n.msg, "READY=1") {
				return n.at, nil
			}
		case <-timer.C:
			return time.Time{}, fmt.Errorf("no READY=1 within %v", d)
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		}
	}
}

// row is one run (or the median of runs) of one shape.
type row struct {
	shape
	start, restart, reloadAll, reloadOne time.Duration
	rssKiB                               int
	tablesB, conntrackB, otherB          int64
	tables                               int
}

func (r row) String() string {
	return fmt.Sprintf("start %v restart %v reload-all %v reload-one %v rss %d KiB tables %d (%d B) conntrack %d B other %d B",
		r.start, r.restart, r.reloadAll, r.reloadOne, r.rssKiB, r.tables, r.tablesB, r.conntrackB, r.otherB)
}

func (b *bench) writeConfig(sh shape, bump map[int]bool) error {
	var s strings.Builder
	fmt.Fprintf(&s, "balancer:\n  interface: %s\n  pin_path: %s\n  maglev_table_size: 65537\n  metrics: {listen: \"\"}\nservices:\n",
		b.tp.Balancer.Link, b.tp.PinPath)
	for i := range sh.services {
		fmt.Fprintf(&s, "  - name: s%d\n    vip: %s\n    ports: [%d]\n    check: {type: none}\n    servers:\n", i, topo.VIP4, 10001+i)
		for j := range sh.servers {
			addr, mac := b.server(sh, j)
			w := 1
			if j == 0 && bump[i] {
				w = 2
			}
			fmt.Fprintf(&s, "      - {name: b%d, address: %s, mac: \"%s\", weight: %d}\n", j+1, addr, mac, w)
		}
	}
	tmp := b.config + ".tmp"
	if err := os.WriteFile(tmp, []byte(s.String()), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, b.config)
}

func (b *bench) server(sh shape, j int) (netip.Addr, net.HardwareAddr) {
	if sh.servers <= len(b.tp.Backends) {
		h := b.tp.Backends[j]
		return h.IPv4, h.MAC
	}
	return netip.AddrFrom4([4]byte{192, 0, 2, byte(101 + j)}), net.HardwareAddr{0x02, 0, 0, 0, 0x53, byte(j)}
}

func all(n int) map[int]bool {
	m := map[int]bool{}
	for i := range n {
		m[i] = true
	}
	return m
}

// measure runs one shape once: clean start, reloads, memory, restart.
func (b *bench) measure(ctx context.Context, sh shape) (row, error) {
	r := row{shape: sh}
	if err := b.writeConfig(sh, nil); err != nil {
		return r, err
	}
	if err := b.detach(ctx); err != nil {
		return r, err
	}
	p, took, err := b.start(ctx)
	if err != nil {
		return r, err
	}
	defer p.Stop(10 * time.Second)
	r.start = took
	// Every service changed, twice (to the bumped weights and back); one
	// service changed, twice (there and back): the mean of each pair.
	var all2, one2 time.Duration
	for _, step := range []struct {
		bump map[int]bool
		sum  *time.Duration
	}{{all(sh.services), &all2}, {nil, &all2}, {map[int]bool{sh.services / 2: true}, &one2}, {nil, &one2}} {
		d, err := b.reload(ctx, p, sh, step.bump)
		if err != nil {
			return r, err
		}
		*step.sum += d
	}
	r.reloadAll, r.reloadOne = all2/2, one2/2
	if r.rssKiB, err = rss(p.PID()); err != nil {
		return r, err
	}
	if err := b.memlock(ctx, &r); err != nil {
		return r, err
	}
	if err := p.Stop(10 * time.Second); err != nil {
		return r, fmt.Errorf("stop lbd: %w", err)
	}
	p2, took, err := b.start(ctx)
	if err != nil {
		return r, err
	}
	r.restart = took
	return r, p2.Stop(10 * time.Second)
}

func (b *bench) detach(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if _, err := b.tp.Balancer.NS.Run(ctx, b.lbd, "detach", "--config", b.config); err != nil {
		return fmt.Errorf("lbd detach: %w", err)
	}
	return nil
}

func (b *bench) start(ctx context.Context) (*topo.Proc, time.Duration, error) {
	t0 := time.Now()
	p, err := b.tp.Start(b.tp.Balancer, "lbd", b.lbd, "run", "--config", b.config)
	if err != nil {
		return nil, 0, err
	}
	at, err := b.waitReady(ctx, false, 2*time.Minute)
	if err != nil {
		p.Kill()
		return nil, 0, fmt.Errorf("lbd start: %w\n%s", err, tail(p.Output()))
	}

	return p, at.Sub(t0), nil
}

func (b *bench) reload(ctx context.Context, p *topo.Proc, sh shape, bump map[int]bool) (time.Duration, error) {
	if err := b.writeConfig(sh, bump); err != nil {
		return 0, err
	}
	t0 := time.Now()
	if err := p.Signal(syscall.SIGHUP); err != nil {
		return 0, err
	}
	at, err := b.waitReady(ctx, true, 2*time.Minute)
	if err != nil {
		return 0, fmt.Errorf("lbd reload: %w\n%s", err, tail(p.Output()))
	}
	if strings.Contains(p.Output(), "reload rejected") {
		return 0, fmt.Errorf("lbd rejected the reload:\n%s", tail(p.Output()))
	}
	return at.Sub(t0), nil
}

func tail(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-15):], "\n")
}

func rss(pid int) (int, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(data), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			return strconv.Atoi(f[1])
		}
	}
	return 0, errors.New("no VmRSS in /proc/PID/status")
}

// memlock sums bpftool's bytes_memlock of the maps pinned under the pin
// path and of every table (inner map) lb_maglev and lb_rr hold.
func (b *bench) memlock(ctx context.Context, r *row) error {
	var maps []struct {
		ID      int    `json:"id"`
		Name    string `json:"name"`
		Memlock int64  `json:"bytes_memlock"`
	}
	if err := bpftool(ctx, &maps, "map", "show"); err != nil {
		return err
	}
	byID := map[int]int64{}
	for _, m := range maps {
		byID[m.ID] = m.Memlock
	}
	pins, err := os.ReadDir(b.tp.PinPath)
	if err != nil {
		return err
	}
	var tables []int
	for _, e := range pins {
		var m struct {
			ID   int    `json:"id"`
			Name string `json:"name"`
		}
		path := filepath.Join(b.tp.PinPath, e.Name())
		if err := bpftool(ctx, &m, "map", "show", "pinned", path); err != nil {
			continue // the link pin
		}
		switch {
		case m.Name == "lb_conntrack":
			r.conntrackB += byID[m.ID]
		default:
			r.otherB += byID[m.ID]
		}
		if m.Name == "lb_maglev" || m.Name == "lb_rr" {
			// Each value is the inner map's id, as bytes ("0x60", ...).
			var entries []struct {
				Value []string `json:"value"`
			}
			if err := bpftool(ctx, &entries, "map", "dump", "pinned", path); err != nil {
				return err
			}
			for _, en := range entries {
				id := 0
				for i := len(en.Value) - 1; i >= 0; i-- {
					v, err := strconv.ParseUint(strings.TrimPrefix(en.Value[i], "0x"), 16, 8)
					if err != nil {
						return fmt.Errorf("bpftool map dump %s: value %v: %w", path, en.Value, err)
					}
					id = id<<8 | int(v)
				}
				tables = append(tables, id)
			}
		}
	}
	slices.Sort(tables)
	tables = slices.Compact(tables) // the empty table is shared
	r.tables = len(tables)
	for _, id := range tables {
		r.tablesB += byID[id]
	}
	return nil
}

func bpftool(ctx context.Context, v any, args ...string) error {
	out, err := exec.CommandContext(ctx, "bpftool", append([]string{"-j"}, args...)...).Output()
	if err != nil {
		return fmt.Errorf("bpftool %s: %w", strings.Join(args, " "), err)
	}
	return json.Unmarshal(out, v)
}

func median(rs []row) row {
	m := rs[0]
	pick := func(f func(row) time.Duration) time.Duration {
		v := make([]time.Duration, len(rs))
		for i, r := range rs {
			v[i] = f(r)
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	m.start = pick(func(r row) time.Duration { return r.start })
	m.restart = pick(func(r row) time.Duration { return r.restart })
	m.reloadAll = pick(func(r row) time.Duration { return r.reloadAll })
	m.reloadOne = pick(func(r row) time.Duration { return r.reloadOne })
	rssV := make([]int, len(rs))
	for i, r := range rs {
		rssV[i] = r.rssKiB
	}
	slices.Sort(rssV)
	m.rssKiB = rssV[len(rssV)/2]
	return m
}

func ms(d time.Duration) string { return fmt.Sprintf("%.0f ms", float64(d.Microseconds())/1000) }

func mib(b int64) string { return fmt.Sprintf("%.2f MiB", float64(b)/(1<<20)) }

func printTable(rows []row, runs int) {
	fmt.Printf("\nmedian of %d runs; reloads: mean of two (there and back) per run\n\n", runs)
	fmt.Println("| services × servers | start → READY | restart (adopt) → READY | reload, every service changed | reload, one service changed | lbd VmRSS | tables (count, memlock) | conntrack memlock | other maps memlock |")
	fmt.Println("|---|--:|--:|--:|--:|--:|--:|--:|--:|")
	for _, r := range rows {
		fmt.Printf("| %d × %d | %s | %s | %s | %s | %.1f MiB | %d, %s | %s | %s |\n", r.services, r.servers,
			ms(r.start), ms(r.restart), ms(r.reloadAll), ms(r.reloadOne), float64(r.rssKiB)/1024,
			r.tables, mib(r.tablesB), mib(r.conntrackB), mib(r.otherB))
	}
}
