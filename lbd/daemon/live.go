package daemon

import (
	"encoding/json"
	"sync"
	"time"

	"github.com/dsrlb/dsrlb/lbd/control"
	"github.com/dsrlb/dsrlb/lbd/datapath"
	"github.com/dsrlb/dsrlb/lbd/health"
	"github.com/dsrlb/dsrlb/lbd/statusjson"
)

// What `lbd status` cannot read from the pinned maps, it asks the running
// daemon for (control.CmdLive): since when each backend is in its state,
// and the ARP guard's findings. The pinned maps keep no time.

// stateMarks remember, per service/backend, the data plane state and
// reason last written and when they began; apply updates them.
type stateMarks struct {
	mu sync.Mutex
	m  map[[2]string]stateMark
}

// noteStates records what apply wrote. A backend seen for the first time
// starts when its health check last changed (or started), which is what
// lbd knows best about it.
func (d *Daemon) noteStates(svcs []datapath.Service, reasons why) {
	since := map[string]time.Time{}
	if d.checks != nil {
		for _, hs := range d.checks.Status() {
			since[hs.Target.Key] = hs.Since
		}
	}
	now := time.Now().UTC()
	d.marks.mu.Lock()
	defer d.marks.mu.Unlock()
	next := make(map[[2]string]stateMark, len(d.marks.m))
	for _, s := range svcs {
		for _, b := range s.Backends {
			k := [2]string{s.Name, b.Name}
			st, reason := b.State.String(), reasons[health.Key(s.Name, b.Name)]
			m, seen := d.marks.m[k]
			if !seen || m.state != st || m.reason != reason {
				m = stateMark{state: st, reason: reason, at: now}
				if t, ok := since[health.Key(s.Name, b.Name)]; !seen && ok {
					m.at = t.UTC()
				}
			}
			next[k] = m
		}
	}
	d.marks.m = next
}

// markOf is the mark apply last left for service/backend k.
func (d *Daemon) markOf(k [2]string) (stateMark, bool) {
	d.marks.mu.Lock()
	defer d.marks.mu.Unlock()
	m, ok := d.marks.m[k]
	return m, ok
}

// liveState is the daemon's answer to control.CmdLive.
func (d *Daemon) liveState() statusjson.Live {
	out := statusjson.Live{Backends: []statusjson.LiveBackend{}}
	d.marks.mu.Lock()
	for k, m := range d.marks.m {
		at := m.at
		out.Backends = append(out.Backends, statusjson.LiveBackend{Service: k[0], Name: k[1], State: m.state, StateReason: m.reason, StateSince: &at})
	}
	d.marks.mu.Unlock()
	out.ARPGuard = d.arpGuardStatus()
	return out
}

func (d *Daemon) liveResponse() control.Response {
	b, err := json.Marshal(d.liveState())
	if err != nil {
		return control.Response{Message: "encode live state: " + err.Error()}
	}
	return control.Response{OK: true, Data: b}
}
