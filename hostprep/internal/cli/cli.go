// Package cli is hostprep's command line: subcommands, flags and exit codes.
package cli

import (
	"io"
	"log/slog"
	"time"

	"github.com/spf13/cobra"

	"github.com/dsrlb/dsrlb/hostprep/internal/state"
	"github.com/dsrlb/dsrlb/shared/cmdutil"
)

// options are the flags of one invocation.
type options struct {
	config  string
	root    string
	state   string
	offline bool
	dryRun  bool
	verbose bool
	vips    []string
	all     bool
	json    bool
	wait    time.Duration
}

// Main runs hostprep with args and returns the process exit code.
func Main(version string, args []string, stdout, stderr io.Writer) int {
	return Run(version, args, DefaultEnv(stdout, stderr))
}

// Run is Main with its environment given, for tests.
func Run(version string, args []string, env *Env) int {
	o := &options{}
	root := &cobra.Command{
		Use:   "hostprep",
		Short: "dsrlb backend agent: VIPs on loopback, ARP silence, persisted",
		Long: `hostprep prepares a backend for Direct Server Return: it adds each VIP the
host serves to lo, sets arp_ignore/arp_announce so the host never answers ARP
for them, and persists both for the next boot. Run it again at any time: it
changes only what differs.`,
		Version: cmdutil.Version(version),
	}
	cmdutil.AddConfigFlag(root, &o.config)
	pf := root.PersistentFlags()
	pf.StringVar(&o.root, "root", "", "read and write every file under `DIR` (like systemctl --root)")
	pf.StringVar(&o.state, "state", state.DefaultPath, "state file recording what hostprep changed (under --root)")
	pf.BoolVar(&o.offline, "offline", false, "files only: no address or sysctl is read or changed (image building)")
	pf.BoolVarP(&o.verbose, "verbose", "v", false, "log every change")
	root.AddCommand(cmdutil.NewValidateCmd(&o.config, nil), applyCmd(o, env), checkCmd(o, env), removeCmd(o, env), cmdutil.NewManCmd(root, manSections()))
	root.SetArgs(args)
	root.SetOut(env.Stdout)
	root.SetErr(env.Stderr)
	root.PersistentPreRun = func(*cobra.Command, []string) {
		if env.Log == nil {
			env.Log = newLogger(env.Stderr, o.verbose)
		}
	}
	return cmdutil.Execute(root, env.Stderr)
}

func newLogger(w io.Writer, verbose bool) *slog.Logger {
	level := slog.LevelWarn
	if verbose {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

func addSelectFlags(c *cobra.Command, o *options) {
	c.Flags().StringArrayVar(&o.vips, "vip", nil, "hold this VIP of the configuration (repeatable) instead of finding this host's")
	c.Flags().BoolVar(&o.all, "all", false, "hold every VIP of the configuration")
	c.MarkFlagsMutuallyExclusive("vip", "all")
}

func applyCmd(o *options, env *Env) *cobra.Command {
	c := &cobra.Command{
		Use:   "apply",
		Short: "Put this host's VIPs on lo, set the ARP sysctls, write the boot files",
		Long: `apply makes the host match the plan and prints each change, one per line.
A second run prints "no change" and touches nothing. A failure midway rolls
back what the run changed.`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error { return runApply(o, env) },
	}
	addSelectFlags(c, o)
	c.Flags().BoolVar(&o.dryRun, "dry-run", false, "print the plan and the changes it needs; change nothing")
	c.Flags().DurationVar(&o.wait, "wait", 0, "when no server address is this host's yet (a late DHCP address at boot), look again for up to `DURATION`")
	return c
}

func checkCmd(o *options, env *Env) *cobra.Command {
	c := &cobra.Command{
		Use:   "check",
		Short: "Exit 0 when the host matches the plan, 1 with the differences otherwise",
		Args:  cobra.NoArgs,
		RunE:  func(*cobra.Command, []string) error { return runCheck(o, env) },
	}
	addSelectFlags(c, o)
	c.Flags().BoolVar(&o.json, "json", false, "print the result as JSON")
	return c
}

func removeCmd(o *options, env *Env) *cobra.Command {
	c := &cobra.Command{
		Use:   "remove",
		Short: "Undo what hostprep did: its VIPs, its sysctl values, its files",
		Long: `remove deletes the VIPs hostprep added, restores the sysctl values it found
before its first change (unless changed since) and restores or deletes its
files, as recorded in the state file. It needs no configuration file.`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error { return runRemove(o, env) },
	}
	c.Flags().BoolVar(&o.dryRun, "dry-run", false, "print what would be undone; change nothing")
	return c
}
