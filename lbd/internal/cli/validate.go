package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/dsrlb/dsrlb/lbd/daemon"
	"github.com/dsrlb/dsrlb/shared/cmdutil"
	"github.com/dsrlb/dsrlb/shared/config"
)

// newValidateCmd is `lbd validate`: the file alone, like `haproxy -c`, or
// with --host also what `lbd run` checks on this host before changing
// anything.
func newValidateCmd(cfgPath *string) *cobra.Command {
	var host bool
	cmd := &cobra.Command{
		Use:   "validate",
		Short: "Check the configuration file and print every problem (--host: also this host)",
		Long: `validate checks the configuration file. With --host it also runs lbd run's
preflight on this host, changing nothing: balancer.interface exists, lbd has
CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON and CAP_NET_RAW, bpffs is (or can be)
mounted for pin_path, the pin directory belongs to lbd's user, every backend is
on-link and the metrics address can be bound. While lbd runs, the metrics
address is its own: the check says so.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := cmdutil.LoadConfig(nil, *cfgPath, validateBalancer)
			if err != nil {
				return err
			}
			if host {
				if err := hostPreflight(cfg); err != nil {
					return &cmdutil.ExitError{Code: 1, Err: err}
				}
			}
			fmt.Fprintln(cmd.OutOrStdout(), cfg.Summary())
			if host {
				fmt.Fprintln(cmd.OutOrStdout(), "host preflight passed: lbd run can start here")
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&host, "host", false, "also check this host as lbd run would, changing nothing")
	return cmd
}

func hostPreflight(cfg *config.Config) error {
	pin := cfg.Balancer.PinPath
	if err := daemon.CheckPrivileges(); err != nil {
		return err
	}
	if err := checkPinDir(pin); err != nil {
		return err
	}
	if held, pid := lockHolder(pin); held {
		return fmt.Errorf("%v: a second lbd run would be refused", &alreadyRunning{pin: pin, pid: pid})
	}
	return daemon.Preflight(cfg)
}
