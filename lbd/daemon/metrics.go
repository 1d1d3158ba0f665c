package daemon

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/dsrlb/dsrlb/lbd/datapath"
	"github.com/dsrlb/dsrlb/lbd/health"
)

// metrics serves Prometheus metrics. Counters are read from the data plane
// at scrape time, so they are exactly what the kernel counted, per-CPU
// values summed, and survive lbd restarts (the maps are pinned).
type metrics struct {
	srv            *http.Server
	reloadFailures prometheus.Counter
}

var (
	descSvcPackets  = prometheus.NewDesc("dsrlb_service_packets_total", "Packets forwarded to the service's backends.", []string{"service"}, nil)
	descSvcBytes    = prometheus.NewDesc("dsrlb_service_bytes_total", "Bytes forwarded to the service's backends.", []string{"service"}, nil)
	descSvcFlows    = prometheus.NewDesc("dsrlb_service_new_flows_total", "New flows scheduled for the service.", []string{"service"}, nil)
	descSvcNoBe     = prometheus.NewDesc("dsrlb_service_no_backend_packets_total", "Packets to the service passed to the host for lack of a usable backend.", []string{"service"}, nil)
	descBePackets   = prometheus.NewDesc("dsrlb_backend_packets_total", "Packets forwarded to the backend.", []string{"service", "backend"}, nil)
	descBeBytes     = prometheus.NewDesc("dsrlb_backend_bytes_total", "Bytes forwarded to the backend.", []string{"service", "backend"}, nil)
	descBeFlows     = prometheus.NewDesc("dsrlb_backend_new_flows_total", "New flows scheduled to the backend.", []string{"service", "backend"}, nil)
	descBeState     = prometheus.NewDesc("dsrlb_backend_state", "1 for the backend's current data plane state.", []string{"service", "backend", "state"}, nil)
	descCheckUp     = prometheus.NewDesc("dsrlb_health_check_up", "1 when the backend's health check says up.", []string{"service", "backend"}, nil)
	descCheckDur    = prometheus.NewDesc("dsrlb_health_check_last_duration_seconds", "Duration of the backend's last health check.", []string{"service", "backend"}, nil)
	descCheckFails  = prometheus.NewDesc("dsrlb_health_check_failures_total", "Failed health checks since lbd started.", []string{"service", "backend"}, nil)
	descVerdicts    = prometheus.NewDesc("dsrlb_packets_total", "Packets seen by the data plane, by verdict reason.", []string{"reason"}, nil)
	descBGPUp       = prometheus.NewDesc("dsrlb_bgp_session_up", "1 when the BGP session with the peer is established.", []string{"peer"}, nil)
	descBGPAdv      = prometheus.NewDesc("dsrlb_bgp_advertised_prefixes", "Prefixes advertised to the BGP peer.", []string{"peer"}, nil)
	descBGPVIP      = prometheus.NewDesc("dsrlb_bgp_vip_announced", "1 when the VIP is announced over BGP (enough healthy backends), 0 when withdrawn.", []string{"vip"}, nil)
	descVIPConflict = prometheus.NewDesc("dsrlb_vip_conflict", "1 for a VIP lbd did not take because another host (mac) answers for it.", []string{"vip", "mac"}, nil)
	descVIPUntaken  = prometheus.NewDesc("dsrlb_vip_untaken", "1 for a VIP lbd failed to take and retries (backing off to a minute): no traffic is drawn to it meanwhile.", []string{"vip"}, nil)
	descAttached    = prometheus.NewDesc("dsrlb_datapath_attached", "1 while the data plane program is attached as lbd left it, 0 when found detached or replaced (lbd re-attaches it).", nil, nil)
	descRepairs     = prometheus.NewDesc("dsrlb_datapath_reattach_total", "Times lbd re-attached its program after finding it detached or replaced.", nil, nil)
	descBeActive    = prometheus.NewDesc("dsrlb_backend_active_flows", "Established tracked flows of the backend (client ACK seen, no FIN or RST yet; UDP flows); conntrack walked at most every 10s.", []string{"service", "backend"}, nil)
	descBeInactive  = prometheus.NewDesc("dsrlb_backend_inactive_flows", "Tracked flows of the backend not established: TCP SYN seen, closing after a client FIN, closed after a RST.", []string{"service", "backend"}, nil)
	descCtInserted  = prometheus.NewDesc("dsrlb_conntrack_inserted_total", "Conntrack entries created by the data plane (a flow it starts tracking: an IPv4 maglev or source TCP flow from its second packet, others from the first).", nil, nil)
	descCtEvicted   = prometheus.NewDesc("dsrlb_conntrack_evicted_total", "Conntrack entries the LRU evicted to make room (inserted - deleted - present; an estimate).", nil, nil)
	descScrapeError = prometheus.NewDesc("dsrlb_datapath_read_errors", "1 when reading the data plane's maps failed during this scrape.", nil, nil)
)

