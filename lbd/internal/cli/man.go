package cli

import (
	"github.com/spf13/cobra"

	"github.com/dsrlb/dsrlb/lbd/daemon"
	"github.com/dsrlb/dsrlb/shared/cmdutil"
	"github.com/dsrlb/dsrlb/shared/config"
)

// manSections are the FILES, SIGNALS and EXIT STATUS sections of lbd's
// man pages (cobra writes the rest from the command tree).
func manSections() cmdutil.ManSections {
	return cmdutil.ManSections{
		ExitStatus: "`0`: success.\n\n" +
			"`1`: the command failed: an invalid configuration (every error printed as file:line), no data plane pinned, missing privileges, or the reason printed.\n\n" +
			"`2`: wrong usage: an unknown command or flag, or a malformed argument.",
		Signals: "lbd commands other than lbd run handle no signal specially; see lbd-run(8) for the daemon.",
		Files: "`/etc/dsrlb/dsrlb.yaml`: the configuration (--config), see dsrlb.yaml(5).\n\n" +
			"`/sys/fs/bpf/dsrlb`: the pinned program link and maps (balancer.pin_path); they outlive lbd, so forwarding continues while it is stopped.\n\n" +
			"`/run/dsrlb/lbd-PIN.pid`: the PID of the lbd serving the data plane pinned at PIN (slashes as dashes), read by lbd reload.\n\n" +
			"`/run/dsrlb/lbd-PIN.running.yaml`: the configuration in force, compared by lbd reload --dry-run.\n\n" +
			"`/run/dsrlb/lbd-PIN.bgp.json`: BGP sessions and announcements for lbd status (with balancer.bgp).\n\n" +
			"`/run/dsrlb/lbd-PIN.sock`: the daemon's control socket (root only), through which lbd reload gets the daemon's verdict.\n\n" +
			"`/run/dsrlb/lbd-PIN.admin.json`: the transient settings of lbd set, restored by a restarted lbd.\n\n" +
			"`/run/dsrlb/lbd-PIN.vips`: the VIPs this lbd added, the only ones lbd detach releases.\n\n" +
			"`/usr/lib/systemd/system/lbd.service`: the unit (Type=notify, ExecReload runs lbd reload).\n\n" +
			"`/usr/share/dsrlb/monitoring/`: Grafana dashboard and Prometheus alert rules for lbd's metrics.",
		Commands: map[string]cmdutil.ManSections{
			"lbd run": {
				Signals: "`SIGHUP`: reload the configuration (systemctl reload lbd sends it). A file with errors, or a change that needs a restart, is logged with every reason and the running configuration stays.\n\n" +
					"`SIGTERM, SIGINT`: stop. The program, the maps and the VIPs stay in the kernel and keep forwarding; the next lbd run adopts them. lbd detach removes them.",
				ExitStatus: "`0`: stopped by SIGTERM or SIGINT.\n\n" +
					"`1`: lbd could not start and may on a later try: another lbd holds the pin directory, a backend not on-link from balancer.interface, incompatible pinned maps without --replace-incompatible, a taken metrics port, or the reason logged.\n\n" +
					"`2`: wrong usage.\n\n" +
					"`4`: missing privileges (CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON, CAP_NET_RAW): permanent, the unit does not restart.\n\n" +
					"`5`: no bpffs at the pin path and none can be mounted: permanent.\n\n" +
					"`6`: the configuration file is missing or invalid: permanent until it is edited.",
			},
			"lbd validate": {
				ExitStatus: "`0`: the configuration is valid; a one-line summary is printed.\n\n" +
					"`1`: the configuration is not valid; every error is printed as file:line: field: what is wrong.\n\n" +
					"`2`: wrong usage.",
			},
			"lbd reload": {
				ExitStatus: "`0`: the running lbd took the file (its answer over the control socket), or with --dry-run the preview was printed and holds no restart-only change.\n\n" +
					"`1`: the file is not valid, the daemon rejected it (its reasons are printed; a restart-only change too), or no running lbd was found for it.\n\n" +
					"`2`: wrong usage.",
			},
		},
	}
}

// validateBalancer is what `lbd validate` checks besides the schema: a
// balancer section, and a metrics web configuration lbd can read.
func validateBalancer(cfg *config.Config) error {
	if err := cfg.RequireBalancer(); err != nil {
		return err
	}
	if err := cfg.CheckFiles(); err != nil {
		return err
	}
	return daemon.CheckWebConfig(cfg)
}

// addVerboseFlag gives -v the meaning it has in hostprep: --verbose, more
// logging. Taking the shorthand leaves cobra's --version without one, so
// `-v` never prints a version in one binary and changes behaviour in the
// other (`hostprep -v apply` must apply).
func addVerboseFlag(root *cobra.Command) {
	root.PersistentFlags().BoolP("verbose", "v", false, "log at debug level (lbd run: the same as --debug)")
}

// verbose reports whether -v/--verbose was given.
func verbose(cmd *cobra.Command) bool {
	v, _ := cmd.Flags().GetBool("verbose")
	return v
}
