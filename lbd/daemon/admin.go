package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dsrlb/dsrlb/lbd/control"
	"github.com/dsrlb/dsrlb/lbd/datapath"
	"github.com/dsrlb/dsrlb/lbd/health"
	"github.com/dsrlb/dsrlb/lbd/notify"
	"github.com/dsrlb/dsrlb/lbd/statusjson"
	"github.com/dsrlb/dsrlb/shared/config"
)

// Runtime administration (lbd set), the notify hook and fallback logging.
//
// lbd set SERVICE/SERVER drain|maint|ready|weight N changes one server
// without editing the file, as HAProxy's `set server` or ipvsadm -e do. A
// setting is transient: it lives in the daemon and in a file beside the
// control socket (AdminFile, /run/dsrlb: gone at boot), which a restarted
// lbd reads back; a reload that changes the server (its address, weight,
// MAC, check or fallback role), or removes it, drops the setting, and so
// does `ready`. drain keeps the server's established flows and sends it no
// new ones (IPVS weight 0); maint takes it out as a failed check does: its
// flows move to other servers (for TCP, through DSR, they reset), as for a
// server about to be stopped. Health checks go on in both, so ready brings
// the server back in the state its checks say.

// adminState is a state lbd set gives a server.
type adminState string

const (
	adminDrain adminState = control.SetDrain
	adminMaint adminState = control.SetMaint
)

// adminSetting is lbd set's setting of one server.
type adminSetting struct {
	State  adminState `json:"state,omitempty"`  // "" keeps the configured state
	Weight *uint32    `json:"weight,omitempty"` // nil keeps the configured weight
	Since  time.Time  `json:"since"`
	// Config is the server's configuration when it was set (serverPrint):
	// a reload that changes it drops the setting.
	Config string `json:"config"`
}

// AdminSetting is one server's setting as AdminFile records it.
type AdminSetting struct {
	Service string `json:"service"`
	Server  string `json:"server"`
	adminSetting
}

// Label is how lbd status shows the setting: "drain (admin)",
// "maint (admin)", "weight 5 (admin)" or both.
func (a AdminSetting) Label() string {
	var parts []string
	if a.State != "" {
		parts = append(parts, string(a.State))
	}
	if a.Weight != nil {
		parts = append(parts, fmt.Sprintf("weight %d", *a.Weight))
	}
	return strings.Join(parts, ", ") + " (admin)"
}

// StateName is "drain" or "maint", "" for a weight alone.
func (a AdminSetting) StateName() string { return string(a.State) }

// adminFileDoc is AdminFile's content.
type adminFileDoc struct {
	Note     string         `json:"note"`
	Settings []AdminSetting `json:"settings"`
}

// AdminFile is where the lbd with control socket sock keeps lbd set's
// settings: beside the socket, /run/dsrlb/lbd-<pin>.admin.json.
func AdminFile(sock string) string {
	return strings.TrimSuffix(sock, filepath.Ext(sock)) + ".admin.json"
}

// ReadAdminFile reads the settings recorded at path; a missing file has
// none.
func ReadAdminFile(path string) ([]AdminSetting, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read lbd set's settings: %w", err)
	}
	var doc adminFileDoc
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("read lbd set's settings %s: %w (remove the file to drop them)", path, err)
	}
	return doc.Settings, nil
}

// serverPrint is what a reload must leave alone for a setting to stay.
func serverPrint(srv *config.Server) string {
	return fmt.Sprintf("address=%s weight=%d check=%t mac=%s fallback=%t", srv.Address, srv.Weight, srv.Check, macText(srv.MAC), srv.Fallback)
}

