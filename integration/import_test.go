package integration

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dsrlb/dsrlb/integration/topo"
	"github.com/dsrlb/dsrlb/shared/config"
)

// importCase is one golden source of lbd/importer/testdata and what the
// source itself says should answer: the backends (by role) that take new
// flows on its HTTP service, with their weights, and those that must not.
type importCase struct {
	tool, file string
	flags      []string // besides --interface; "{b1}" is backend b1's IPv4
	exit       int      // lbd import's documented exit code for this source
	web        netip.Addr
	want       map[string]int // role -> the source's weight
	not        []string       // roles listed with weight 0, or not at all
	udp        []string       // roles that may answer the source-hashed UDP service on :5353
	web6       []string       // roles answering the IPv6 service on [VIP6]:80
	// kill, when set, is a backend whose server is killed; the source's
	// check must take it out within leave (its interval x failures + timeout).
	kill  string
	leave time.Duration
}

var importCases = []importCase{
	{tool: "keepalived", file: "dr_web.conf", exit: 3, web: topo.VIP4,
		want: map[string]int{"b1": 2, "b2": 1, "b3": 1},
		kill: "b3", leave: 2*time.Second*(2+1) + time.Second}, // delay_loop 2 x (retry 2 + 1) + connect_timeout 1
	{tool: "keepalived", file: "clean.conf", exit: 0, web: topo.VIP4,
		want: map[string]int{"b1": 1, "b2": 1}, not: []string{"b3"}},
	// b3 is the sorry_server, now a fallback: it stands by while b1 and b2 are up.
	{tool: "keepalived", file: "fallback.conf", exit: 0, web: topo.VIP4,
		want: map[string]int{"b1": 1, "b2": 1}, not: []string{"b3"}},
	{tool: "aloha", file: "seed.cfg", exit: 0, web: topo.VIP4,
		flags: []string{"--vip", "exchange=" + topo.VIP4.String(), "--server", "exchange1={b1}:80", "--server", "exchange2={b2}:80"},
		want:  map[string]int{"b1": 10, "b2": 10}, not: []string{"b3"}},
	{tool: "aloha", file: "gui.cfg", exit: 0, web: topo.VIP4,
		want: map[string]int{"b1": 2, "b2": 1, "b3": 1},
		kill: "b2", leave: time.Second*config.DefaultFall + 500*time.Millisecond}, // check interval 1 x dsrlb's fall + timeout 0.5
	{tool: "ipvsadm", file: "dr.save", exit: 0, web: topo.VIP4,
		want: map[string]int{"b1": 3, "b2": 1}, not: []string{"b3"}, udp: []string{"b1", "b2"}, web6: []string{"b1", "b2"}},
}

// TestImportRoundTrip: for each golden source, `lbd import` turns it into
// a configuration, lbd runs exactly that file, and the backends the source
// describes answer on the VIP (with their weights), the others do not.
func TestImportRoundTrip(t *testing.T) {
	for _, c := range importCases {
		t.Run(c.tool+"/"+c.file, func(t *testing.T) {
			s := begin(t, "import-roundtrip-"+c.tool+"-"+strings.TrimSuffix(c.file, filepath.Ext(c.file)))
			s.needRoot()
			tp := mustTopology(t, topo.Options{})
			ctx := ctxFor(t, 3*time.Minute)
			yaml := mustImportOnto(t, ctx, tp, c)
			cfg, err := config.Parse("imported", yaml)
			if err != nil {
				t.Fatalf("lbd import printed a configuration that does not validate: %v\n%s", err, yaml)
			}
			servers := mustRunImported(t, ctx, tp, cfg, yaml)
			checkAnswers(t, ctx, tp, c)
			if c.kill != "" {
				checkTakenOut(t, ctx, tp, servers[c.kill], c)
			}
			s.note = fmt.Sprintf("%d services", len(cfg.Services))
		})
	}
}

