package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/dsrlb/dsrlb/lbd/control"
	"github.com/dsrlb/dsrlb/lbd/daemon"
	"github.com/dsrlb/dsrlb/lbd/statusjson"
	"github.com/dsrlb/dsrlb/shared/cmdutil"
	"github.com/dsrlb/dsrlb/shared/config"
)

func newSetCmd(cfgPath *string) *cobra.Command {
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "set SERVICE/SERVER drain|maint|ready | set SERVICE/SERVER weight N",
		Short: "Drain, take out or re-weight one server at run time, without editing the file",
		Long: `set changes one server of the running lbd through its control socket
(root only), as HAProxy's "set server" or ipvsadm -e do:

  drain     keep its established flows, send it no new ones (IPVS weight 0)
  maint     out of rotation like a failed server: its flows move to the others
            (through DSR an established TCP connection then resets)
  weight N  use weight N (0-256) instead of the configured one; 0 drains
  ready     back to what the configuration says (drops drain, maint and weight)

Health checks go on meanwhile. The setting is transient: lbd status shows it as
"drain (admin)" (and so on), it survives an lbd restart (recorded under
/run/dsrlb, so not a reboot), and a reload that changes the server (address,
weight, mac, check, fallback role) or removes it drops it. Running the same set
twice changes nothing the second time.`,
		Example: `  lbd set web/web2 drain
  lbd set web/web2 weight 5
  lbd set web/web2 ready`,
		Args: cobra.RangeArgs(2, 3),
		RunE: func(cmd *cobra.Command, args []string) error {
			req, err := parseSet(args)
			if err != nil {
				return err
			}
			cfg, err := cmdutil.LoadConfig(nil, *cfgPath, (*config.Config).RequireBalancer)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			return askSet(ctx, cmd.OutOrStdout(), controlSocket(cfg.Balancer.PinPath), req)
		},
	}
	cmd.Flags().DurationVar(&timeout, "timeout", 30*time.Second, "give up waiting for the daemon's answer after `DURATION`")
	return cmd
}

// parseSet turns the arguments into a request; mistakes are usage errors.
func parseSet(args []string) (control.Request, error) {
	usage := func(format string, a ...any) (control.Request, error) {
		return control.Request{}, &cmdutil.ExitError{Code: ExitUsage, Err: fmt.Errorf(format, a...)}
	}
	svc, srv, ok := strings.Cut(args[0], "/")
	if !ok || svc == "" || srv == "" || strings.Contains(srv, "/") {
		return usage("%q: give SERVICE/SERVER, e.g. web/web2 (names as in the configuration)", args[0])
	}
	req := control.Request{Command: control.CmdSet, Service: svc, Server: srv, Action: args[1]}
	switch args[1] {
	case control.SetDrain, control.SetMaint, control.SetReady:
		if len(args) != 2 {
			return usage("%s takes no value: lbd set %s %s", args[1], args[0], args[1])
		}
	case control.SetWeight:
		if len(args) != 3 {
			return usage("weight needs a value: lbd set %s weight N (0-%d)", args[0], config.MaxWeight)
		}
		w, err := strconv.Atoi(args[2])
		if err != nil || w < 0 || w > config.MaxWeight {
			return usage("weight %q: give a whole number from 0 to %d (0 drains the server)", args[2], config.MaxWeight)
		}
		req.Weight = &w
	default:
		return usage("%q: give drain, maint, ready or weight N", args[1])
	}
	return req, nil
}

// askSet sends req to the daemon on sock and prints its answer.
func askSet(ctx context.Context, out io.Writer, sock string, req control.Request) error {
	resp, err := control.Call(ctx, sock, req)
	switch {
	case errors.Is(err, os.ErrPermission):
		return &cmdutil.ExitError{Code: ExitNoPermission, Err: fmt.Errorf("set %s/%s: permission denied on %s: lbd set needs root, as the control socket is root's only", req.Service, req.Server, sock)}
	case errors.Is(err, control.ErrNoDaemon):
		return &cmdutil.ExitError{Code: 1, Plain: true, Err: fmt.Errorf("lbd is not running: %v; start it (systemctl start lbd): a setting needs the running daemon", err)}
	case err != nil:
		return &cmdutil.ExitError{Code: 1, Err: fmt.Errorf("set %s/%s: %w", req.Service, req.Server, err)}
	}
	if err := resp.Err(); err != nil {
		return &cmdutil.ExitError{Code: 1, Err: fmt.Errorf("set %s/%s: %w", req.Service, req.Server, err)}
	}
	fmt.Fprintln(out, resp.Message)
	return nil
}

// markAdmin puts the settings the running (or last) lbd recorded for lbd
// set on the backends of svcs, with the weight in force.
func markAdmin(cfg *config.Config, svcs []statusjson.Service) {
	sets, err := daemon.ReadAdminFile(daemon.AdminFile(controlSocket(cfg.Balancer.PinPath)))
	if err != nil {
		return // a damaged file: the daemon says so in its log when it reads it
	}
	daemon.MarkAdmin(svcs, sets)
	for _, s := range sets {
		if s.Weight == nil {
			continue
		}
		for i := range svcs {
			for j := range svcs[i].Backends {
				if b := &svcs[i].Backends[j]; svcs[i].Name == s.Service && b.Name == s.Server {
					b.Weight = *s.Weight
				}
			}
		}
	}
}

// drainReason tells why a backend the maps show as drain or down is so,
// when lbd set, a fallback standing by or on_failure: drain explains it
// better than the weight; "" otherwise (stateReason's text stands).
func drainReason(cs *config.Service, b *statusjson.Backend) string {
	switch {
	case b.Admin != "" && b.State == statusjson.StateDown && strings.HasPrefix(b.Admin, "maint"):
		return "maint (admin)"
	case b.Admin != "" && b.State == statusjson.StateDrain && strings.HasPrefix(b.Admin, "drain"):
		return "drain (admin)"
	case b.State != statusjson.StateDrain || b.Weight == 0:
		return ""
	case b.Fallback:
		return "fallback standing by: a primary server takes new flows"
	case cs != nil && cs.OnFailure == config.FailDrain:
		return "health check failing (on_failure: drain: established flows stay, no new ones)"
	}
	return ""
}

// backendText is a backend's name and state as lbd status prints them:
// "sorry (fallback)", "drain (admin)".
func backendText(b statusjson.Backend) (name, state string) {
	name, state = b.Name, b.State
	if b.Fallback {
		name += " (fallback)"
	}
	if b.Admin != "" {
		state += " (admin)"
	}
	return name, state
}
