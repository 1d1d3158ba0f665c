package daemon

import (
	"context"
	"flag"
	"math"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"

	"github.com/dsrlb/dsrlb/internal/nettest"
	"github.com/dsrlb/dsrlb/lbd/health"
)

// TestMetricNames: the names are read from the registry lbd serves,
// so a metric added there is listed without a hand-kept list.
func TestMetricNames(t *testing.T) {
	names := MetricNames()
	for _, want := range []string{"dsrlb_build_info", "dsrlb_backend_state", "dsrlb_backend_weight",
		"dsrlb_health_check_duration_seconds_bucket", "dsrlb_config_last_reload_successful",
		"dsrlb_conntrack_entries", "dsrlb_conntrack_entries_limit", "dsrlb_reload_failures_total",
		"go_goroutines", "process_start_time_seconds"} {
		if !slices.Contains(names, want) {
			t.Errorf("MetricNames lacks %s", want)
		}
	}
	if slices.Contains(names, "dsrlb_no_such_metric") {
		t.Error("MetricNames lists a metric that does not exist")
	}
}

const metricsConfig = `balancer:
  interface: eth0
  conntrack: {size: 8192}
services:
  - name: web
    vip: 192.0.2.10
    ports: [80, 443]
    balance: roundrobin
    check: {type: none}
    servers:
      - {name: a, address: 192.0.2.11, mac: "02:00:00:00:00:11", weight: 3}
      - {name: b, address: 192.0.2.12, mac: "02:00:00:00:00:12", weight: 0}
  - name: dns
    vip: 192.0.2.20
    protocol: udp
    check: {type: none}
    servers:
      - {name: d, address: 192.0.2.21}
`

// TestMetricsLint scrapes a daemon with a real data plane and real health
// checks: every metric passes promlint, and the new series say what the
// configuration and the checks say.
func TestMetricsLint(t *testing.T) {
	nettest.RequireBPF(t)
	d := newTestDaemon(t, metricsConfig)
	d.obs.health["web/a"] = health.Up
	d.dp = openTest(t, d.cfg)
	svcs, _ := desired(d.cfg, d.obs)
	mustApply(t, d.dp, svcs)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	d.checks = health.New(ctx, health.Options{OnChange: d.onHealth, OnResult: d.more.observeCheck})
	defer d.checks.Close()
	if err := d.checks.Update(healthTargets(d.cfg, d.initialFrom(d.cfg))); err != nil {
		t.Fatal(err)
	}
	// The checks are of type none (no probe traffic leaves this test);
	// results reach the histogram as the checkers report them
	// (health.TestOnResultSeesEveryCheck tests that hook).
	for _, ms := range []int{1, 3} {
		d.more.observeCheck(health.Target{Key: "web/a"}, health.Result{Duration: time.Duration(ms) * time.Millisecond})
	}
	d.more.reloaded(false)

	reg := prometheus.NewRegistry()
	d.registerMetrics(reg)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	problems, err := promlint.NewWithMetricFamilies(mfs).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
	got := byName(mfs)
	expect := func(name string, labels map[string]string, want float64) {
		t.Helper()
		v, ok := value(got[name], labels)
		if !ok || v != want {
			t.Errorf("%s%v = %v (found %v), want %v", name, labels, v, ok, want)
		}
	}
	expect("dsrlb_backend_weight", map[string]string{"service": "web", "backend": "a"}, 3)
	expect("dsrlb_backend_weight", map[string]string{"service": "web", "backend": "b"}, 0)
	expect("dsrlb_service_info", map[string]string{"service": "web", "vip": "192.0.2.10", "protocol": "tcp", "ports": "80,443", "balance": "roundrobin"}, 1)
	expect("dsrlb_service_info", map[string]string{"service": "dns", "ports": "all", "protocol": "udp", "balance": "maglev"}, 1)
	expect("dsrlb_backend_info", map[string]string{"backend": "a", "address": "192.0.2.11", "mac": "02:00:00:00:00:11"}, 1)
	expect("dsrlb_backend_info", map[string]string{"backend": "d", "address": "192.0.2.21", "mac": ""}, 1)
	expect("dsrlb_conntrack_entries_limit", nil, 8192)
	expect("dsrlb_conntrack_entries", nil, 0)
	expect("dsrlb_config_last_reload_successful", nil, 0)
	expect("dsrlb_build_info", map[string]string{"version": BuildVersion}, 1)
	expect("dsrlb_health_checks_total", map[string]string{"backend": "a"}, 0)
	expect("dsrlb_health_check_transitions_total", map[string]string{"backend": "a"}, 0)
	h := find(got["dsrlb_health_check_duration_seconds"], map[string]string{"backend": "a"})
	if h == nil || h.GetHistogram().GetSampleCount() != 2 || math.Abs(h.GetHistogram().GetSampleSum()-0.004) > 1e-9 {
		t.Errorf("check duration histogram of web/a: %v", h)
	}
	if ts, _ := value(got["dsrlb_config_last_reload_success_timestamp_seconds"], nil); time.Since(time.Unix(int64(ts), 0)) > time.Minute {
		t.Errorf("last successful load at %v: want the start of this test", time.Unix(int64(ts), 0))
	}

	// A backend removed by a reload leaves the histogram at the next scrape.
	d.mu.Lock()
	d.cfg.Services = d.cfg.Services[1:]
	d.mu.Unlock()
	if err := d.checks.Update(healthTargets(d.cfg, d.initialFrom(d.cfg))); err != nil {
		t.Fatal(err)
	}
	reg.Gather() // prunes
	mfs, _ = reg.Gather()
	if f := find(byName(mfs)["dsrlb_health_check_duration_seconds"], map[string]string{"backend": "a"}); f != nil {
		t.Errorf("removed backend web/a still has a check duration histogram")
	}
}

