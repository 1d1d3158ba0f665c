package cli

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/dsrlb/dsrlb/lbd/importer"
	"github.com/dsrlb/dsrlb/shared/cmdutil"
	"github.com/dsrlb/dsrlb/shared/config"
)

// Exit codes of `lbd import` (docs/migration.md).
const (
	importCarried     = 0 // everything carried; the output validates
	importUnreadable  = 1 // the source cannot be read or parsed: nothing printed
	importNotCarried  = 3 // the output validates, but what stderr lists was not carried
	importInvalid     = 4 // the output does not validate: something it needs is missing (stderr says what)
	importUsageFailed = 2 // wrong arguments or flags (as every lbd command)
)

func newImportCmd() *cobra.Command {
	var iface string
	var vips, servers []string
	cmd := &cobra.Command{
		Use:   "import {aloha|keepalived|ipvsadm} FILE|-",
		Short: "Translate a keepalived, HAProxy ALOHA or ipvsadm-save -n configuration into dsrlb YAML",
		Long: `import prints a dsrlb configuration on standard output and, on standard error,
one line per thing that could not be carried over, with its source file:line
and why. FILE "-" reads standard input. Exit status: 0 everything carried,
1 the source cannot be read, 2 usage error, 3 some things not carried (the
output validates), 4 the output does not validate (e.g. ALOHA server lines
name no address: give --vip and --server). See docs/migration.md.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			flags, err := importer.ParseAlohaFlags(vips, servers)
			if err != nil {
				return err // a usage error: exit 2
			}
			if (len(vips) > 0 || len(servers) > 0) && args[0] != "aloha" {
				return fmt.Errorf("--vip and --server are for aloha only: %s files name their addresses", args[0])
			}
			data, err := readSource(cmd.InOrStdin(), args[1])
			if err != nil {
				return &cmdutil.ExitError{Code: importUnreadable, Err: err}
			}
			res, err := importer.Import(args[0], args[1], data, importer.Options{Interface: iface, Aloha: flags})
			var fe *importer.FlagError
			switch {
			case errors.As(err, &fe):
				return err
			case err != nil:
				return &cmdutil.ExitError{Code: importUnreadable, Err: err}
			}
			cmd.OutOrStdout().Write(res.YAML)
			res.Report(cmd.ErrOrStderr())
			switch {
			case res.Invalid != nil:
				return &cmdutil.ExitError{Code: importInvalid, Err: fmt.Errorf("the output does not validate: fix what is listed above (exit %d)", importInvalid)}
			case len(res.Notes) > 0:
				return &cmdutil.ExitError{Code: importNotCarried, Err: fmt.Errorf("%d thing(s) not carried over, listed above (exit %d)", len(res.Notes), importNotCarried)}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&iface, "interface", "", "balancer.interface of the output (the NIC clients reach the VIPs on)")
	cmd.Flags().StringArrayVar(&vips, "vip", nil, "aloha: VIP of a director, DIRECTOR=ADDR[:PORT] or ADDR[:PORT] for every director without one (repeatable)")
	cmd.Flags().StringArrayVar(&servers, "server", nil, "aloha: address of a server, NAME=ADDR[:PORT] or DIRECTOR/NAME=ADDR[:PORT] (repeatable)")
	return cmd
}

// readSource reads FILE or, for "-", standard input, bounded as a config.
func readSource(stdin io.Reader, name string) ([]byte, error) {
	r := stdin
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return nil, fmt.Errorf("read source: %w", err)
		}
		defer f.Close()
		r = f
	}
	data, err := io.ReadAll(io.LimitReader(r, config.MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("read source %s: %w", name, err)
	}
	if len(data) > config.MaxFileSize {
		return nil, fmt.Errorf("read source %s: larger than %d bytes; is this the right file?", name, config.MaxFileSize)
	}
	return data, nil
}