// adminHooks is the daemon's bookkeeping for lbd set, notify and fallback
// logging (one field of Daemon, so daemon.go stays small).
type adminHooks struct {
	reqs     chan adminReq // lbd set requests, answered by the loop
	notifier *notify.Notifier
	loaded   bool // the settings file was read (first apply)
	// last is each backend's state at the last apply (nil before the
	// first: its states are the baseline, no event is sent for them).
	last     map[string]datapath.State
	fallback map[string]bool // services whose fallback was active
	// started: the start succeeded. Until then settings the configuration
	// drops are not written (unsaved), so a failed start leaves the file
	// as the previous lbd left it; saveDeferredAdmin writes them.
	started, unsaved bool
}

type adminReq struct {
	req   control.Request
	reply chan control.Response
}

// openAdmin prepares the hooks before start; closeAdmin ends the notifier.
func (d *Daemon) openAdmin() {
	d.adm.reqs = make(chan adminReq)
	d.adm.notifier = notify.New(d.log, notify.QueueSize)
}

func (d *Daemon) closeAdmin() {
	if d.adm.notifier != nil {
		d.adm.notifier.Close()
	}
}

// adminPath is the settings file; "" without a control socket (tests).
func (d *Daemon) adminPath() string {
	if d.opts.ControlSocket == "" {
		return ""
	}
	return AdminFile(d.opts.ControlSocket)
}

// syncAdmin runs before each apply with d.mu held: it reads the settings
// a previous lbd left (once), drops those whose server the configuration
// changed or removed (written at once, or when the start succeeds), and
// points the notifier at balancer.notify.
func (d *Daemon) syncAdmin() {
	if n := d.cfg.Balancer.Notify; n != nil {
		d.adm.notifier.Set(&notify.Command{Path: n.Command, Timeout: n.Timeout})
	} else {
		d.adm.notifier.Set(nil)
	}
	changed := false
	if !d.adm.loaded {
		d.adm.loaded = true
		d.obs.admin = d.loadAdmin()
		d.holdFallbacks()
	}
	for key, set := range d.obs.admin {
		srv := findServer(d.cfg, key)
		switch {
		case srv == nil:
			d.log.Info("lbd set setting dropped: the server is no longer configured", "backend", key)
		case serverPrint(srv) != set.Config:
			d.log.Info("lbd set setting dropped: the configuration changed the server", "backend", key,
				"was", set.Config, "now", serverPrint(srv))
		default:
			continue
		}
		delete(d.obs.admin, key)
		changed = true
	}
	switch {
	case changed && d.adm.started:
		d.saveAdmin()
	case changed:
		d.adm.unsaved = true
	}
}

// saveDeferredAdmin ends a successful start: settings its configuration
// dropped are written now (syncAdmin).
func (d *Daemon) saveDeferredAdmin() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.adm.started = true
	if d.adm.unsaved {
		d.adm.unsaved = false
		d.saveAdmin()
	}
}

// holdFallbacks keeps, after a start that found no pinned data plane,
// the fallbacks standing by while the primaries' first checks rise
// (fallbackHeld); the data plane is reprogrammed when each service's
// grace ends (one timer per distinct grace: a service with a short one
// must not wait for the longest). A restart adopts the primaries' states
// and needs no hold.
func (d *Daemon) holdFallbacks() {
	if d.dp == nil || d.dp.Adopted() {
		return
	}
	graces := map[time.Duration]bool{}
	for i := range d.cfg.Services {
		if s := &d.cfg.Services[i]; s.Primaries() < len(s.Servers) {
			graces[fallbackGrace(s)] = true
		}
	}
	if len(graces) > 0 {
		d.obs.fresh = time.Now()
	}
	for g := range graces {
		time.AfterFunc(g, d.markDirty)
	}
}

func (d *Daemon) loadAdmin() map[string]adminSetting {
	m := map[string]adminSetting{}
	path := d.adminPath()
	if path == "" {
		return m
	}
	sets, err := ReadAdminFile(path)
	if err != nil {
		d.log.Warn("lbd set settings not restored", "err", err)
		return m
	}
	for _, s := range sets {
		m[health.Key(s.Service, s.Server)] = s.adminSetting
	}
	if len(m) > 0 {
		d.log.Info("lbd set settings restored", "file", path, "servers", len(m))
	}
	return m
}

