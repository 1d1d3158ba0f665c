package cli

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/dsrlb/dsrlb/lbd/daemon"
	"github.com/dsrlb/dsrlb/lbd/statusjson"
)

// daemonJSON is what `lbd status` knows about the daemon itself.
type daemonJSON struct {
	Running  bool      `json:"running"`
	PID      int       `json:"pid,omitempty"`
	LastSeen time.Time `json:"last_seen,omitzero"`
	// VIPConflicts are VIPs lbd did not take: another host answers for them.
	VIPConflicts []daemon.VIPConflict `json:"vip_conflicts,omitempty"`
	// VIPsUntaken are VIPs lbd failed to take and retries (while it runs).
	VIPsUntaken []daemon.VIPUntaken `json:"vips_untaken,omitempty"`
	// NotAttached says why the program does not run on the interface; ""
	// when it does.
	NotAttached string `json:"not_attached,omitempty"`
	// Reasons are why the daemon took backends out of rotation, by
	// service/server key, as it last wrote them (daemon.ReadReasons).
	Reasons map[string]string `json:"-"`
}

// daemonState tells whether an lbd holds the pin path's lock; when none
// does, when one last ran there.
func daemonState(pin string) daemonJSON {
	var d daemonJSON
	d.Running, d.PID = lockHolder(pin)
	if fi, err := os.Stat(seenFile(pin)); err == nil {
		d.LastSeen = fi.ModTime().UTC().Truncate(time.Second)
	}
	if r, err := daemon.ReadVIPRecord(vipsFile(pin)); err == nil {
		d.VIPConflicts = r.Conflicts
		d.VIPsUntaken = r.Untaken
	}
	d.Reasons, _ = daemon.ReadReasons(reasonsFile(pin))
	return d
}

// printDaemon says first whether lbd runs: without it the backend states
// shown are the last it wrote, no longer checked.
func printDaemon(out io.Writer, d daemonJSON) {
	switch {
	case d.Running && d.PID > 0:
		fmt.Fprintf(out, "lbd is running (pid %d)\n", d.PID)
	case d.Running:
		fmt.Fprintln(out, "lbd is running (pid unknown)")
	default:
		seen := "never"
		if !d.LastSeen.IsZero() {
			seen = d.LastSeen.Format(time.RFC3339)
		}
		fmt.Fprintf(out, "lbd is not running (last seen %s): backend states are frozen at their last values; the data plane keeps forwarding\n", seen)
	}
	if d.NotAttached != "" {
		fmt.Fprintf(out, "PROGRAM NOT ATTACHED: %s\n", d.NotAttached)
	}
	for _, c := range d.VIPConflicts {
		fmt.Fprintf(out, "VIP %s NOT TAKEN: another host (%s) answers for it on the segment\n", c.VIP, c.MAC)
	}
	for _, u := range daemon.StatusUntaken(d.VIPsUntaken, d.Running) {
		fmt.Fprintln(out, statusjson.UntakenText(u, time.Now()))
	}
}
