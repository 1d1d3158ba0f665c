// Package cli is hostprep's command line: subcommands, flags and exit codes.
package cli

import (
	"io"

	"github.com/spf13/cobra"

	"github.com/dsrlb/dsrlb/shared/cmdutil"
)

// Main runs hostprep with args and returns the process exit code.
func Main(version string, args []string, stdout, stderr io.Writer) int {
	var cfgPath string
	root := &cobra.Command{
		Use:   "hostprep",
		Short: "dsrlb backend agent: VIPs on loopback, ARP silence, persisted",
		Long: `hostprep prepares a backend for Direct Server Return: it adds each VIP the
host serves to lo, sets arp_ignore/arp_announce so the host never answers ARP
for them, and persists both for the next boot.`,
		Version: cmdutil.Version(version),
	}
	cmdutil.AddConfigFlag(root, &cfgPath)
	root.AddCommand(cmdutil.NewValidateCmd(&cfgPath, nil))
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	return cmdutil.Execute(root, stderr)
}