// saveAdmin writes the settings atomically (temp, fsync, rename); d.mu held.
func (d *Daemon) saveAdmin() error {
	path := d.adminPath()
	if path == "" {
		return nil
	}
	doc := adminFileDoc{Note: "written by lbd for lbd set: transient settings, dropped by a reload that changes the server", Settings: d.adminSettings()}
	slices.SortFunc(doc.Settings, func(a, b AdminSetting) int {
		return strings.Compare(a.Service+"/"+a.Server, b.Service+"/"+b.Server)
	})
	b, _ := json.MarshalIndent(doc, "", "  ")
	if err := writeAtomic(path, append(b, '\n')); err != nil {
		d.log.Warn("cannot record lbd set's settings: they hold until lbd restarts", "file", path, "err", err)
		return err
	}
	return nil
}

func writeAtomic(path string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name()) // gone after the rename; cleans up a failure
	if _, err = f.Write(b); err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(f.Name(), 0o644)
	}
	if err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// findServer is the configured server with health key key, or nil.
func findServer(cfg *config.Config, key string) *config.Server {
	svc, name := splitKey(key)
	for i := range cfg.Services {
		if s := &cfg.Services[i]; s.Name == svc {
			for j := range s.Servers {
				if s.Servers[j].Name == name {
					return &s.Servers[j]
				}
			}
			return nil
		}
	}
	return nil
}

// handleSet passes an lbd set request to the loop and waits for its answer.
func (d *Daemon) handleSet(req control.Request, done <-chan struct{}) control.Response {
	r := adminReq{req: req, reply: make(chan control.Response, 1)}
	select {
	case d.adm.reqs <- r:
	case <-done:
		return control.Response{Message: "lbd is stopping: nothing set"}
	}
	select {
	case resp := <-r.reply:
		return resp
	case <-done:
		return control.Response{Message: "lbd is stopping: outcome unknown"}
	}
}

// doSet applies an lbd set request (loop only): the setting is recorded,
// written to the settings file and the data plane reprogrammed before the
// answer, so the command returns once it holds.
func (d *Daemon) doSet(req control.Request) control.Response {
	resp, changed := d.record(req)
	if !changed {
		return resp
	}
	if err := d.apply(); err != nil {
		d.log.Error(applyFailure(err), "err", err)
		d.markDirty()
		return setFailure(resp, err)
	}
	return resp
}

// setFailure is lbd set's answer when the apply after recording the
// setting failed: it holds all the same when the Apply passed its commit
// point (ErrCommitted) or only the BGP announcements failed.
func setFailure(resp control.Response, err error) control.Response {
	switch {
	case errors.Is(err, datapath.ErrCommitted):
		resp.Message += "; in force in the data plane, but retiring what it no longer uses failed (retrying): " + err.Error()
		return resp
	case errors.Is(err, errAnnounce):
		resp.Message += "; in force in the data plane, but updating the BGP announcements failed (retrying): " + err.Error()
		return resp
	}
	return control.Response{Message: resp.Message + "; but programming the data plane failed and was undone (retrying): " + err.Error()}
}