// collector reads the data plane and the health checks on each scrape.
type collector struct {
	d     *Daemon
	flows *flowCache
}

// flowCacheFor bounds how often a scrape walks the conntrack map (up to
// millions of entries) for the active/inactive gauges.
const flowCacheFor = 10 * time.Second

// flowCache holds the last conntrack walk: active and inactive flows per
// service/backend name, and the table's churn.
type flowCache struct {
	mu       sync.Mutex
	at       time.Time
	active   map[[2]string][2]uint64
	ct       datapath.ConntrackStats
	ctFailed bool
}

func (f *flowCache) get(dp dataPlane, st datapath.Stats) (map[[2]string][2]uint64, datapath.ConntrackStats, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if time.Since(f.at) < flowCacheFor && f.active != nil {
		return f.active, f.ct, f.ctFailed
	}
	f.at, f.active, f.ctFailed = time.Now(), map[[2]string][2]uint64{}, false
	if err := dp.ActiveFlows(&st); err != nil {
		f.ctFailed = true
	}
	for _, s := range st.Services {
		for _, b := range s.Backends {
			f.active[[2]string{s.Name, b.Name}] = [2]uint64{b.ActiveFlows, b.InactiveFlows}
		}
	}
	var err error
	if f.ct, err = dp.ConntrackStats(); err != nil {
		f.ctFailed = true
	}
	return f.active, f.ct, f.ctFailed
}

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descSvcPackets, descSvcBytes, descSvcFlows, descSvcNoBe, descBePackets,
		descBeBytes, descBeFlows, descBeState, descCheckUp, descCheckDur, descCheckFails, descVerdicts, descScrapeError, descBGPUp, descBGPAdv, descBGPVIP, descVIPConflict, descVIPUntaken, descAttached, descRepairs,
		descBeActive, descBeInactive, descCtInserted, descCtEvicted} {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	st, err := c.d.dp.Stats()
	failed := 0.0
	if err != nil {
		failed = 1
	}
	flows, ct, ctFailed := c.flows.get(c.d.dp, st)
	if ctFailed {
		failed = 1
	}
	ch <- prometheus.MustNewConstMetric(descScrapeError, prometheus.GaugeValue, failed)
	c.d.mu.Lock()
	attached := 1.0
	if c.d.detached != "" {
		attached = 0
	}
	ch <- prometheus.MustNewConstMetric(descAttached, prometheus.GaugeValue, attached)
	ch <- prometheus.MustNewConstMetric(descRepairs, prometheus.CounterValue, float64(c.d.repairs))
	for _, cf := range c.d.conflicts {
		ch <- prometheus.MustNewConstMetric(descVIPConflict, prometheus.GaugeValue, 1, cf.VIP.String(), cf.MAC.String())
	}
	for _, u := range c.d.untaken {
		ch <- prometheus.MustNewConstMetric(descVIPUntaken, prometheus.GaugeValue, 1, u.VIP.String())
	}
	c.d.mu.Unlock()
	counter(descCtInserted, ct.Inserted)
	counter(descCtEvicted, ct.Evicted)
	for r, cnt := range st.Reasons {
		counter(descVerdicts, cnt.Packets, r.String())
	}
	for _, s := range st.Services {
		counter(descSvcPackets, s.Counters.Packets, s.Name)
		counter(descSvcBytes, s.Counters.Bytes, s.Name)
		counter(descSvcFlows, s.Counters.NewFlows, s.Name)
		counter(descSvcNoBe, s.Counters.NoBackend, s.Name)
		for _, b := range s.Backends {
			counter(descBePackets, b.Counters.Packets, s.Name, b.Name)
			counter(descBeBytes, b.Counters.Bytes, s.Name, b.Name)
			counter(descBeFlows, b.Counters.NewFlows, s.Name, b.Name)
			n := flows[[2]string{s.Name, b.Name}]
			ch <- prometheus.MustNewConstMetric(descBeActive, prometheus.GaugeValue, float64(n[0]), s.Name, b.Name)
			ch <- prometheus.MustNewConstMetric(descBeInactive, prometheus.GaugeValue, float64(n[1]), s.Name, b.Name)
			for _, state := range []datapath.State{datapath.Up, datapath.Drain, datapath.Down} {
				v := 0.0
				if b.State == state {
					v = 1
				}
				ch <- prometheus.MustNewConstMetric(descBeState, prometheus.GaugeValue, v, s.Name, b.Name, state.String())
			}
		}
	}
	if c.d.bgp != nil {
		gauge := func(d *prometheus.Desc, v float64, label string) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, label)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		bs := c.d.bgp.Status(ctx)
		cancel()
		for _, p := range bs.Peers {
			up := 0.0
			if p.Up {
				up = 1
			}
			gauge(descBGPUp, up, p.Address.String())
			gauge(descBGPAdv, float64(p.Advertised), p.Address.String())
		}
		on := map[string]bool{}
		for _, v := range bs.Announced {
			on[v.String()] = true
		}
		c.d.mu.Lock()
		vips := c.d.cfg.VIPs()
		c.d.mu.Unlock()
		for _, v := range vips {
			val := 0.0
			if on[v.String()] {
				val = 1
			}
			gauge(descBGPVIP, val, v.String())
		}
	}
	for _, hs := range c.d.checks.Status() {
		svc, srv := splitKey(hs.Target.Key)
		up := 0.0
		if hs.State == health.Up {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(descCheckUp, prometheus.GaugeValue, up, svc, srv)
		ch <- prometheus.MustNewConstMetric(descCheckDur, prometheus.GaugeValue, hs.Last.Duration.Seconds(), svc, srv)
		counter(descCheckFails, hs.Failures, svc, srv)
	}
}

