package cli

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/dsrlb/dsrlb/lbd/daemon"
	"github.com/dsrlb/dsrlb/lbd/datapath"
	"github.com/dsrlb/dsrlb/shared/cmdutil"
	"github.com/dsrlb/dsrlb/shared/config"
)

func newFlowsCmd(cfgPath *string) *cobra.Command {
	var limit int
	cmd := &cobra.Command{
		Use:   "flows [SERVICE]",
		Short: "List the tracked flows (conntrack) and the backend each is kept on",
		Long: `flows lists the conntrack entries that still decide their flow's backend
(within their idle timeout, backend up or draining), as ipvsadm -Lnc: client,
VIP:port, backend, state (established, syn_seen, closing, closed) and idle time.
It reads the pinned maps read-only, lbd running or not, and walks the whole
conntrack map (about a microsecond per entry). SERVICE limits the list to one
service.`,
		Example: `  lbd flows
  lbd flows web --limit 50`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, dp, err := loadPinned(*cfgPath)
			if err != nil {
				return err
			}
			defer dp.Close()
			only := ""
			if len(args) == 1 {
				only = args[0]
				if findService(cfg, only) == nil {
					return &cmdutil.ExitError{Code: 2, Err: fmt.Errorf("service %q: not in %s; services: %s", only, cfg.File, serviceNames(cfg))}
				}
			}
			// Filtering by service happens after the walk: read every
			// entry when one service is asked for, so --limit counts its own.
			n := limit
			if only != "" {
				n = int(^uint(0) >> 1)
			}
			flows, total, err := dp.TrackedFlows(n)
			if err != nil {
				return &cmdutil.ExitError{Code: 1, Err: fmt.Errorf("list tracked flows: %w", err)}
			}
			printFlows(cmd.OutOrStdout(), cfg, flows, total, only, limit)
			return nil
		},
	}
	cmd.Flags().IntVar(&limit, "limit", 1000, "show at most this many flows")
	return cmd
}

func serviceNames(cfg *config.Config) string {
	names := make([]string, len(cfg.Services))
	for i, s := range cfg.Services {
		names[i] = s.Name
	}
	return strings.Join(names, ", ")
}

// flowNames names a tracked flow's service and backend (daemon.Identity:
// the maps know them by (VIP, protocol, ports) and address only).
func flowNames(id daemon.Identity, f datapath.TrackedFlow) (service, backend string) {
	service, backend = addrText(f.ServiceVIP)+"/"+f.ServiceProto.String(), f.Backend.String()
	cs := id.Service(f.ServiceVIP, f.ServiceProto, f.ServicePorts)
	if cs == nil {
		return service, backend
	}
	if srv := daemon.Server(cs, f.Backend); srv != nil {
		backend = srv.Name
	}
	return cs.Name, backend
}

func printFlows(out io.Writer, cfg *config.Config, flows []datapath.TrackedFlow, total int, only string, limit int) {
	slices.SortFunc(flows, func(a, b datapath.TrackedFlow) int {
		if c := a.Flow.Dst.Compare(b.Flow.Dst); c != 0 {
			return c
		}
		return a.Flow.Src.Compare(b.Flow.Src)
	})
	w := tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
	fmt.Fprintln(w, "SERVICE\tPROTO\tCLIENT\tVIP:PORT\tBACKEND\tADDRESS\tSTATE\tIDLE")
	shown, matched := 0, 0
	id := daemon.IdentityOf(cfg)
	for _, f := range flows {
		svc, be := flowNames(id, f)
		if only != "" && svc != only {
			continue
		}
		matched++
		if shown >= limit {
			continue
		}
		shown++
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", svc, f.Flow.Proto, f.Flow.Src, f.Flow.Dst, be, f.Backend,
			f.State, f.Idle.Round(time.Second))
	}
	w.Flush()
	if only != "" {
		total = matched
	}
	fmt.Fprintf(out, "%d of %d tracked flows shown\n", shown, total)
}
