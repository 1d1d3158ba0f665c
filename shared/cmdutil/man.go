package cmdutil

import (
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
)

// NewManCmd returns a hidden `man DIR` command writing section 8 man pages
// for root and its subcommands; the packages ship them.
func NewManCmd(root *cobra.Command) *cobra.Command {
	return &cobra.Command{
		Use:    "man DIR",
		Short:  "Write man pages into DIR",
		Hidden: true,
		Args:   cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := os.MkdirAll(args[0], 0o755); err != nil {
				return fmt.Errorf("create man directory: %w", err)
			}
			root.DisableAutoGenTag = true // keeps pages reproducible
			hdr := &doc.GenManHeader{Title: root.Name(), Section: "8", Source: "dsrlb " + root.Version, Manual: "dsrlb manual"}
			if epoch, err := strconv.ParseInt(os.Getenv("SOURCE_DATE_EPOCH"), 10, 64); err == nil {
				t := time.Unix(epoch, 0).UTC()
				hdr.Date = &t // reproducible builds
			}
			return doc.GenManTree(root, hdr, args[0])
		},
	}
}
