// Package monitoring holds the Grafana dashboard and the Prometheus alert
// rules shipped in dsrlb-lbd (/usr/share/dsrlb/monitoring/). Its tests
// check them with promtool and against the metrics lbd really exports.
package monitoring

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/dsrlb/dsrlb/internal/nettest"
	"github.com/dsrlb/dsrlb/lbd/daemon"
)

const (
	rulesFile     = "dsrlb-alerts.yml"
	rulesTestFile = "dsrlb-alerts_test.yml"
	dashboardFile = "dsrlb-dashboard.json"
)

// promtool returns the path of promtool (Debian package prometheus, in
// scripts/setup-debian.sh); missing, it fails under CI=true and skips
// elsewhere.
func promtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err == nil {
		return p
	}
	nettest.SkipOrFail(t, "promtool not found (apt-get install prometheus; scripts/setup-debian.sh does)")
	return ""
}

func runPromtool(t *testing.T, args ...string) {
	t.Helper()
	out, err := exec.Command(promtool(t), args...).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	t.Logf("promtool %s:\n%s", strings.Join(args, " "), out)
}

// TestRulesCheck: the rules pass promtool check rules.
func TestRulesCheck(t *testing.T) { runPromtool(t, "check", "rules", rulesFile) }

// TestRulesFire: each alert fires on the series that should raise it
// and stays quiet otherwise (promtool test rules).
func TestRulesFire(t *testing.T) { runPromtool(t, "test", "rules", rulesTestFile) }

// TestDashboardQueriesParse: every query of the dashboard is valid PromQL,
// checked by promtool as recording rules (Grafana's $__rate_interval
// replaced by a duration).
func TestDashboardQueriesParse(t *testing.T) {
	exprs := dashboardExprs(t)
	if len(exprs) < 10 {
		t.Fatalf("only %d queries found in %s", len(exprs), dashboardFile)
	}
	var b strings.Builder
	b.WriteString("groups:\n  - name: dashboard\n    rules:\n")
	for i, e := range exprs {
		e = strings.ReplaceAll(e, "$__rate_interval", "5m")
		q, _ := json.Marshal(e) // a JSON string is a YAML string
		b.WriteString("      - record: dashboard:query_" + strconv.Itoa(i) + "\n        expr: " + string(q) + "\n")
	}
	path := filepath.Join(t.TempDir(), "dashboard-rules.yml")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	runPromtool(t, "check", "rules", path)
}

// dashboardExprs returns the expr of every panel target.
func dashboardExprs(t *testing.T) []string {
	t.Helper()
	var d struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	var out []string
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			if tg.Expr != "" {
				out = append(out, tg.Expr)
			}
		}
	}
	return out
}

// metricLike matches what looks like the name of a metric of lbd or of
// its Go and process collectors, wherever it appears (queries, template
// variables, descriptions).
var metricLike = regexp.MustCompile(`\b(?:dsrlb|go|process)_[a-zA-Z0-9_]+`)

// unknownMetrics lists the metric-like names in text that lbd does not
// export.
func unknownMetrics(text string, exported []string) []string {
	var out []string
	for _, n := range metricLike.FindAllString(text, -1) {
		if !slices.Contains(exported, n) && !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out
}

// TestOnlyExportedMetrics: the dashboard and the rules name only metrics
// lbd exports, as its registry lists them (daemon.MetricNames), and
// Prometheus's own up.
func TestOnlyExportedMetrics(t *testing.T) {
	exported := daemon.MetricNames()
	if bad := unknownMetrics("rate(dsrlb_service_packets_total[5m]) / dsrlb_no_such_thing", exported); !slices.Equal(bad, []string{"dsrlb_no_such_thing"}) {
		t.Fatalf("the check itself is broken: found %v, want [dsrlb_no_such_thing]", bad)
	}
	for _, f := range []string{dashboardFile, rulesFile} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if bad := unknownMetrics(string(b), exported); len(bad) > 0 {
			t.Errorf("%s names metrics lbd does not export: %v", f, bad)
		}
		if n := len(metricLike.FindAllString(string(b), -1)); n < 5 {
			t.Errorf("%s: only %d metric names found; is the pattern right?", f, n)
		}
	}
	rules, _ := os.ReadFile(rulesFile)
	for _, m := range regexp.MustCompile(`expr: (.*)`).FindAllStringSubmatch(string(rules), -1) {
		if !metricLike.MatchString(m[1]) && !strings.HasPrefix(m[1], "up{") {
			t.Errorf("rule expression %q names no lbd metric", m[1])
		}
	}
}
