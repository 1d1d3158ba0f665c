// Package integration runs dsrlb end to end in network namespaces: a client,
// a balancer and three backends on one bridge (see integration/topo), with
// real traffic, asserting what a user cares about. It needs root; outside
// CI it skips without, with CI=true it fails.
//
// Run one scenario: go test ./integration -run TestARPOnlyBalancerAnswers -v
package integration

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dsrlb/dsrlb/integration/topo"
	"github.com/dsrlb/dsrlb/internal/nettest"
)

// result of one scenario, for the summary TestMain prints.
type result struct {
	name   string
	status string // PASS, FAIL, SKIP
	dur    time.Duration
	note   string
}

var (
	resultsMu sync.Mutex
	results   []result

	binsOnce sync.Once
	bins     *topo.Bins
	binsErr  error
	binsDir  string
)

func TestMain(m *testing.M) {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		s := <-sigs
		fmt.Fprintf(os.Stderr, "integration: %v: removing every namespace, process and pin of %s\n", s, topo.RunID)
		if err := topo.CloseAll(); err != nil {
			fmt.Fprintln(os.Stderr, "integration:", err)
		}
		os.RemoveAll(binsDir)
		os.Exit(130)
	}()

	code := m.Run()

	if err := topo.CloseAll(); err != nil { // anything a test left behind
		fmt.Fprintln(os.Stderr, "integration:", err)
		code = 1
	}
	if binsDir != "" {
		os.RemoveAll(binsDir)
	}
	printSummary()
	if leaks := topo.Leaks(); len(leaks) > 0 {
		fmt.Fprintf(os.Stderr, "integration: LEAK: %d object(s) of run %s left behind:\n  %s\n", len(leaks), topo.RunID, strings.Join(leaks, "\n  "))
		code = 1
	}
	os.Exit(code)
}

func printSummary() {
	resultsMu.Lock()
	defer resultsMu.Unlock()
	if len(results) == 0 {
		return
	}
	fmt.Printf("integration summary (run %s):\n", topo.RunID)
	for _, r := range results {
		line := fmt.Sprintf("%-4s  %-40s  %5.1fs", r.status, r.name, r.dur.Seconds())
		if r.note != "" {
			line += "  " + r.note
		}
		fmt.Println(line)
	}
}

// scenario registers t under name in the summary.
type scenario struct {
	t     *testing.T
	name  string
	start time.Time
	note  string
}

func begin(t *testing.T, name string) *scenario {
	s := &scenario{t: t, name: name, start: time.Now()}
	t.Cleanup(func() {
		r := result{name: name, dur: time.Since(s.start), status: "PASS", note: s.note}
		switch {
		case t.Skipped():
			r.status = "SKIP"
		case t.Failed():
			r.status = "FAIL"
		}
		resultsMu.Lock()
		results = append(results, r)
		resultsMu.Unlock()
	})
	return s
}

// skip skips the scenario, saying why in the summary, or fails it under
// CI=true (nettest.SkipOrFail: CI never passes by skipping).
func (s *scenario) skip(format string, args ...any) {
	s.t.Helper()
	s.note = fmt.Sprintf(format, args...)
	nettest.SkipOrFail(s.t, s.note)
}

// needRoot skips (outside CI) or fails (CI=true) without the privileges
// namespaces need.
func (s *scenario) needRoot() {
	s.t.Helper()
	var why string
	if os.Geteuid() != 0 {
		why = "needs root (network namespaces, AF_PACKET)"
	} else if _, err := exec.LookPath("ip"); err != nil {
		why = "needs iproute2's ip (scripts/setup-debian.sh installs it)"
	}
	if why != "" {
		s.skip("%s", why)
	}
}

// mustBins builds hostprep, lbd and dsrlb-testsrv once per test process,
// or takes them from $DSRIT_BINS.
func mustBins(t *testing.T) *topo.Bins {
	t.Helper()
	binsOnce.Do(func() {
		if dir := os.Getenv("DSRIT_BINS"); dir != "" { // prebuilt, e.g. by scripts/demo.sh into out/
			bins = topo.BinsIn(dir)
			return
		}
		binsDir, binsErr = os.MkdirTemp("", topo.RunID+"-bin-")
		if binsErr == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			bins, binsErr = topo.Build(ctx, binsDir)
			cancel()
		}
	})
	if binsErr != nil {
		t.Fatal(binsErr)
	}
	return bins
}

// mustTopology builds a topology removed at the end of the test, after
// printing the logs of its processes if the test failed.
func mustTopology(t *testing.T, opts topo.Options) *topo.Topology {
	t.Helper()
	opts.Logf = t.Logf
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tp, err := topo.New(ctx, mustBins(t), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := tp.Close(); err != nil {
			t.Error(err)
		}
	})
	return tp
}

// logOnFailure prints p's output at the end if the test failed.
func logOnFailure(t *testing.T, p *topo.Proc) {
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("output of %s (pid %d):\n%s", p.Name, p.PID(), p.Output())
		}
	})
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
