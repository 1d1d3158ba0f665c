package daemon

import (
	"context"
	"embed"
	"encoding/json"
	"html/template"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dsrlb/dsrlb/lbd/datapath"
	"github.com/dsrlb/dsrlb/lbd/health"
	"github.com/dsrlb/dsrlb/lbd/statusjson"
)

// The status page (/ of the metrics address) and its data (/status.json):
// what HAProxy's stats page is to HAProxy. It is served by the metrics
// server, so it has the same TLS and basic authentication. The page
// carries its script and style inline: no external asset is fetched.

//go:embed statuspage/index.html
var statusFS embed.FS

var statusTmpl = template.Must(template.New("index.html").Funcs(template.FuncMap{
	"ports":    statusjson.PortsText,
	"arptext":  arpText,
	"arpguard": arpGuardText,
	"untaken":  statusjson.UntakenText,
}).ParseFS(statusFS, "statuspage/index.html"))

// StatusSampleEvery is how often the daemon samples the counters the
// page's rates are computed from.
const StatusSampleEvery = 2 * time.Second

// statusPage keeps the last status document, rebuilt every
// StatusSampleEvery.
type statusPage struct {
	d     *Daemon
	flows flowCache // conntrack walked at most every flowCacheFor

	// viewed is the last request's time (unix ns): with nobody looking,
	// the sampler does not read the maps (the conntrack walk costs about
	// a second per million flows).
	viewed atomic.Int64

	mu     sync.Mutex
	doc    statusjson.Status
	prevAt time.Time
	prev   map[[2]string]datapath.Counters // by service, backend ("" for the service)
	marks  map[[2]string]stateMark
}

// stateMark is a backend's state and reason and since when they hold.
type stateMark struct {
	state, reason string
	at            time.Time
}

// startStatusPage registers / and /status.json on mux and starts the
// sampler, which runs until ctx ends and reads the maps only while the
// page is looked at.
func (d *Daemon) startStatusPage(ctx context.Context, mux *http.ServeMux) {
	p := &statusPage{d: d, marks: map[[2]string]stateMark{}}
	go func() { // the first request takes the first sample
		t := time.NewTicker(StatusSampleEvery)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-t.C:
				if now.Sub(time.Unix(0, p.viewed.Load())) < statusIdleAfter {
					p.sample(now)
				}
			}
		}
	}()
	statusRoutes(mux, p.current)
}

// StatusHandler serves the status page and /status.json for documents
// from current (lbd serves its own; tests serve chosen ones).
func StatusHandler(current func() statusjson.Status) http.Handler {
	mux := http.NewServeMux()
	statusRoutes(mux, current)
	return mux
}

func statusRoutes(mux *http.ServeMux, current func() statusjson.Status) {
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("Content-Security-Policy", "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src data:")
		renderStatusPage(w, current())
	})
	mux.HandleFunc("GET /status.json", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(current())
	})
}

// statusIdleAfter is how long after the last request the sampler keeps
// sampling.
const statusIdleAfter = 30 * time.Second

