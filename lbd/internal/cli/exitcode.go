package cli

import (
	"errors"

	"golang.org/x/sys/unix"

	"github.com/dsrlb/dsrlb/lbd/daemon"
	"github.com/dsrlb/dsrlb/shared/cmdutil"
	"github.com/dsrlb/dsrlb/shared/config"
)

// Exit codes of `lbd run`. Permanent failures, which starting again cannot
// fix, get the LSB codes systemd names (status=6/NOTCONFIGURED) and that
// lbd.service lists in RestartPreventExitStatus=, so a bad file or a host
// without bpffs fails once, visibly, instead of restarting every 2 s.
const (
	ExitFailure       = 1 // anything else: may pass on a retry (Restart=on-failure)
	ExitUsage         = 2 // bad flags
	ExitNoPermission  = 4 // missing privileges or capabilities (EPERM)
	ExitNotInstalled  = 5 // the host lacks what lbd needs: no bpffs at the pin path
	ExitNotConfigured = 6 // the configuration file is missing or invalid
)

// runExitCode classifies an error that stopped `lbd run` from starting.
func runExitCode(err error) int {
	switch {
	case errors.Is(err, daemon.ErrNoBPFFS):
		return ExitNotInstalled
	case errors.Is(err, unix.EPERM), errors.Is(err, daemon.ErrPrivileges):
		return ExitNoPermission
	}
	return ExitFailure
}

// loadRunConfig reads the file `lbd run` starts with, with l, which the
// daemon keeps for its reloads; a file missing or invalid is permanent
// until an administrator edits it.
func loadRunConfig(path string, l *config.Loader) (*config.Config, error) {
	cfg, err := cmdutil.LoadConfigWith(l.Load, nil, path, (*config.Config).RequireBalancer)
	if err != nil {
		var ee *cmdutil.ExitError
		if errors.As(err, &ee) {
			ee.Code = ExitNotConfigured
		}
		return nil, err
	}
	return cfg, nil
}
