// Command dsrlb-demo shows dsrlb end to end on one machine, in network
// namespaces: it builds a client, a balancer and three backends on a
// bridge, prepares the backends with hostprep, starts test servers, runs
// lbd with an example configuration, sends requests to the VIP printing
// which backend answered each, prints `lbd status`, and removes everything.
// It needs root. scripts/demo.sh (the README's run command) runs it.
//
//	dsrlb-demo [-bin DIR]   # DIR holds hostprep, lbd, dsrlb-testsrv; built when omitted
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/dsrlb/dsrlb/integration/topo"
)

func main() {
	binDir := flag.String("bin", "", "directory with hostprep, lbd and dsrlb-testsrv (built into a temp dir when empty)")
	requests := flag.Int("requests", 12, "requests sent to the VIP")
	flag.Parse()
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "dsrlb-demo: needs root (it creates network namespaces)")
		os.Exit(1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	err := run(ctx, *binDir, *requests)
	if cerr := topo.CloseAll(); cerr != nil {
		err = errors.Join(err, cerr)
	}
	leaks := topo.Leaks()
	if len(leaks) > 0 {
		err = errors.Join(err, fmt.Errorf("left behind: %s", strings.Join(leaks, ", ")))
	}
	section("teardown")
	fmt.Printf("namespaces, processes and pins of %s removed; leak check: %d left\n", topo.RunID, len(leaks))
	if err != nil {
		fmt.Fprintln(os.Stderr, "dsrlb-demo:", err)
		os.Exit(1)
	}
}

func section(s string) { fmt.Printf("\n== %s\n", s) }

func indent(s string) string {
	s = strings.TrimRight(s, "\n")
	return "    " + strings.ReplaceAll(s, "\n", "\n    ")
}

func run(ctx context.Context, binDir string, requests int) error {
	var bins *topo.Bins
	if binDir != "" {
		bins = topo.BinsIn(binDir)
	} else {
		dir, err := os.MkdirTemp("", topo.RunID+"-bin-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		fmt.Println("building hostprep, lbd, dsrlb-testsrv ...")
		if bins, err = topo.Build(ctx, dir); err != nil {
			return err
		}
	}

	section("topology: one bridge (in its own namespace), client, balancer, three backends")
	tp, err := topo.New(ctx, bins, topo.Options{})
	if err != nil {
		return err
	}
	for _, h := range tp.Hosts() {
		fmt.Printf("  %-7s netns %-22s %s  %-11s %-14s\n", h.Role, h.NS.Name, h.MAC, h.IPv4, h.IPv6)
	}
	fmt.Printf("  VIP     %s (on the balancer's eth0, on each backend's lo)\n", topo.VIP4)

	web := tp.WebService("web", topo.VIP4, "maglev", tp.Backends...)
	echo := tp.WebService("echo", topo.VIP4, "source", tp.Backends...)
	echo.Protocol, echo.Ports, echo.Check = "udp", []int{topo.UDPPort}, topo.Check{Type: "none"}
	cfgPath, err := tp.WriteConfig(topo.Config{Services: []topo.Service{web, echo}})
	if err != nil {
		return err
	}
	section("configuration " + cfgPath + " (one file for lbd and hostprep)")
	data, _ := os.ReadFile(cfgPath)
	fmt.Println(indent(string(data)))
	if out, err := tp.Lbd(ctx, "validate"); err != nil {
		return fmt.Errorf("%w\n%s", err, out)
	} else {
		fmt.Print(indent(out) + "\n")
	}

	section("backends: hostprep apply (VIP on lo, ARP sysctls, boot files under a private --root)")
	for _, b := range tp.Backends {
		out, err := tp.Hostprep(ctx, b, "apply")
		if err != nil {
			return fmt.Errorf("%w\n%s", err, out)
		}
		fmt.Printf("  %s:\n%s\n", b.Role, indent(out))
	}
	section("backends: hostprep check")
	for _, b := range tp.Backends {
		out, err := tp.Hostprep(ctx, b, "check")
		if err != nil {
			return fmt.Errorf("%w\n%s", err, out)
		}
		fmt.Printf("  %s: %s\n", b.Role, strings.TrimSpace(out))
	}

	section("backend servers: dsrlb-testsrv (HTTP :80, UDP echo :5353) answer with their name and the client they saw")
	if _, err := tp.StartServers(ctx); err != nil {
		return err
	}
	client := tp.Client.HTTPClient(false, netip.Addr{})
	for _, b := range tp.Backends {
		url := topo.URL(b.IPv4, "/")
		a := topo.Get(ctx, client, url)
		if a.Err != nil {
			return fmt.Errorf("direct path to %s: %w", b.Role, a.Err)
		}
		fmt.Printf("  direct  %-24s -> backend=%s client=%s\n", url, a.Backend, a.Client)
	}

	section("balancer: lbd run")
	if !bins.LbdRunAvailable() {
		fmt.Println("  lbd in this build has no `run` command yet: the balancer half of the demo (requests")
		fmt.Println("  to the VIP through lbd, lbd status) is pending until the daemon lands.")
		return nil
	}
	lbd, err := tp.StartLbd()
	if err != nil {
		return err
	}
	fail := func(err error) error {
		return fmt.Errorf("%w\nlbd output:\n%s", err, indent(lbd.Output()))
	}
	url := topo.URL(topo.VIP4, "/")
	if err := topo.WaitServing(ctx, client, url, []string{"b1", "b2", "b3"}, 30*time.Second); err != nil {
		return fail(err)
	}
	if macs, err := topo.ARPProbe(tp.Client, topo.VIP4, 300*time.Millisecond); err == nil {
		fmt.Printf("  who-has %s? answered by %v (the balancer is %s)\n", topo.VIP4, macs, tp.Balancer.MAC)
	}

	section(fmt.Sprintf("%d requests to %s, each on a new connection", requests, url))
	var as []topo.Answer
	for i := 1; i <= requests; i++ {
		a := topo.Get(ctx, client, url)
		if a.Err != nil {
			return fail(fmt.Errorf("request %d: %w", i, a.Err))
		}
		as = append(as, a)
		fmt.Printf("  %3d  backend=%s  client=%s\n", i, a.Backend, a.Client)
	}
	fmt.Printf("  per backend: %s\n", topo.FormatTally(topo.Tally(as)))
	to := netip.AddrPortFrom(topo.VIP4, topo.UDPPort)
	for i := 1; i <= 3; i++ {
		a := tp.Client.UDPAsk(ctx, to, 2*time.Second)
		if a.Err != nil {
			return fail(fmt.Errorf("udp %d: %w", i, a.Err))
		}
		fmt.Printf("  udp %s  backend=%s  client=%s\n", to, a.Backend, a.Client)
	}

	section("lbd status")
	out, err := tp.Lbd(ctx, "status")
	if err != nil {
		return fail(fmt.Errorf("lbd status: %w\n%s", err, out))
	}
	fmt.Println(indent(out))
	if err := lbd.Stop(10 * time.Second); err != nil {
		return fail(fmt.Errorf("stop lbd: %w", err))
	}
	return nil
}