// current is the last document; one older than two sample intervals (the
// sampler was idle) is replaced by a fresh sample first, without rates
// over the idle gap.
func (p *statusPage) current() statusjson.Status {
	now := time.Now()
	p.viewed.Store(now.UnixNano())
	p.mu.Lock()
	stale := now.Sub(p.prevAt) > 2*StatusSampleEvery
	if stale {
		p.prev = nil
	}
	p.mu.Unlock()
	if stale {
		p.sample(now)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.doc
}

// renderStatusPage writes the page for doc; the page's script then
// refreshes it from /status.json.
func renderStatusPage(w http.ResponseWriter, doc statusjson.Status) {
	if err := statusTmpl.Execute(w, doc); err != nil {
		http.Error(w, "render status page: "+err.Error(), http.StatusInternalServerError)
	}
}

// sample reads the data plane and what the daemon knows into a new
// document; rates are the counters' change since the previous sample.
func (p *statusPage) sample(now time.Time) {
	d := p.d
	doc := statusjson.Status{SchemaVersion: statusjson.SchemaVersion, Generated: now.UTC(), Source: "lbd",
		Version: d.opts.Version, VIPConflicts: []statusjson.VIPConflict{}, VIPsUntaken: []statusjson.VIPUntaken{}}
	var st datapath.Stats
	var err error
	if d.dp != nil {
		st, err = d.dp.Stats()
	}
	if err != nil {
		doc.ReadError = "read data plane counters: " + err.Error()
	}
	if d.dp != nil && err == nil {
		flows, ct, failed := p.flows.get(d.dp, st)
		for i := range st.Services {
			for j := range st.Services[i].Backends {
				b := &st.Services[i].Backends[j]
				n := flows[[2]string{st.Services[i].Name, b.Name}]
				b.ActiveFlows, b.InactiveFlows = n[0], n[1]
			}
		}
		if failed {
			doc.ReadError = "walk conntrack: failed (active/inactive flows may be stale)"
		}
		doc.Conntrack = StatusConntrack(ct, uint64(d.dp.ConntrackLimit()))
	}
	d.mu.Lock()
	cfg := d.cfg
	doc.Interface, doc.PinPath = cfg.Balancer.Interface, cfg.Balancer.PinPath
	_, reasons := desired(cfg, d.obs)
	sets := d.adminSettings() // lbd set (admin.go)
	doc.Attached, doc.NotAttached = d.detached == "", d.detached
	for _, c := range d.conflicts {
		doc.VIPConflicts = append(doc.VIPConflicts, statusjson.VIPConflict{VIP: c.VIP.String(), MAC: macText(c.MAC)})
	}
	doc.VIPsUntaken = StatusUntaken(d.untaken, true)
	d.mu.Unlock()
	doc.LastReload, _ = d.lastReload.Load().(string)
	doc.ARPGuard = d.arpGuardStatus()
	doc.Services = StatusServices(cfg, st)
	MarkAdmin(doc.Services, sets)
	doc.Verdicts = StatusVerdicts(st)
	if d.bgp != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		doc.BGP = StatusBGP(cfg.Balancer.BGP.ASN, d.bgp.Status(ctx))
		cancel()
	}
	checkSince := map[string]time.Time{}
	if d.checks != nil {
		for _, hs := range d.checks.Status() {
			checkSince[hs.Target.Key] = hs.Since
		}
	}

	p.mu.Lock()
	defer p.mu.Unlock()
	dt := now.Sub(p.prevAt)
	if p.prev != nil {
		doc.RateInterval = dt.Seconds()
	}
	next := map[[2]string]datapath.Counters{}
	marks := map[[2]string]stateMark{}
	for i, s := range st.Services {
		svc := &doc.Services[i]
		next[[2]string{s.Name, ""}] = s.Counters
		if old, ok := p.prev[[2]string{s.Name, ""}]; ok {
			svc.Rates = rates(s.Counters, old, dt)
		}
		for j, b := range s.Backends {
			k := [2]string{s.Name, b.Name}
			be := &svc.Backends[j]
			next[k] = b.Counters
			if old, ok := p.prev[k]; ok {
				be.Rates = rates(b.Counters, old, dt)
			}
			if b.State != datapath.Up {
				be.StateReason = reasons[health.Key(s.Name, b.Name)]
			}
			m, seen := p.marks[k]
			if dm, ok := d.markOf(k); ok && dm.state == be.State && dm.reason == be.StateReason {
				m, seen = dm, true // what apply saw: the same time lbd status shows
			}
			if !seen || m.state != be.State || m.reason != be.StateReason {
				m = stateMark{state: be.State, reason: be.StateReason, at: now.UTC()}
				if since, ok := checkSince[health.Key(s.Name, b.Name)]; !seen && ok {
					m.at = since.UTC() // first sample: the check knows better
				}
			}
			marks[k] = m
			at := m.at
			be.StateSince = &at
		}
	}
	p.prev, p.prevAt, p.marks, p.doc = next, now, marks, doc
}

func rates(now, before datapath.Counters, dt time.Duration) *statusjson.Rates {
	return &statusjson.Rates{Packets: rateOf(now.Packets, before.Packets, dt), Bytes: rateOf(now.Bytes, before.Bytes, dt),
		NewFlows: rateOf(now.NewFlows, before.NewFlows, dt)}
}