func splitKey(key string) (string, string) {
	for i := 0; i < len(key); i++ {
		if key[i] == '/' {
			return key[:i], key[i+1:]
		}
	}
	return key, ""
}

// registerMetrics registers every metric lbd serves with r (also used to
// list them, see MetricNames).
func (d *Daemon) registerMetrics(r prometheus.Registerer) *metrics {
	m := &metrics{reloadFailures: prometheus.NewCounter(prometheus.CounterOpts{
		Name: "dsrlb_reload_failures_total", Help: "Configuration reloads rejected (the running configuration was kept).",
	})}
	r.MustRegister(collector{d, &flowCache{}}, arpCollector{d}, m.reloadFailures, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	d.registerMore(r)
	d.registerAdmin(r) // admin.go
	return m
}

// startMetrics serves /metrics on the configured address; "" turns it off.
func (d *Daemon) startMetrics(ctx context.Context) error {
	reg := prometheus.NewRegistry()
	m := d.registerMetrics(reg)
	d.metrics = m
	ln := d.metricsLn // bound in preflight
	if ln == nil {
		return nil
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	d.startStatusPage(ctx, mux) // / and /status.json (statuspage.go)
	m.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := d.serveMetrics(m.srv, ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			d.log.Error("metrics server stopped", "err", err)
		}
	}()
	d.log.Info("serving metrics", "addr", "http://"+ln.Addr().String()+"/metrics")
	return nil
}

func (m *metrics) close() {
	if m.srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		m.srv.Shutdown(ctx)
	}
}
