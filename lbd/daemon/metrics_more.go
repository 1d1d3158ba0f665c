package daemon

import (
	"regexp"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dsrlb/dsrlb/lbd/health"
)

// BuildVersion is lbd's version for dsrlb_build_info; the command line
// sets it from the version stamped at link time.
var BuildVersion = "dev"

// checkBuckets cover a check answered from the same segment (well under a
// millisecond) up to the longest timeout anyone should configure.
var checkBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

var (
	descBuildInfo    = prometheus.NewDesc("dsrlb_build_info", "Always 1; labels say which lbd build is running.", []string{"version", "revision", "goversion"}, nil)
	descSvcInfo      = prometheus.NewDesc("dsrlb_service_info", "Always 1; labels give the service's VIP, protocol, ports and scheduler.", []string{"service", "vip", "protocol", "ports", "balance"}, nil)
	descBeInfo       = prometheus.NewDesc("dsrlb_backend_info", "Always 1; labels give the backend's address and the MAC frames are sent to (empty until resolved).", []string{"service", "backend", "address", "mac"}, nil)
	descBeWeight     = prometheus.NewDesc("dsrlb_backend_weight", "Configured weight of the backend; 0 drains it.", []string{"service", "backend"}, nil)
	descCheckTrans   = prometheus.NewDesc("dsrlb_health_check_transitions_total", "Up/down transitions of the backend's health check since its checker started.", []string{"service", "backend"}, nil)
	descChecks       = prometheus.NewDesc("dsrlb_health_checks_total", "Health checks run against the backend since its checker started.", []string{"service", "backend"}, nil)
	descCtEntries    = prometheus.NewDesc("dsrlb_conntrack_entries", "Entries in the conntrack map, idle ones included, counted at most every 30s (the map is an LRU: when full, the least recently used flow is forgotten).", nil, nil)
	descCtLimit      = prometheus.NewDesc("dsrlb_conntrack_entries_limit", "Size of the conntrack map (balancer.conntrack.size).", nil, nil)
	descReloadOK     = prometheus.NewDesc("dsrlb_config_last_reload_successful", "1 when the last configuration load (start or reload) was taken, 0 when it was rejected.", nil, nil)
	descReloadOKTime = prometheus.NewDesc("dsrlb_config_last_reload_success_timestamp_seconds", "Unix time of the last configuration load that was taken (start or reload).", nil, nil)
)

// moreMetrics holds what the daemon reports besides the data plane's
// counters: health check durations, each observed as it happens, and the
// result of the last configuration load. Its zero value is ready to use,
// so checkers may report before the metrics endpoint starts.
type moreMetrics struct {
	once     sync.Once
	checkDur *prometheus.HistogramVec

	mu       sync.Mutex
	loaded   time.Time // last configuration load taken (start or reload)
	lastOK   bool
	observed map[[2]string]bool // label pairs of checkDur, to drop removed backends

	ctMu sync.Mutex // serialises conntrack counts
	ctAt time.Time  // when ctN was counted
	ctN  uint64
}

// ctCountEvery bounds how often a scrape walks the conntrack map: counting
// a million entries takes about a second of kernel time.
const ctCountEvery = 30 * time.Second

func (m *moreMetrics) init() {
	m.once.Do(func() {
		m.checkDur = prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "dsrlb_health_check_duration_seconds",
			Help:    "Duration of the backend's health checks, failed ones included.",
			Buckets: checkBuckets,
		}, []string{"service", "backend"})
		m.mu.Lock()
		m.loaded, m.lastOK = time.Now(), true // lbd does not start on a rejected file
		m.observed = map[[2]string]bool{}
		m.mu.Unlock()
	})
}

// observeCheck is health.Options.OnResult.
func (m *moreMetrics) observeCheck(t health.Target, r health.Result) {
	m.init()
	svc, srv := splitKey(t.Key)
	m.mu.Lock()
	m.observed[[2]string{svc, srv}] = true
	m.mu.Unlock()
	m.checkDur.WithLabelValues(svc, srv).Observe(r.Duration.Seconds())
}

// reloaded records the outcome of a reload.
func (m *moreMetrics) reloaded(ok bool) {
	m.init()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.lastOK = ok
	if ok {
		m.loaded = time.Now()
	}
}

// pruneChecks drops the histograms of backends no longer checked, so a
// removed server does not linger in every scrape until lbd restarts.
func (m *moreMetrics) pruneChecks(keep map[[2]string]bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for k := range m.observed {
		if !keep[k] {
			m.checkDur.DeleteLabelValues(k[0], k[1])
			delete(m.observed, k)
		}
	}
}

// registerMore adds these metrics to reg (the hook in startMetrics).
func (d *Daemon) registerMore(r prometheus.Registerer) {
	d.more.init()
	r.MustRegister(moreCollector{d}, d.more.checkDur)
}

// moreCollector reports, on each scrape, what the configuration and the
// health checks say; none of it walks the data plane's maps except the
// conntrack count.
type moreCollector struct{ d *Daemon }

func (c moreCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descBuildInfo, descSvcInfo, descBeInfo, descBeWeight, descCheckTrans,
		descChecks, descCtEntries, descCtLimit, descReloadOK, descReloadOKTime} {
		ch <- d
	}
}