// record checks req and records the setting it asks for (in the daemon
// and in the settings file); changed is false when nothing changed
// (refused, or already so).
func (d *Daemon) record(req control.Request) (resp control.Response, changed bool) {
	key := health.Key(req.Service, req.Server)
	srv, err := d.setTarget(req)
	if err != nil {
		return control.Response{Message: err.Error()}, false
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.obs.admin == nil {
		d.obs.admin = map[string]adminSetting{}
	}
	cur, had := d.obs.admin[key]
	next, err := nextSetting(cur, req)
	if err != nil {
		return control.Response{Message: err.Error()}, false
	}
	if had == (next != nil) && (next == nil || sameSetting(cur, *next)) {
		return control.Response{OK: true, Message: key + ": unchanged, already " + settingText(next)}, false
	}
	if next == nil {
		delete(d.obs.admin, key)
	} else {
		next.Since, next.Config = time.Now().UTC().Truncate(time.Second), serverPrint(srv)
		d.obs.admin[key] = *next
	}
	msg := key + ": " + settingText(next) + effect(next)
	if err := d.saveAdmin(); err != nil {
		msg += "; not recorded (" + err.Error() + "): it holds until lbd restarts"
	}
	d.log.Info("lbd set", "backend", key, "setting", settingText(next))
	return control.Response{OK: true, Message: msg}, true
}

// setTarget checks the request names a configured server and a valid
// action.
func (d *Daemon) setTarget(req control.Request) (*config.Server, error) {
	var svc *config.Service
	var names []string
	for i := range d.cfg.Services {
		names = append(names, d.cfg.Services[i].Name)
		if d.cfg.Services[i].Name == req.Service {
			svc = &d.cfg.Services[i]
		}
	}
	if svc == nil {
		return nil, fmt.Errorf("unknown service %q: this lbd serves %s", req.Service, listSome(names))
	}
	names = names[:0]
	for j := range svc.Servers {
		names = append(names, svc.Servers[j].Name)
		if svc.Servers[j].Name == req.Server {
			return &svc.Servers[j], nil
		}
	}
	return nil, fmt.Errorf("unknown server %q in service %s: its servers are %s", req.Server, svc.Name, listSome(names))
}

// listSome names up to ten items.
func listSome(names []string) string {
	if len(names) > 10 {
		return strings.Join(names[:10], ", ") + fmt.Sprintf(" and %d more", len(names)-10)
	}
	return strings.Join(names, ", ")
}

// nextSetting is cur changed by req; nil means none (back to the
// configuration).
func nextSetting(cur adminSetting, req control.Request) (*adminSetting, error) {
	next := cur
	switch req.Action {
	case control.SetDrain:
		next.State = adminDrain
	case control.SetMaint:
		next.State = adminMaint
	case control.SetReady:
		return nil, nil
	case control.SetWeight:
		if req.Weight == nil || *req.Weight < 0 || *req.Weight > config.MaxWeight {
			return nil, fmt.Errorf("weight must be 0-%d (0 drains the server)", config.MaxWeight)
		}
		w := uint32(*req.Weight)
		next.Weight = &w
	default:
		return nil, fmt.Errorf("unknown action %q: give drain, maint, ready or weight N", req.Action)
	}
	return &next, nil
}

func sameSetting(a, b adminSetting) bool {
	return a.State == b.State && (a.Weight == nil) == (b.Weight == nil) && (a.Weight == nil || *a.Weight == *b.Weight)
}

// settingText is what lbd set answers for a setting.
func settingText(s *adminSetting) string {
	if s == nil {
		return "ready: back to the configuration"
	}
	return AdminSetting{adminSetting: *s}.Label()
}

func effect(s *adminSetting) string {
	switch {
	case s == nil:
		return ""
	case s.State == adminMaint:
		return ": out of rotation, its flows move to other servers"
	case s.State == adminDrain:
		return ": established flows stay, no new ones"
	}
	return ""
}

// noteChanges runs after each successful apply: every backend whose state
// changed is passed to the notify command, and a service whose fallback
// became active (or stopped being) is logged.
func (d *Daemon) noteChanges(svcs []datapath.Service, reasons why) {
	first := d.adm.last == nil
	if first {
		d.adm.last = map[string]datapath.State{}
		d.adm.fallback = map[string]bool{}
	}
	seen := make(map[string]bool, len(d.adm.last))
	now := time.Now()
	for i, svc := range svcs {
		if i >= len(d.cfg.Services) {
			break
		}
		cs := &d.cfg.Services[i]
		for j, b := range svc.Backends {
			key := health.Key(svc.Name, b.Name)
			seen[key] = true
			old, known := d.adm.last[key]
			d.adm.last[key] = b.State
			if first || !known || old == b.State {
				continue
			}
			d.adm.notifier.Send(notify.Event{Service: svc.Name, Server: b.Name, Address: b.Addr.String(),
				Old: old.String(), New: b.State.String(), Reason: reasons[key], Fallback: j < len(cs.Servers) && cs.Servers[j].Fallback, Time: now})
		}
		active := FallbackActive(cs, svc)
		if active != d.adm.fallback[svc.Name] {
			if active {
				d.log.Warn(fallbackActive, "service", svc.Name)
			} else if !first {
				d.log.Info("fallback standing by again: a primary server takes new flows", "service", svc.Name)
			}
		}
		d.adm.fallback[svc.Name] = active
	}
	for key := range d.adm.last {
		if !seen[key] {
			delete(d.adm.last, key)
		}
	}
	if len(d.adm.fallback) > len(svcs) { // services removed by a reload
		for name := range d.adm.fallback {
			if !slices.ContainsFunc(svcs, func(s datapath.Service) bool { return s.Name == name }) {
				delete(d.adm.fallback, name)
			}
		}
	}
}

// registerAdmin registers the notify hook's metrics.
func (d *Daemon) registerAdmin(r prometheus.Registerer) {
	count := func(f func(*notify.Notifier) uint64) func() float64 {
		return func() float64 {
			if d.adm.notifier == nil {
				return 0
			}
			return float64(f(d.adm.notifier))
		}
	}
	r.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "dsrlb_notify_dropped_total",
			Help: "Backend state changes not passed to balancer.notify because its queue was full (the command is slow or hangs)."},
			count((*notify.Notifier).Dropped)),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "dsrlb_notify_runs_total",
			Help: "Runs of the balancer.notify command, whatever their outcome."},
			count((*notify.Notifier).Ran)))
}

