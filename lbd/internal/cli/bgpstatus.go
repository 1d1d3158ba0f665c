package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/dsrlb/dsrlb/lbd/daemon"
	"github.com/dsrlb/dsrlb/shared/config"
)

// bgpStatusJSON is the BGP part of `lbd status --json`: what the running
// lbd last wrote, and whether that lbd is still running (its sessions die
// with it).
type bgpStatusJSON struct {
	Running bool   `json:"running"`
	Note    string `json:"note,omitempty"`
	daemon.BGPStatus
}

// readBGPStatus reads what the lbd serving cfg's data plane wrote; nil in
// ARP mode.
func readBGPStatus(cfg *config.Config) *bgpStatusJSON {
	if cfg.Balancer.BGP == nil {
		return nil
	}
	out := &bgpStatusJSON{}
	b, err := os.ReadFile(bgpStatusPath(cfg.Balancer.PinPath))
	if errors.Is(err, os.ErrNotExist) {
		out.Note = "lbd is not running: no BGP session, no VIP announced by this balancer"
		return out
	}
	if err == nil {
		err = json.Unmarshal(b, &out.BGPStatus)
	}
	if err != nil {
		out.Note = fmt.Sprintf("cannot read the BGP status: %v", err)
		return out
	}
	out.Running = out.PID > 0 && syscall.Kill(out.PID, 0) == nil
	if !out.Running {
		out.Note = fmt.Sprintf("lbd (pid %d) is gone: its BGP sessions closed with it, so its VIPs are withdrawn", out.PID)
	}
	return out
}

func printBGP(out io.Writer, cfg *config.Config, bs *bgpStatusJSON) {
	if bs == nil {
		return
	}
	fmt.Fprintf(out, "\nBGP (AS %d", cfg.Balancer.BGP.ASN)
	if bs.RouterID.IsValid() {
		fmt.Fprintf(out, ", router id %s", bs.RouterID)
	}
	fmt.Fprintln(out, "):")
	if bs.Note != "" {
		fmt.Fprintf(out, "  %s\n", bs.Note)
		if !bs.Running {
			return
		}
	}
	w := tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
	fmt.Fprintln(w, "  PEER\tASN\tSTATE\tSINCE\tADVERTISED")
	for _, p := range bs.Peers {
		since := ""
		if !p.Since.IsZero() {
			since = time.Since(p.Since).Round(time.Second).String()
		}
		fmt.Fprintf(w, "  %s\t%d\t%s\t%s\t%d\n", p.Address, p.ASN, p.State, since, p.Advertised)
	}
	w.Flush()
	fmt.Fprintf(out, "  announced VIPs: ")
	if len(bs.Announced) == 0 {
		fmt.Fprintln(out, "none")
		return
	}
	for i, v := range bs.Announced {
		if i > 0 {
			fmt.Fprint(out, ", ")
		}
		fmt.Fprint(out, v)
	}
	fmt.Fprintln(out)
}
