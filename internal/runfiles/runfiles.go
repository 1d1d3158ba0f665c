// Package runfiles is the layout of lbd's run-time files: the one owner of
// the paths under /run/dsrlb that `lbd run` writes, the other commands read
// and the integration harness looks at. Each pinned data plane has its own
// set, named after its pin path, so several lbd (tests, namespaces) never
// share one.
package runfiles

import (
	"path/filepath"
	"strings"
)

// Dir is lbd's runtime directory (the unit's RuntimeDirectory=dsrlb).
const Dir = "/run/dsrlb"

// BPFFSLock serialises the check-then-mount of bpffs between processes.
const BPFFSLock = Dir + "/bpffs.lock"

// Files are the run files of the lbd serving one pinned data plane.
type Files struct {
	PID       string // its PID, read by lbd reload
	Running   string // the configuration in force, for lbd reload --dry-run
	BGPStatus string // BGP sessions and announcements, for lbd status
	Control   string // the control socket (root only)
	VIPs      string // the VIPs it added, the only ones lbd detach releases
	Seen      string // touched while it runs, for lbd status to tell when it last ran
}

// For is the set of the lbd serving the data plane pinned at pinPath.
func For(pinPath string) Files { return In(Dir, pinPath) }

// In is For with another directory than Dir (tests).
func In(dir, pinPath string) Files {
	name := strings.Trim(strings.ReplaceAll(filepath.Clean(pinPath), "/", "-"), "-")
	base := filepath.Join(dir, "lbd-"+name)
	return Files{
		PID:       base + ".pid",
		Running:   base + ".running.yaml",
		BGPStatus: base + ".bgp.json",
		Control:   base + ".sock",
		VIPs:      base + ".vips",
		Seen:      base + ".seen",
	}
}
