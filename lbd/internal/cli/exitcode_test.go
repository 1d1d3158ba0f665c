package cli

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/dsrlb/dsrlb/lbd/daemon"
	"github.com/dsrlb/dsrlb/shared/cmdutil"
	"github.com/dsrlb/dsrlb/shared/config"
)

// TestRunExitCodes: permanent failures get the codes lbd.service lists in
// RestartPreventExitStatus=; before, everything exited 1 and was retried
// every 2 s (issue 13).
func TestRunExitCodes(t *testing.T) {
	for err, want := range map[error]int{
		fmt.Errorf("check: %w", daemon.ErrNoBPFFS):           ExitNotInstalled,
		fmt.Errorf("load program: %w", unix.EPERM):           ExitNoPermission,
		errors.New("watch neighbours on eth0: no such link"): ExitFailure,
	} {
		if got := runExitCode(err); got != want {
			t.Errorf("runExitCode(%v) = %d, want %d", err, got, want)
		}
	}
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("services: [\n"), 0o644)
	noBalancer := filepath.Join(dir, "nob.yaml")
	os.WriteFile(noBalancer, []byte("services: []\n"), 0o644)
	for _, path := range []string{bad, noBalancer, filepath.Join(dir, "missing.yaml")} {
		_, err := loadRunConfig(path, new(config.Loader))
		var ee *cmdutil.ExitError
		if !errors.As(err, &ee) || ee.Code != ExitNotConfigured {
			t.Errorf("loadRunConfig(%s): %v, want exit %d", filepath.Base(path), err, ExitNotConfigured)
		}
	}
}
