package cli

import (
	"strings"
	"time"

	"github.com/dsrlb/dsrlb/lbd/daemon"
	"github.com/dsrlb/dsrlb/lbd/datapath"
	"github.com/dsrlb/dsrlb/lbd/health"
	"github.com/dsrlb/dsrlb/lbd/statusjson"
	"github.com/dsrlb/dsrlb/shared/config"
)

// statusDoc is `lbd status --json`: the versioned schema of
// lbd/statusjson (docs/status-json.md), read from the pinned maps.
func statusDoc(cfg *config.Config, st datapath.Stats, ct datapath.ConntrackStats, bs *bgpStatusJSON, d daemonJSON) statusjson.Status {
	doc := statusjson.Status{
		SchemaVersion: statusjson.SchemaVersion,
		Generated:     time.Now().UTC().Truncate(time.Millisecond),
		Source:        "lbd status",
		Version:       daemon.BuildVersion,
		Interface:     cfg.Balancer.Interface,
		PinPath:       cfg.Balancer.PinPath,
		Daemon:        &statusjson.Daemon{Running: d.Running, PID: d.PID},
		Attached:      d.NotAttached == "",
		NotAttached:   d.NotAttached,
		Services:      daemon.StatusServices(cfg, st),
		Verdicts:      daemon.StatusVerdicts(st),
		Conntrack:     daemon.StatusConntrack(ct, uint64(cfg.Balancer.Conntrack.Size)),
		VIPConflicts:  []statusjson.VIPConflict{},
		VIPsUntaken:   daemon.StatusUntaken(d.VIPsUntaken, d.Running),
	}
	if !d.LastSeen.IsZero() {
		seen := d.LastSeen
		doc.Daemon.LastSeen = &seen
	}
	for _, c := range d.VIPConflicts {
		doc.VIPConflicts = append(doc.VIPConflicts, statusjson.VIPConflict{VIP: c.VIP.String(), MAC: c.MAC})
	}
	markAdmin(cfg, doc.Services) // set.go
	for i := range doc.Services {
		for j := range doc.Services[i].Backends {
			b := &doc.Services[i].Backends[j]
			b.StateReason = stateReason(b, d.Running, d.Reasons[health.Key(doc.Services[i].Name, b.Name)])
			if why := drainReason(findService(cfg, doc.Services[i].Name), b); why != "" {
				b.StateReason = why
				if !d.Running {
					b.StateReason += " (as last written: lbd is not running)"
				}
			}
		}
	}
	if bs != nil {
		doc.BGP = daemon.StatusBGP(cfg.Balancer.BGP.ASN, bs.Status)
		doc.BGP.Running, doc.BGP.Note = bs.Running, bs.Note
	}
	return doc
}

// stateReason tells why a backend is not up, from what the maps hold: lbd
// puts a backend down for a missing MAC or a failing check, and drains it
// for weight 0 (lbd/daemon desired.go). recorded is the daemon's own
// reason (its reasons file): it says which check failed and how, and is
// used when it agrees with the maps.
func stateReason(b *statusjson.Backend, running bool, recorded string) string {
	var why string
	switch {
	case b.State == statusjson.StateUp:
		return ""
	case b.State == statusjson.StateDrain:
		why = "weight 0: draining"
	case b.MAC == "":
		why = "no MAC: " + b.Address + " does not answer ARP/ND on the balancer interface"
	case strings.HasPrefix(recorded, "health check failing"):
		why = recorded
	default:
		why = "health check failing"
	}
	if !running {
		why += " (as last written: lbd is not running)"
	}
	return why
}

// addRates fills the rates of doc from the counters of before, read dt
// earlier; services and backends are matched by name (a reload in
// between leaves new ones without rates).
func addRates(doc *statusjson.Status, before []statusjson.Service, dt time.Duration) {
	doc.RateInterval = dt.Seconds()
	old := map[[2]string]statusjson.Counters{}
	for _, s := range before {
		old[[2]string{s.Name, ""}] = s.Counters
		for _, b := range s.Backends {
			old[[2]string{s.Name, b.Name}] = b.Counters
		}
	}
	rate := func(now, was uint64) float64 {
		if now < was {
			return 0
		}
		return float64(now-was) / dt.Seconds()
	}
	rates := func(now statusjson.Counters, k [2]string) *statusjson.Rates {
		was, ok := old[k]
		if !ok {
			return nil
		}
		return &statusjson.Rates{Packets: rate(now.Packets, was.Packets), Bytes: rate(now.Bytes, was.Bytes), NewFlows: rate(now.NewFlows, was.NewFlows)}
	}
	for i := range doc.Services {
		s := &doc.Services[i]
		s.Rates = rates(s.Counters, [2]string{s.Name, ""})
		for j := range s.Backends {
			s.Backends[j].Rates = rates(s.Backends[j].Counters, [2]string{s.Name, s.Backends[j].Name})
		}
	}
}
