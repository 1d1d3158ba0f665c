package cli

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/dsrlb/dsrlb/hostprep/internal/netops"
	"github.com/dsrlb/dsrlb/hostprep/internal/reconcile"
	"github.com/dsrlb/dsrlb/hostprep/internal/sysctl"
	"github.com/dsrlb/dsrlb/internal/caps"
)

// Env is what a run needs from the outside world; tests replace parts.
type Env struct {
	Stdout, Stderr io.Writer
	// OpenLive returns the live addresses and sysctls of the calling
	// thread's network namespace, and a function releasing them.
	OpenLive func() (reconcile.Net, reconcile.Sysctls, func(), error)
	// Privileged returns nil when the process may change addresses and
	// sysctls, or an error saying what is missing.
	Privileged func() error
	// Log, when nil, is a text logger on Stderr (debug with --verbose).
	Log *slog.Logger
	// Poll is how often apply --wait looks at the addresses again.
	Poll time.Duration
}

// DefaultEnv is the production environment.
func DefaultEnv(stdout, stderr io.Writer) *Env {
	return &Env{Stdout: stdout, Stderr: stderr, OpenLive: openLive, Privileged: privileged, Poll: 500 * time.Millisecond}
}

func openLive() (reconcile.Net, reconcile.Sysctls, func(), error) {
	k, err := sysctl.NewKernel("")
	if err != nil {
		return nil, nil, nil, err
	}
	n, err := netops.Open()
	if err != nil {
		return nil, nil, nil, err
	}
	return n, k, n.Close, nil
}

// capNetAdmin is CAP_NET_ADMIN's bit in /proc/self/status CapEff.
const capNetAdmin = 12

// privileged requires root (the files under /proc/sys are root's) and
// CAP_NET_ADMIN (netlink address changes, network sysctls).
func privileged() error {
	const fix = "run it as root (sudo), or use --dry-run to see the plan, or --offline to write only the files"
	if os.Geteuid() != 0 {
		return fmt.Errorf("check privileges: changing addresses and sysctls needs root: %s", fix)
	}
	capEff, err := caps.Effective()
	if err != nil {
		return fmt.Errorf("check privileges: %w", err)
	}
	if capEff&(1<<capNetAdmin) == 0 {
		return fmt.Errorf("check privileges: running as root without CAP_NET_ADMIN (a container or a unit with CapabilityBoundingSet?): grant CAP_NET_ADMIN, or %s", fix)
	}
	return nil
}
