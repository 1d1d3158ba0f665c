package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/dsrlb/dsrlb/lbd/control"
	"github.com/dsrlb/dsrlb/lbd/daemon"
	"github.com/dsrlb/dsrlb/lbd/statusjson"
)

// liveTimeout bounds how long `lbd status` waits for the daemon's answer:
// a stuck daemon must not hang a read-only command.
const liveTimeout = 2 * time.Second

// askLive asks the lbd on the control socket sock for what the pinned maps do not keep
// (control.CmdLive). nil when no lbd answers, or one too old to know the
// command: status then shows what the maps hold.
func askLive(ctx context.Context, sock string) *statusjson.Live {
	ctx, cancel := context.WithTimeout(ctx, liveTimeout)
	defer cancel()
	resp, err := control.Call(ctx, sock, control.Request{Command: control.CmdLive})
	if err != nil || resp.Err() != nil || len(resp.Data) == 0 {
		return nil
	}
	var l statusjson.Live
	if json.Unmarshal(resp.Data, &l) != nil {
		return nil
	}
	return &l
}

// addLive puts the daemon's knowledge into doc: each backend's state
// since (only where the daemon's state is the one the maps hold, so a
// change between the two reads shows no wrong time) and the ARP guard.
func addLive(doc *statusjson.Status, l *statusjson.Live) {
	if l == nil {
		return
	}
	since := map[[2]string]statusjson.LiveBackend{}
	for _, b := range l.Backends {
		since[[2]string{b.Service, b.Name}] = b
	}
	for i := range doc.Services {
		s := &doc.Services[i]
		for j := range s.Backends {
			b := &s.Backends[j]
			if lb, ok := since[[2]string{s.Name, b.Name}]; ok && lb.State == b.State && lb.StateSince != nil {
				at := lb.StateSince.UTC()
				b.StateSince = &at
			}
		}
	}
	doc.ARPGuard = l.ARPGuard
}

// sinceText is the LAST CHANGE column: how long ago the state began, "-"
// when unknown (lbd not running: the maps keep no time).
func sinceText(t *time.Time, now time.Time) string {
	if t == nil {
		return "-"
	}
	return now.Sub(*t).Round(time.Second).String() + " ago"
}

// printARPGuard prints the guard's findings before the table, as the other
// alerts are.
func printARPGuard(out io.Writer, g *statusjson.ARPGuard, running bool) {
	switch {
	case g == nil && running:
		fmt.Fprintln(out, "ARP guard: unknown (the running lbd did not answer on its control socket)")
	case g == nil:
		fmt.Fprintln(out, "ARP guard: not watching (lbd is not running)")
	case !g.Running:
		fmt.Fprintf(out, "ARP GUARD NOT RUNNING: %s\n", g.Note)
	default:
		for _, c := range g.Conflicts {
			fmt.Fprintln(out, daemon.ARPText(c))
		}
		if len(g.Conflicts) == 0 {
			fmt.Fprintf(out, "ARP guard (vip_owner %s): no other MAC answers for a VIP\n", g.Mode)
		}
	}
}
