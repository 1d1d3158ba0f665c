// Package cli is lbd's command line: subcommands, flags and exit codes.
package cli

import (
	"errors"
	"io"

	"github.com/spf13/cobra"

	"github.com/dsrlb/dsrlb/lbd/daemon"
	"github.com/dsrlb/dsrlb/shared/cmdutil"
	"github.com/dsrlb/dsrlb/shared/config"
)

// NewRoot returns lbd's command tree (also used to generate man pages).
func NewRoot(version string) *cobra.Command {
	var cfgPath string
	root := &cobra.Command{
		Use:   "lbd",
		Short: "dsrlb balancer daemon: Layer-4 Direct Server Return load balancing with eBPF",
		Long: `lbd receives client frames for the VIPs on one NIC, picks a healthy backend
(Maglev, weighted round robin or source hash) and forwards the unchanged IP packet
to the backend's MAC; the backend answers the client directly.`,
		Version: cmdutil.Version(version),
	}
	cmdutil.AddConfigFlag(root, &cfgPath)
	addVerboseFlag(root)
	root.AddCommand(
		newValidateCmd(&cfgPath),
		newRunCmd(&cfgPath, version),
		newReloadCmd(&cfgPath),
		newSetCmd(&cfgPath), // set.go
		newStatusCmd(&cfgPath),
		newFlowsCmd(&cfgPath), // flows.go
		newExplainCmd(&cfgPath),
		newDetachCmd(&cfgPath),
		newImportCmd(),
		cmdutil.NewManCmd(root, manSections()),
	)
	return root
}

// Main runs lbd with args and returns the process exit code.
func Main(version string, args []string, stdout, stderr io.Writer) int {
	root := NewRoot(version)
	daemon.BuildVersion = root.Version // dsrlb_build_info
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	return cmdutil.Execute(root, stderr)
}

func isConfigErr(err error) bool {
	var es config.Errors
	return errors.As(err, &es)
}