// markFallbacks marks the fallback servers of svc (cs is its
// configuration; nil: unknown) and whether they take the new flows.
func markFallbacks(cs *config.Service, svc *statusjson.Service) {
	if cs == nil || cs.Primaries() == len(cs.Servers) {
		return
	}
	fallback := map[string]bool{}
	for _, srv := range cs.Servers {
		fallback[srv.Name] = srv.Fallback
	}
	primaryUp, fallbackUp := false, false
	for i := range svc.Backends {
		b := &svc.Backends[i]
		b.Fallback = fallback[b.Name]
		up := b.State == statusjson.StateUp && b.Weight > 0
		primaryUp = primaryUp || up && !b.Fallback
		fallbackUp = fallbackUp || up && b.Fallback
	}
	svc.FallbackActive = !primaryUp && fallbackUp
}

// MarkAdmin puts lbd set's settings on the backends of svcs they belong to
// (Backend.Admin).
func MarkAdmin(svcs []statusjson.Service, sets []AdminSetting) {
	if len(sets) == 0 {
		return
	}
	label := make(map[string]string, len(sets))
	for _, s := range sets {
		label[health.Key(s.Service, s.Server)] = s.Label()
	}
	for i := range svcs {
		for j := range svcs[i].Backends {
			b := &svcs[i].Backends[j]
			b.Admin = label[health.Key(svcs[i].Name, b.Name)]
		}
	}
}

// adminSettings lists the daemon's settings (d.mu held).
func (d *Daemon) adminSettings() []AdminSetting {
	out := make([]AdminSetting, 0, len(d.obs.admin))
	for key, set := range d.obs.admin {
		svc, srv := splitKey(key)
		out = append(out, AdminSetting{Service: svc, Server: srv, adminSetting: set})
	}
	return out
}

// logOut logs a backend leaving rotation: a warning, but for what an
// operator asked for (lbd set) or expects (a fallback standing by).
func (d *Daemon) logOut(key, reason string) {
	level := slog.LevelWarn
	switch reason {
	case reasonStandby, reasonHeld, reasonDrain, reasonMaint:
		level = slog.LevelInfo
	}
	d.log.Log(context.Background(), level, "backend out of rotation", "backend", key, "reason", reason)
}