// harnessAddrs maps the golden files' addresses onto this topology's: the
// files are written on the harness plan (VIP .10, b1..b3 = .11-.13), so
// this is the identity unless the plan changes.
func harnessAddrs(tp *topo.Topology) *strings.Replacer {
	var pairs []string
	pairs = append(pairs, "192.0.2.10", topo.VIP4.String(), "2001:db8::10", topo.VIP6.String())
	for i, b := range tp.Backends {
		pairs = append(pairs, fmt.Sprintf("192.0.2.%d", 11+i), b.IPv4.String(), fmt.Sprintf("2001:db8::%d", 11+i), b.IPv6.String())
	}
	return strings.NewReplacer(pairs...)
}

// mustImportOnto copies the tool's golden directory (includes too) onto the
// harness addresses and runs the built `lbd import` on it.
func mustImportOnto(t *testing.T, ctx context.Context, tp *topo.Topology, c importCase) []byte {
	t.Helper()
	src := filepath.Join("..", "lbd", "importer", "testdata", c.tool)
	dst := filepath.Join(tp.Dir, "source-"+c.tool)
	rep := harnessAddrs(tp)
	err := filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), []byte(rep.Replace(string(data))), 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"import", c.tool, filepath.Join(dst, c.file), "--interface", tp.Balancer.Link}
	for _, f := range c.flags {
		for i, b := range tp.Backends {
			f = strings.ReplaceAll(f, fmt.Sprintf("{b%d}", i+1), b.IPv4.String())
		}
		args = append(args, f)
	}
	cmd := exec.CommandContext(ctx, tp.Bins.Lbd, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	t.Logf("lbd %s: exit %d\n%s", strings.Join(args, " "), code, stderr.String())
	if code != c.exit {
		t.Fatalf("lbd import exited %d, want %d:\n%s", code, c.exit, stderr.String())
	}
	return out
}

