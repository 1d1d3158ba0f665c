package integration

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"

	"github.com/dsrlb/dsrlb/integration/topo"
)

const metricsAddr = "127.0.0.1:9469" // inside the balancer's namespace

// scrape reads lbd's /metrics from inside the balancer's namespace.
func scrape(t *testing.T, tp *topo.Topology) string {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: tp.Balancer.NS.DialContext}}
	resp, err := c.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		t.Fatalf("scrape lbd metrics: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape lbd metrics: %s %v\n%s", resp.Status, err, b)
	}
	return string(b)
}

// sample returns the value of the first series of name whose labels
// include every label="value" given.
func sample(text, name string, labels ...string) (float64, bool) {
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `(\{[^}]*\})? (\S+)$`)
next:
	for _, m := range re.FindAllStringSubmatch(text, -1) {
		for _, l := range labels {
			if !strings.Contains(m[1], l) {
				continue next
			}
		}
		v, err := strconv.ParseFloat(m[2], 64)
		return v, err == nil
	}
	return 0, false
}

// TestMetricsEndToEnd: a real lbd with real checks and real traffic
// exports what the dashboards and alerts use: promlint finds nothing,
// the check histogram fills from the checkers, conntrack counts the
// flows, backend info carries resolved MACs, and a rejected reload shows
// until a good one is taken.
func TestMetricsEndToEnd(t *testing.T) {
	s := begin(t, "metrics-end-to-end")
	e := startLB(t, s, topo.Options{}, func(tp *topo.Topology) topo.Config {
		c := web(tp, "")
		c.MetricsListen = metricsAddr
		return c
	})
	const n = 40
	mustNoFailures(t, "requests to the VIP", e.newConns(e.client, topo.URL(topo.VIP4, "/"), n, 4, 30*time.Second))
	text := scrape(t, e.tp)

	problems, err := promlint.New(strings.NewReader(text)).Lint()
	if err != nil {
		t.Fatalf("promlint: %v", err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
	expect := func(name string, ok func(float64) bool, want string, labels ...string) {
		t.Helper()
		if v, found := sample(text, name, labels...); !found || !ok(v) {
			t.Errorf("%s%v = %v (found %v), want %s", name, labels, v, found, want)
		}
	}
	atLeast := func(min float64) func(float64) bool { return func(v float64) bool { return v >= min } }
	equal := func(x float64) func(float64) bool { return func(v float64) bool { return v == x } }
	expect("dsrlb_build_info", equal(1), "1")
	expect("dsrlb_conntrack_entries", atLeast(n), fmt.Sprintf(">= %d (one per new connection)", n))
	expect("dsrlb_conntrack_entries_limit", equal(1048576), "the default size")
	expect("dsrlb_config_last_reload_successful", equal(1), "1 after the start")
	for _, b := range e.tp.Backends {
		be := `backend="` + b.Role + `"`
		expect("dsrlb_backend_info", equal(1), "1 with the resolved MAC", be, `address="`+b.IPv4.String()+`"`, `mac="`+b.MAC.String()+`"`)
		expect("dsrlb_backend_weight", equal(1), "the configured 1", be)
		expect("dsrlb_health_check_duration_seconds_count", atLeast(2), ">= 2 real checks", be)
		expect("dsrlb_health_check_duration_seconds_bucket", atLeast(2), "every check under 1s", be, `le="1"`)
		expect("dsrlb_health_checks_total", atLeast(2), ">= 2", be)
		expect("dsrlb_backend_new_flows_total", atLeast(1), ">= 1", be)
	}

	// A file with an error, signalled directly (lbd reload would refuse
	// to send it), is rejected: the gauge says so until a good reload.
	before, _ := sample(text, "dsrlb_config_last_reload_success_timestamp_seconds")
	if err := os.WriteFile(e.tp.ConfigPath(), []byte("balancer: {interface: eth0}\nservices: []\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := e.lbd.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitMetric(t, e.tp, "dsrlb_config_last_reload_successful", 0)
	rejected := scrape(t, e.tp)
	if v, _ := sample(rejected, "dsrlb_reload_failures_total"); v != 1 {
		t.Errorf("dsrlb_reload_failures_total = %v after one rejected reload", v)
	}
	if _, err := e.tp.WriteConfig(e.cfg); err != nil {
		t.Fatal(err)
	}
	if err := e.lbd.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitMetric(t, e.tp, "dsrlb_config_last_reload_successful", 1)
	if after, _ := sample(scrape(t, e.tp), "dsrlb_config_last_reload_success_timestamp_seconds"); after <= before {
		t.Errorf("last successful reload at %v, not after the start's %v", after, before)
	}
}

// waitMetric scrapes until name (without labels) equals want, for at
// most 10 seconds.
func waitMetric(t *testing.T, tp *topo.Topology, name string, want float64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		if v, ok := sample(scrape(t, tp), name); ok && v == want {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s did not become %v within 10s", name, want)
		case <-time.After(100 * time.Millisecond):
		}
	}
}
