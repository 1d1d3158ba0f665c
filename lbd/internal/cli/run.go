package cli

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	sddaemon "github.com/coreos/go-systemd/v22/daemon"
	"github.com/spf13/cobra"

	"github.com/dsrlb/dsrlb/internal/runfiles"
	"github.com/dsrlb/dsrlb/lbd/daemon"
	"github.com/dsrlb/dsrlb/shared/cmdutil"
	"github.com/dsrlb/dsrlb/shared/config"
)

// RunDir holds lbd's PID files, one per pinned data plane.
const RunDir = runfiles.Dir

// pidFile is where the lbd serving the data plane pinned at pinPath writes
// its PID: derived from the pin path, so several lbd (tests, namespaces)
// never share one and `lbd reload --config F` finds the right daemon.
func pidFile(pinPath string) string { return runfiles.For(pinPath).PID }

// runningConfigPath is where lbd keeps a copy of the configuration it
// runs, for `lbd reload --dry-run` to compare against.
func runningConfigPath(pinPath string) string { return runfiles.For(pinPath).Running }

// bgpStatusPath is where lbd writes its BGP sessions and announcements
// for `lbd status`.
func bgpStatusPath(pinPath string) string { return runfiles.For(pinPath).BGPStatus }

// controlSocket is the control socket of the lbd serving pinPath.
func controlSocket(pinPath string) string { return runfiles.For(pinPath).Control }

func newRunCmd(cfgPath *string, version string) *cobra.Command {
	var replace, clsact, debug bool
	var logFormat string
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run the balancer in the foreground (the systemd unit's ExecStart)",
		Long: `run attaches the data plane to balancer.interface (adopting a pinned one),
checks backends, programs the maps and serves until SIGTERM. SIGHUP reloads the
configuration. Stopping leaves the data plane forwarding; a new lbd adopts it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDaemon(cmd.ErrOrStderr(), *cfgPath, version, logFormat, replace, clsact, debug || verbose(cmd))
		},
	}
	cmd.Flags().BoolVar(&replace, "replace-incompatible", false, "discard pinned maps of another layout instead of refusing to start")
	cmd.Flags().BoolVar(&clsact, "clsact", false, "attach with clsact + cls_bpf even when the kernel has tcx")
	cmd.Flags().BoolVar(&debug, "debug", false, "log at debug level")
	cmd.Flags().StringVar(&logFormat, "log-format", LogAuto, "`FORMAT` of the log on stderr: auto (journal under systemd, else text), text, json or journal")
	return cmd
}

func runDaemon(stderr io.Writer, cfgPath, version, logFormat string, replace, clsact, debug bool) error {
	level := slog.LevelInfo
	if debug {
		level = slog.LevelDebug
	}
	log, err := newLogger(stderr, logFormat, level)
	if err != nil {
		return &cmdutil.ExitError{Code: ExitUsage, Err: err}
	}
	version = cmdutil.Version(version)
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
	loader := new(config.Loader)
	cfg, err := loadRunConfig(cfgPath, loader) // exit 6 (no restart) for a bad file
	if err != nil {
		return err
	}
	pin := cfg.Balancer.PinPath
	lock, err := takeOwnership(pin, log)
	if err != nil {
		_, running := errors.AsType[*alreadyRunning](err) // already starts with "lbd"
		code := runExitCode(err)                          // missing privileges or bpffs: permanent
		if running {
			code = ExitFailure // the unit retries: the other lbd may be gone by then
		}
		return &cmdutil.ExitError{Code: code, Err: err, Plain: running}
	}
	defer lock.release()
	// Only the owner writes the PID file and the files beside it.
	pf, running, bgpStatus := pidFile(pin), runningConfigPath(pin), bgpStatusPath(pin)
	if err := writePID(pf); err != nil {
		log.Warn("cannot write PID file; `lbd reload` will not find this daemon (use systemctl reload or kill -HUP)", "err", err)
	} else {
		defer os.Remove(pf)
	}
	stopSeen := keepSeen(seenFile(pin))
	defer stopSeen()
	err = daemon.Run(ctx, daemon.Options{
		ConfigPath:          cfgPath,
		Config:              cfg,
		Loader:              loader,
		RunningCopy:         running,
		BGPStatusFile:       bgpStatus,
		VIPRecord:           vipsFile(pin),
		ReasonsFile:         reasonsFile(pin),
		ControlSocket:       controlSocket(pin),
		Version:             version,
		Logger:              log,
		Notify:              func(s string) { sddaemon.SdNotify(false, s) },
		Watchdog:            watchdog,
		Reload:              reload,
		ReplaceIncompatible: replace,
		ForceClsact:         clsact,
	})
	if err != nil {
		return &cmdutil.ExitError{Code: runExitCode(err), Err: err, Plain: isConfigErr(err)}
	}
	return nil
}

// takeOwnership makes this lbd the one owner of the data plane pinned at
// pin, before anything is changed: bpffs there (mounted if missing, in the
// host's mount namespace), the pin directory 0700 and lbd's, and its lock.
func takeOwnership(pin string, log *slog.Logger) (*pinLock, error) {
	if err := daemon.CheckPrivileges(); err != nil {
		return nil, err
	}
	if err := daemon.EnsureBPFFS(pin, log); err != nil {
		return nil, err
	}
	if err := checkPinDir(pin); err != nil {
		return nil, err
	}
	if held, pid := lockHolder(pin); held { // refuse before creating anything
		return nil, &alreadyRunning{pin: pin, pid: pid}
	}
	if err := preparePinDir(pin); err != nil {
		return nil, err
	}
	return lockPinDir(pin)
}

// keepSeen refreshes the mtime of path while lbd runs (and once at the
// end), for `lbd status` to tell when lbd last ran.
func keepSeen(path string) (stop func()) {
	touch := func() {
		now := time.Now()
		if os.Chtimes(path, now, now) != nil {
			os.WriteFile(path, nil, 0o644)
		}
	}
	if ensureRunDir() == nil {
		touch()
	}
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(10 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				touch()
			}
		}
	}()
	return func() { close(done); touch() }
}

func writePID(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644)
}