// mustRunImported installs the imported file as the balancer's and the
// backends' configuration (only the pin path and metrics are added, as the
// harness needs them unique), prepares the backends and starts lbd.
func mustRunImported(t *testing.T, ctx context.Context, tp *topo.Topology, cfg *config.Config, yaml []byte) map[string]*topo.Proc {
	t.Helper()
	if _, err := tp.WriteConfig(harnessView(cfg)); err != nil { // for hostprep's and Close's bookkeeping
		t.Fatal(err)
	}
	head := "balancer:\n  interface: " + tp.Balancer.Link + "\n"
	if !strings.Contains(string(yaml), head) {
		t.Fatalf("imported file has no %q block:\n%s", head, yaml)
	}
	text := strings.Replace(string(yaml), head, head+fmt.Sprintf("  pin_path: %s\n  metrics:\n    listen: \"\"\n", tp.PinPath), 1)
	if err := os.WriteFile(tp.ConfigPath(), []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := tp.Lbd(ctx, "validate"); err != nil {
		t.Fatalf("lbd validate refuses the imported file: %v\n%s\n%s", err, out, text)
	}
	if out, err := tp.PrepareBackends(ctx); err != nil {
		t.Fatalf("hostprep on the imported file: %v\n%v", err, out)
	}
	servers, err := tp.StartServers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range servers {
		logOnFailure(t, p)
	}
	lbd, err := tp.StartLbd()
	if err != nil {
		t.Fatal(err)
	}
	logOnFailure(t, lbd)
	return servers
}

// harnessView is the imported configuration in the harness's terms.
func harnessView(cfg *config.Config) topo.Config {
	var c topo.Config
	for _, s := range cfg.Services {
		ts := topo.Service{Name: s.Name, VIP: s.VIP, Protocol: string(s.Protocol), Balance: string(s.Balance)}
		for _, p := range s.Ports {
			ts.Ports = append(ts.Ports, int(p))
		}
		for _, sv := range s.Servers {
			ts.Servers = append(ts.Servers, topo.Server{Name: sv.Name, Address: sv.Address, Weight: int(sv.Weight)})
		}
		c.Services = append(c.Services, ts)
	}
	return c
}

// checkAnswers asks the VIP over new connections: every backend the source
// gives a weight answers, a heavier one more often, the others never.
func checkAnswers(t *testing.T, ctx context.Context, tp *topo.Topology, c importCase) {
	t.Helper()
	client := tp.Client.HTTPClient(false, netip.Addr{})
	var want []string
	for role := range c.want {
		want = append(want, role)
	}
	slices.Sort(want)
	url := topo.URL(c.web, "/")
	if err := topo.WaitServing(ctx, client, url, want, 60*time.Second); err != nil {
		t.Fatal(err)
	}
	lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	as := topo.Load(lctx, 80, 4, func(ctx context.Context, _ int) topo.Answer { return topo.Get(ctx, client, url) })
	cancel()
	tally := topo.Tally(as)
	t.Logf("%s: %s", url, topo.FormatTally(tally))
	mustNoFailures(t, url, as)
	for _, role := range want {
		if tally[role] == 0 {
			t.Errorf("%s (weight %d in the source) never answered: %s", role, c.want[role], topo.FormatTally(tally))
		}
	}
	for _, role := range c.not {
		if tally[role] != 0 {
			t.Errorf("%s answered %d times, but the source gives it no new flows", role, tally[role])
		}
	}
	for _, a := range want {
		for _, b := range want {
			if c.want[a] > c.want[b] && tally[a] <= tally[b] {
				t.Errorf("%s (weight %d) answered %d times, not more than %s (weight %d, %d times)", a, c.want[a], tally[a], b, c.want[b], tally[b])
			}
		}
	}
	if len(c.udp) > 0 {
		checkUDPSource(t, ctx, tp, c.udp)
	}
	if len(c.web6) > 0 {
		url6 := topo.URL(topo.VIP6, "/")
		if err := topo.WaitServing(ctx, client, url6, c.web6, 30*time.Second); err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: served by %v", url6, c.web6)
	}
}

// checkUDPSource: the source-hashed UDP service sends every new flow of
// one client to one backend, among those the source lists.
func checkUDPSource(t *testing.T, ctx context.Context, tp *topo.Topology, allowed []string) {
	t.Helper()
	to := netip.AddrPortFrom(topo.VIP4, topo.UDPPort)
	seen := map[string]int{}
	deadline := time.Now().Add(20 * time.Second)
	for n := 0; n < 8 && time.Now().Before(deadline); {
		a := tp.Client.UDPAsk(ctx, to, time.Second)
		if a.Err != nil {
			continue // lbd may still be programming the UDP service
		}
		seen[a.Backend]++
		n++
	}
	if len(seen) != 1 {
		t.Fatalf("UDP %s (balance source): answers from %v, want one backend for one client", to, seen)
	}
	t.Logf("UDP %s (balance source): %v", to, seen)
	for role := range seen {
		if !slices.Contains(allowed, role) {
			t.Fatalf("UDP %s answered by %s, which the source does not list (%v)", to, role, allowed)
		}
	}
}

// checkTakenOut kills one backend's server: the imported check must take it
// out within the time the source's check settings give (plus slack for a
// shared machine), after which every new connection succeeds elsewhere.
func checkTakenOut(t *testing.T, ctx context.Context, tp *topo.Topology, p *topo.Proc, c importCase) {
	t.Helper()
	client := tp.Client.HTTPClient(false, netip.Addr{})
	url := topo.URL(c.web, "/")
	p.Kill()
	killed := time.Now()
	deadline := killed.Add(c.leave + 3*time.Second)
	clean := 0 // consecutive good answers from the others
	for clean < 20 {
		if time.Now().After(deadline) {
			t.Fatalf("%s still in rotation %v after its server died (the source's check allows %v)", c.kill, time.Since(killed).Round(time.Millisecond), c.leave)
		}
		a := topo.Get(ctx, client, url)
		if a.Err != nil || a.Backend == c.kill {
			clean = 0
			time.Sleep(50 * time.Millisecond)
			continue
		}
		clean++
	}
	t.Logf("%s out of rotation %v after its server died (source allows %v)", c.kill, time.Since(killed).Round(time.Millisecond), c.leave)
}
