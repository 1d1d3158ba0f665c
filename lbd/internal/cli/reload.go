package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/dsrlb/dsrlb/lbd/control"
	"github.com/dsrlb/dsrlb/lbd/daemon"
	"github.com/dsrlb/dsrlb/shared/cmdutil"
	"github.com/dsrlb/dsrlb/shared/config"
)

func newReloadCmd(cfgPath *string) *cobra.Command {
	var dryRun bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "reload",
		Short: "Make the running lbd re-read its configuration and report its verdict",
		Long: `reload validates the configuration, asks the running lbd to take it through
its control socket (/run/dsrlb/lbd-*.sock, root only) and waits for the answer:
exit 0 when the daemon took the file, 1 with its reasons when it rejected it (the
running configuration then stays), also for changes that need a restart. The
unit's ExecReload runs it, so systemctl reload lbd fails likewise.
With --dry-run it only previews the change: per service, the share of Maglev
slots that would move to another backend, and the changes a reload refuses.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := cmdutil.LoadConfig(nil, *cfgPath, (*config.Config).RequireBalancer)
			if err != nil {
				return err
			}
			if dryRun {
				return previewReload(cmd.OutOrStdout(), cfg)
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			return askReload(ctx, cmd.OutOrStdout(), cfg)
		},
	}
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "print what would change, change nothing")
	cmd.Flags().DurationVar(&timeout, "timeout", 2*time.Minute, "give up waiting for the daemon's answer after `DURATION`")
	return cmd
}

// askReload reloads through the control socket. An lbd too old to have
// one is signalled instead (an upgrade's new binary reloading the old
// daemon), saying that no verdict can be had.
func askReload(ctx context.Context, out io.Writer, cfg *config.Config) error {
	sock := controlSocket(cfg.Balancer.PinPath)
	resp, err := control.Call(ctx, sock, control.Request{Command: control.CmdReload})
	if errors.Is(err, control.ErrNoDaemon) {
		if pid, perr := signalDaemon(cfg); perr == nil {
			fmt.Fprintf(out, "reload requested from lbd pid %d by SIGHUP: it has no control socket (%s), so no verdict; its log says whether the file was taken\n", pid, sock)
			return nil
		}
		return &cmdutil.ExitError{Code: 1, Err: fmt.Errorf("reach lbd: %w; is lbd running with balancer.pin_path %s? (a changed pin_path takes a restart: systemctl restart lbd)", err, cfg.Balancer.PinPath)}
	}
	if err != nil {
		return &cmdutil.ExitError{Code: 1, Err: fmt.Errorf("reload: %w; the daemon may still apply it: see its log (journalctl -u lbd)", err)}
	}
	if err := resp.Err(); err != nil {
		return &cmdutil.ExitError{Code: 1, Err: err}
	}
	fmt.Fprintln(out, resp.Message)
	return nil
}

// signalDaemon sends SIGHUP to the lbd whose PID file belongs to cfg's
// pin path.
func signalDaemon(cfg *config.Config) (int, error) {
	pf := pidFile(cfg.Balancer.PinPath)
	b, err := os.ReadFile(pf)
	if err != nil {
		return 0, fmt.Errorf("find running lbd: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return 0, fmt.Errorf("read %s: %q is not a PID; remove the file and restart lbd", pf, b)
	}
	if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
		return 0, fmt.Errorf("signal lbd (pid %d from %s): %w", pid, pf, err)
	}
	return pid, nil
}

// printRestartOnly marks, in a dry run, the changes a reload refuses; it
// returns an error (exit 1) when there are any, as the reload would fail.
func printRestartOnly(out io.Writer, cur, next *config.Config) error {
	if cur == nil {
		return nil
	}
	err := daemon.RestartOnly(cur, next)
	if err == nil {
		return nil
	}
	var es config.Errors
	if !errors.As(err, &es) {
		return err
	}
	for _, e := range es {
		fmt.Fprintf(out, "restart only: %s\n", e)
	}
	return &cmdutil.ExitError{Code: 1, Err: fmt.Errorf("a reload would reject this file: %d change(s) take a restart (systemctl restart lbd)", len(es))}
}
