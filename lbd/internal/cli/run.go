package cli

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	sddaemon "github.com/coreos/go-systemd/v22/daemon"
	"github.com/spf13/cobra"

	"github.com/dsrlb/dsrlb/lbd/daemon"
	"github.com/dsrlb/dsrlb/shared/cmdutil"
	"github.com/dsrlb/dsrlb/shared/config"
)

// RunDir holds lbd's PID files, one per pinned data plane.
const RunDir = "/run/dsrlb"

// pidFile is where the lbd serving the data plane pinned at pinPath writes
// its PID: derived from the pin path, so several lbd (tests, namespaces)
// never share one and `lbd reload --config F` finds the right daemon.
func pidFile(pinPath string) string {
	name := strings.Trim(strings.ReplaceAll(filepath.Clean(pinPath), "/", "-"), "-")
	return filepath.Join(RunDir, "lbd-"+name+".pid")
}

// runningConfigPath is where lbd keeps a copy of the configuration it
// runs, for `lbd reload --dry-run` to compare against.
func runningConfigPath(pinPath string) string {
	return strings.TrimSuffix(pidFile(pinPath), ".pid") + ".running.yaml"
}

// bgpStatusPath is where lbd writes its BGP sessions and announcements
// for `lbd status`.
func bgpStatusPath(pinPath string) string {
	return strings.TrimSuffix(pidFile(pinPath), ".pid") + ".bgp.json"
}

func newRunCmd(cfgPath *string) *cobra.Command {
	var replace, clsact, debug bool
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run the balancer in the foreground (the systemd unit's ExecStart)",
		Long: `run attaches the data plane to balancer.interface (adopting a pinned one),
checks backends, programs the maps and serves until SIGTERM. SIGHUP reloads the
configuration. Stopping leaves the data plane forwarding; a new lbd adopts it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDaemon(cmd.ErrOrStderr(), *cfgPath, replace, clsact, debug)
		},
	}
	cmd.Flags().BoolVar(&replace, "replace-incompatible", false, "discard pinned maps of another layout instead of refusing to start")
	cmd.Flags().BoolVar(&clsact, "clsact", false, "attach with clsact + cls_bpf even when the kernel has tcx")
	cmd.Flags().BoolVar(&debug, "debug", false, "log at debug level")
	return cmd
}

func runDaemon(stderr io.Writer, cfgPath string, replace, clsact, debug bool) error {
	level := slog.LevelInfo
	if debug {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	reload := make(chan struct{}, 1)
	go func() {
		for range hup {
			select {
			case reload <- struct{}{}:
			default: // a reload is already pending: it will read the newest file
			}
		}
	}()
	watchdog, _ := sddaemon.SdWatchdogEnabled(false)
	pf, running, bgpStatus := "", "", ""
	cfg, err := config.Load(cfgPath)
	if err == nil {
		pf, running, bgpStatus = pidFile(cfg.Balancer.PinPath), runningConfigPath(cfg.Balancer.PinPath), bgpStatusPath(cfg.Balancer.PinPath)
		if err := writePID(pf); err != nil {
			log.Warn("cannot write PID file; `lbd reload` will not find this daemon (use systemctl reload or kill -HUP)", "err", err)
			pf = ""
		}
	} else {
		cfg = nil // daemon.Run loads it again and reports why it fails
	}
	if pf != "" {
		defer os.Remove(pf)
	}
	err = daemon.Run(ctx, daemon.Options{
		ConfigPath:          cfgPath,
		Config:              cfg,
		RunningCopy:         running,
		BGPStatusFile:       bgpStatus,
		Logger:              log,
		Notify:              func(s string) { sddaemon.SdNotify(false, s) },
		Watchdog:            watchdog,
		Reload:              reload,
		ReplaceIncompatible: replace,
		ForceClsact:         clsact,
	})
	if err != nil {
		return &cmdutil.ExitError{Code: 1, Err: err, Plain: isConfigErr(err)}
	}
	return nil
}

func writePID(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644)
}

func newReloadCmd(cfgPath *string) *cobra.Command {
	var dryRun bool
	cmd := &cobra.Command{
		Use:   "reload",
		Short: "Make the running lbd re-read its configuration (checked first)",
		Long: `reload validates the configuration and signals the running lbd (SIGHUP).
With --dry-run it only previews the change: per service, the share of Maglev
slots that would move to another backend.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := cmdutil.LoadConfig(nil, *cfgPath, (*config.Config).RequireBalancer)
			if err != nil {
				return err
			}
			if dryRun {
				return previewReload(cmd.OutOrStdout(), cfg)
			}
			return signalDaemon(cmd.OutOrStdout(), cfg)
		},
	}
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "print what would change, change nothing")
	return cmd
}

func signalDaemon(out io.Writer, cfg *config.Config) error {
	pf := pidFile(cfg.Balancer.PinPath)
	b, err := os.ReadFile(pf)
	if err != nil {
		return &cmdutil.ExitError{Code: 1, Err: fmt.Errorf("find running lbd: %w (is lbd running with this configuration? under systemd use systemctl reload lbd)", err)}
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return &cmdutil.ExitError{Code: 1, Err: fmt.Errorf("read %s: %q is not a PID; remove the file and restart lbd", pf, b)}
	}
	if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
		return &cmdutil.ExitError{Code: 1, Err: fmt.Errorf("signal lbd (pid %d from %s): %w", pid, pf, err)}
	}
	fmt.Fprintf(out, "reload requested from lbd pid %d; its log says whether the new configuration was taken\n", pid)
	return nil
}
