package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/dsrlb/dsrlb/lbd/daemon"
	"github.com/dsrlb/dsrlb/lbd/datapath"
	"github.com/dsrlb/dsrlb/lbd/statusjson"
	"github.com/dsrlb/dsrlb/shared/cmdutil"
	"github.com/dsrlb/dsrlb/shared/config"
)

func newFlowsCmd(cfgPath *string) *cobra.Command {
	var (
		limit  int
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "flows [SERVICE]",
		Short: "List the tracked flows (conntrack) and the backend each is kept on",
		Long: `flows lists the conntrack entries that still decide their flow's backend
(within their idle timeout, backend up or draining), as ipvsadm -Lnc: client,
VIP:port, backend, state (established, syn_seen, closing, closed) and idle time.
It reads the pinned maps read-only, lbd running or not, and walks the whole
conntrack map (about a microsecond per entry). SERVICE limits the list to one
service. --json prints the versioned schema of docs/status-json.md (lbd flows
--json section): one object per flow, client and VIP addresses and ports apart,
idle time in seconds.`,
		Example: `  lbd flows
  lbd flows web --limit 50
  lbd flows web --json | jq -r '.flows[] | select(.state == "established") | .client'`,
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
			doc := flowsDoc(cfg, flows, total, only, limit)
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(doc)
			}
			printFlows(cmd.OutOrStdout(), doc)
			return nil
		},
	}
	cmd.Flags().IntVar(&limit, "limit", 1000, "show at most this many flows")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON in the versioned schema of docs/status-json.md")
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

// flowRows sorts the flows (by VIP:port, then client) and keeps those of
// only ("" for all), at most limit; matched counts every one of only.
func flowRows(cfg *config.Config, flows []datapath.TrackedFlow, only string, limit int) (rows []statusjson.Flow, matched int) {
	slices.SortFunc(flows, func(a, b datapath.TrackedFlow) int {
		if c := a.Flow.Dst.Compare(b.Flow.Dst); c != 0 {
			return c
		}
		return a.Flow.Src.Compare(b.Flow.Src)
	})
	rows = []statusjson.Flow{}
	id := daemon.IdentityOf(cfg)
	for _, f := range flows {
		svc, be := flowNames(id, f)
		if only != "" && svc != only {
			continue
		}
		matched++
		if len(rows) >= limit {
			continue
		}
		rows = append(rows, statusjson.Flow{Service: svc, Protocol: f.Flow.Proto.String(),
			Client: f.Flow.Src.Addr().String(), ClientPort: f.Flow.Src.Port(), VIP: f.Flow.Dst.Addr().String(), Port: f.Flow.Dst.Port(),
			Backend: be, Address: f.Backend.String(), State: f.State.String(), IdleSeconds: f.Idle.Seconds()})
	}
	return rows, matched
}

// flowsDoc is `lbd flows --json`.
func flowsDoc(cfg *config.Config, flows []datapath.TrackedFlow, total int, only string, limit int) statusjson.Flows {
	rows, matched := flowRows(cfg, flows, only, limit)
	if only != "" {
		total = matched
	}
	return statusjson.Flows{SchemaVersion: statusjson.SchemaVersion, Generated: time.Now().UTC().Truncate(time.Millisecond),
		Source: "lbd flows", Version: daemon.BuildVersion, PinPath: cfg.Balancer.PinPath, Service: only,
		Total: total, Limit: limit, Flows: rows}
}

func printFlows(out io.Writer, doc statusjson.Flows) {
	w := tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
	fmt.Fprintln(w, "SERVICE\tPROTO\tCLIENT\tVIP:PORT\tBACKEND\tADDRESS\tSTATE\tIDLE")
	for _, f := range doc.Flows {
		client := netip.AddrPortFrom(netip.MustParseAddr(f.Client), f.ClientPort)
		dst := netip.AddrPortFrom(netip.MustParseAddr(f.VIP), f.Port)
		idle := time.Duration(f.IdleSeconds * float64(time.Second)).Round(time.Second)
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", f.Service, f.Protocol, client, dst, f.Backend, f.Address, f.State, idle)
	}
	w.Flush()
	fmt.Fprintf(out, "%d of %d tracked flows shown\n", len(doc.Flows), doc.Total)
}