func byName(mfs []*dto.MetricFamily) map[string]*dto.MetricFamily {
	out := map[string]*dto.MetricFamily{}
	for _, mf := range mfs {
		out[mf.GetName()] = mf
	}
	return out
}

// find returns the metric of mf whose labels include labels.
func find(mf *dto.MetricFamily, labels map[string]string) *dto.Metric {
	if mf == nil {
		return nil
	}
next:
	for _, m := range mf.GetMetric() {
		have := map[string]string{}
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		for k, v := range labels {
			if hv, ok := have[k]; !ok || hv != v {
				continue next
			}
		}
		return m
	}
	return nil
}

func value(mf *dto.MetricFamily, labels map[string]string) (float64, bool) {
	m := find(mf, labels)
	switch {
	case m == nil:
		return 0, false
	case m.Gauge != nil:
		return m.GetGauge().GetValue(), true
	case m.Counter != nil:
		return m.GetCounter().GetValue(), true
	}
	return 0, false
}

// TestConntrackCountCached: a scrape walks the conntrack map at most every
// ctCountEvery; an error is not cached.
func TestConntrackCountCached(t *testing.T) {
	var m moreMetrics
	calls := 0
	count := func() (uint64, error) { calls++; return uint64(calls * 10), nil }
	if n, _ := m.conntrackEntries(count); n != 10 {
		t.Fatalf("first count %d", n)
	}
	if n, _ := m.conntrackEntries(count); n != 10 || calls != 1 {
		t.Errorf("second scrape: %d after %d walks, want the cached 10 after 1", n, calls)
	}
	m.ctAt = time.Now().Add(-ctCountEvery)
	if n, _ := m.conntrackEntries(count); n != 20 {
		t.Errorf("after %v: %d, want a fresh count", ctCountEvery, n)
	}
}

var update = flag.Bool("update", false, "rewrite the metrics table in docs/monitoring.md")

// TestMonitoringDocTable keeps docs/monitoring.md's metric table equal to
// what lbd's registry describes; go test ./lbd/daemon -run TestMonitoringDocTable -update
// rewrites it.
func TestMonitoringDocTable(t *testing.T) {
	const path, begin, end = "../../docs/monitoring.md", "<!-- metrics-table:begin -->\n", "<!-- metrics-table:end -->"
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	i, j := strings.Index(doc, begin), strings.Index(doc, end)
	if i < 0 || j < i {
		t.Fatalf("%s lacks the %q ... %q markers", path, begin, end)
	}
	want := MetricsTable()
	if got := doc[i+len(begin) : j]; got != want {
		if *update {
			if err := os.WriteFile(path, []byte(doc[:i+len(begin)]+want+doc[j:]), 0o644); err != nil {
				t.Fatal(err)
			}
			return
		}
		t.Errorf("%s metric table is stale; run go test ./lbd/daemon -run TestMonitoringDocTable -update\n--- want\n%s", path, want)
	}
	for _, name := range []string{"dsrlb_backend_weight", "dsrlb_health_check_duration_seconds", "dsrlb_conntrack_entries"} {
		if !strings.Contains(want, "`"+name+"`") {
			t.Errorf("table lacks %s", name)
		}
	}
}