func (c moreCollector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	gauge(descBuildInfo, 1, BuildVersion, revision(), runtime.Version())
	c.collectConfig(gauge)
	c.collectChecks(ch)
	m := &c.d.more
	m.mu.Lock()
	ok, at := m.lastOK, m.loaded
	m.mu.Unlock()
	gauge(descReloadOK, boolFloat(ok))
	gauge(descReloadOKTime, float64(at.UnixNano())/1e9)
	if c.d.dp == nil {
		return
	}
	gauge(descCtLimit, float64(c.d.dp.ConntrackLimit()))
	if n, err := m.conntrackEntries(c.d.dp.ConntrackEntries); err == nil {
		gauge(descCtEntries, float64(n))
	} else {
		ch <- prometheus.NewInvalidMetric(descCtEntries, err)
	}
}

// conntrackEntries returns a count at most ctCountEvery old.
func (m *moreMetrics) conntrackEntries(count func() (uint64, error)) (uint64, error) {
	m.ctMu.Lock()
	defer m.ctMu.Unlock()
	if !m.ctAt.IsZero() && time.Since(m.ctAt) < ctCountEvery {
		return m.ctN, nil
	}
	n, err := count()
	if err != nil {
		return 0, err
	}
	m.ctN, m.ctAt = n, time.Now()
	return n, nil
}

// collectConfig reports the services and backends of the running
// configuration with the MACs frames are sent to.
func (c moreCollector) collectConfig(gauge func(*prometheus.Desc, float64, ...string)) {
	d := c.d
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, s := range d.cfg.Services {
		ports := make([]string, len(s.Ports))
		for i, p := range s.Ports {
			ports[i] = strconv.Itoa(int(p))
		}
		portList := strings.Join(ports, ",")
		if portList == "" {
			portList = "all"
		}
		gauge(descSvcInfo, 1, s.Name, s.VIP.String(), string(s.Protocol), portList, string(s.Balance))
		for _, srv := range s.Servers {
			mac := srv.MAC
			if mac == nil {
				mac = d.obs.macs[srv.Address]
			}
			gauge(descBeInfo, 1, s.Name, srv.Name, srv.Address.String(), mac.String())
			gauge(descBeWeight, float64(srv.Weight), s.Name, srv.Name)
		}
	}
}

// collectChecks reports check counts and transitions, and drops the
// duration histograms of backends no longer checked.
func (c moreCollector) collectChecks(ch chan<- prometheus.Metric) {
	if c.d.checks == nil {
		return
	}
	keep := map[[2]string]bool{}
	for _, hs := range c.d.checks.Status() {
		svc, srv := splitKey(hs.Target.Key)
		keep[[2]string{svc, srv}] = true
		ch <- prometheus.MustNewConstMetric(descChecks, prometheus.CounterValue, float64(hs.Checks), svc, srv)
		ch <- prometheus.MustNewConstMetric(descCheckTrans, prometheus.CounterValue, float64(hs.Transitions), svc, srv)
	}
	c.d.more.pruneChecks(keep)
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// revision is the VCS revision the binary was built from ("" when the
// build did not record one).
func revision() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	rev, dirty := "", false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev != "" && dirty {
		rev += "-dirty"
	}
	return rev
}

// descParts reads a Desc's String(): name, help and variable labels.
var descParts = regexp.MustCompile(`^Desc\{fqName: ("(?:[^"\\]|\\.)*"), help: ("(?:[^"\\]|\\.)*"), .*variableLabels: \{([^}]*)\}\}$`)

// MetricDoc describes one metric lbd exports.
type MetricDoc struct {
	Name, Help string
	Labels     []string
}

// MetricDocs lists every metric lbd's endpoint can expose, sorted by
// name, derived from the registry it serves (not from a hand-kept list).
func MetricDocs() []MetricDoc {
	var descs describer
	(&Daemon{}).registerMetrics(&descs)
	var out []MetricDoc
	for _, desc := range descs {
		m := descParts.FindStringSubmatch(desc.String())
		if m == nil {
			continue
		}
		name, _ := strconv.Unquote(m[1])
		help, _ := strconv.Unquote(m[2])
		var labels []string
		if m[3] != "" {
			labels = strings.Split(m[3], ",")
		}
		out = append(out, MetricDoc{Name: name, Help: help, Labels: labels})
	}
	slices.SortFunc(out, func(a, b MetricDoc) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// MetricNames lists every metric name lbd's endpoint can expose, as a
// query names it: histograms and summaries with their _bucket, _sum and
// _count series. A test checks with it that dashboards and alert rules
// name only real metrics.
func MetricNames() []string {
	var out []string
	for _, d := range MetricDocs() {
		out = append(out, d.Name, d.Name+"_bucket", d.Name+"_sum", d.Name+"_count")
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// MetricsTable renders lbd's own metrics (dsrlb_*) as a Markdown table,
// for docs/monitoring.md (a test keeps it current).
func MetricsTable() string {
	var b strings.Builder
	b.WriteString("| metric | labels | meaning |\n|---|---|---|\n")
	for _, d := range MetricDocs() {
		if !strings.HasPrefix(d.Name, "dsrlb_") {
			continue
		}
		b.WriteString("| `" + d.Name + "` | " + strings.Join(d.Labels, ", ") + " | " + strings.ReplaceAll(d.Help, "|", "\\|") + " |\n")
	}
	return b.String()
}

// describer is a prometheus.Registerer that keeps the descriptions of
// what is registered instead of serving it.
type describer []*prometheus.Desc

func (r *describer) Register(c prometheus.Collector) error {
	ch := make(chan *prometheus.Desc)
	go func() { c.Describe(ch); close(ch) }()
	for d := range ch {
		*r = append(*r, d)
	}
	return nil
}

func (r *describer) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		r.Register(c)
	}
}

func (r *describer) Unregister(prometheus.Collector) bool { return false }
