// Package cmdutil holds the command-line pieces lbd and hostprep share:
// the --config flag, version text and the validate subcommand.
package cmdutil

import (
	"errors"
	"fmt"
	"io"
	"runtime/debug"

	"github.com/spf13/cobra"

	"github.com/dsrlb/dsrlb/shared/config"
)

// ExitError carries a process exit code through cobra.
type ExitError struct {
	Code  int
	Err   error
	Plain bool // the message already names file and line: print it without the program prefix
}

func (e *ExitError) Error() string { return e.Err.Error() }
func (e *ExitError) Unwrap() error { return e.Err }

// Version returns the version stamped at link time, or the module version.
func Version(stamped string) string {
	if stamped != "" && stamped != "dev" {
		return stamped
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

// AddConfigFlag registers --config/-c on cmd's persistent flags.
func AddConfigFlag(cmd *cobra.Command, path *string) {
	cmd.PersistentFlags().StringVarP(path, "config", "c", config.DefaultPath, "configuration file")
}

// NewValidateCmd returns `validate`: like `haproxy -c`, exit 0 with a
// one-line summary or exit 1 with every error. extra adds the checks only
// one binary needs (lbd requires balancer.interface).
func NewValidateCmd(path *string, extra func(*config.Config) error) *cobra.Command {
	return &cobra.Command{
		Use:   "validate",
		Short: "Check the configuration file and print every problem",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := LoadConfig(cmd.OutOrStdout(), *path, extra)
			return err
		},
	}
}

// LoadConfig loads and checks the file; on success it prints the summary
// to out, on failure it returns an ExitError with code 1.
func LoadConfig(out io.Writer, path string, extra func(*config.Config) error) (*config.Config, error) {
	return LoadConfigWith(config.Load, out, path, extra)
}

// LoadConfigWith is LoadConfig reading the file with load (e.g. a
// config.Loader's, which a daemon then keeps for its reloads).
func LoadConfigWith(load func(string) (*config.Config, error), out io.Writer, path string, extra func(*config.Config) error) (*config.Config, error) {
	cfg, err := load(path)
	if err == nil && extra != nil {
		err = extra(cfg)
	}
	if err != nil {
		var es config.Errors
		if errors.As(err, &es) {
			err = fmt.Errorf("%w\n%s: %d error(s); configuration not valid", err, path, len(es))
		}
		return nil, &ExitError{Code: 1, Err: err, Plain: errors.As(err, &es)}
	}
	if out != nil {
		fmt.Fprintln(out, cfg.Summary())
	}
	return cfg, nil
}

// Execute runs root and maps its error to an exit code: 2 for usage
// errors, the ExitError's code otherwise.
func Execute(root *cobra.Command, stderr io.Writer) int {
	root.SilenceUsage = true
	root.SilenceErrors = true
	err := root.Execute()
	if err == nil {
		return 0
	}
	var ee *ExitError
	if errors.As(err, &ee) {
		if ee.Plain {
			fmt.Fprintln(stderr, err)
		} else {
			fmt.Fprintf(stderr, "%s: %v\n", root.Name(), err)
		}
		return ee.Code
	}
	fmt.Fprintf(stderr, "%s: %v (see %s --help)\n", root.Name(), err, root.Name())
	return 2
}
