package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/dsrlb/dsrlb/hostprep/internal/plan"
	"github.com/dsrlb/dsrlb/hostprep/internal/reconcile"
)

// summary counts what the plan holds, for the "nothing to do" lines.
func summary(p *plan.Plan, live bool) string {
	if !live {
		return fmt.Sprintf("%d files", len(p.Files))
	}
	return fmt.Sprintf("%d VIP(s) on lo, %d sysctls, %d files", len(p.VIPs), len(p.Sysctls), len(p.Files))
}

func printPlan(w io.Writer, p *plan.Plan, live bool) {
	for _, v := range p.VIPs {
		fmt.Fprintf(w, "plan: %s on lo%s, for %s\n", v.Prefix(), labelText(v.Label()), strings.Join(v.Services, ", "))
	}
	if live {
		for _, s := range p.Sysctls {
			fmt.Fprintf(w, "plan: %s = %s (%s)\n", s.Key, s.Value, s.Reason)
		}
	}
	for _, f := range p.Files {
		fmt.Fprintf(w, "plan: file %s\n", f.Path)
	}
}

func labelText(l string) string {
	if l == "" {
		return ""
	}
	return " (label " + l + ")"
}

func printApply(w io.Writer, rep *reconcile.Report, p *plan.Plan, dryRun, live, failed bool) {
	if failed {
		printApplyFailed(w, rep)
		return
	}
	switch {
	case dryRun && len(rep.Changes) == 0:
		fmt.Fprintf(w, "no change needed: %s already as planned\n", summary(p, live))
	case dryRun:
		for _, c := range rep.Changes {
			fmt.Fprintf(w, "would %s\n", c.Action)
		}
	case len(rep.RolledBack) > 0:
		for _, c := range rep.RolledBack {
			fmt.Fprintf(w, "rolled back: %s\n", c.Done)
		}
	case len(rep.Changes) == 0:
		fmt.Fprintf(w, "no change: %s already as planned\n", summary(p, live))
	default:
		for _, c := range rep.Changes {
			fmt.Fprintln(w, c.Done)
		}
	}
}

// printApplyFailed tells what a failed apply left: never "no change ...
// already as planned", which would read as success.
func printApplyFailed(w io.Writer, rep *reconcile.Report) {
	for _, c := range rep.RolledBack {
		fmt.Fprintf(w, "rolled back: %s\n", c.Done)
	}
	for _, c := range rep.NotUndone {
		fmt.Fprintf(w, "left in place: %s\n", c.Done)
	}
	switch {
	case len(rep.NotUndone) > 0:
		fmt.Fprintf(w, "not applied: %d change(s) rolled back, %d left in place (recorded for hostprep remove)\n", len(rep.RolledBack), len(rep.NotUndone))
	case len(rep.RolledBack) > 0:
		fmt.Fprintf(w, "not applied: the %d change(s) made were rolled back; the host is as before\n", len(rep.RolledBack))
	default:
		fmt.Fprintln(w, "not applied: the host is as before")
	}
}

func printCheck(w io.Writer, rep *reconcile.Report, p *plan.Plan, live bool) {
	if len(rep.Changes) == 0 {
		fmt.Fprintf(w, "in sync: %s match the plan\n", summary(p, live))
		return
	}
	for _, c := range rep.Changes {
		fmt.Fprintf(w, "drift: %s\n", c)
		for l := range strings.Lines(c.Diff) {
			fmt.Fprintf(w, "    %s", l)
		}
	}
	fmt.Fprintf(w, "%d difference(s) from the plan: run hostprep apply to fix them\n", len(rep.Changes))
}

// checkResult is check --json's document.
type checkResult struct {
	InSync bool                `json:"in_sync"`
	VIPs   []string            `json:"vips"`
	Drift  []*reconcile.Change `json:"drift"`
}

func printCheckJSON(w io.Writer, rep *reconcile.Report, p *plan.Plan) error {
	res := checkResult{InSync: len(rep.Changes) == 0, VIPs: []string{}, Drift: rep.Changes}
	if res.Drift == nil {
		res.Drift = []*reconcile.Change{}
	}
	for _, v := range p.VIPs {
		res.VIPs = append(res.VIPs, v.Addr.String())
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(res); err != nil {
		return fmt.Errorf("print check result: %w", err)
	}
	return nil
}

func printRemove(w io.Writer, rep *reconcile.Report, dryRun bool, statePath string) {
	for _, n := range rep.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
	if len(rep.Failed) > 0 && !dryRun {
		for _, c := range rep.Changes {
			fmt.Fprintln(w, c.Done)
		}
		for _, f := range rep.Failed {
			fmt.Fprintf(w, "not removed: %s\n", f)
		}
		return
	}
	switch {
	case len(rep.Changes) == 0 && len(rep.Failed) > 0:
		for _, f := range rep.Failed {
			fmt.Fprintf(w, "cannot remove: %s\n", f)
		}
	case len(rep.Changes) == 0:
		fmt.Fprintf(w, "nothing to remove: %s records nothing hostprep changed that is still in place\n", statePath)
	case dryRun:
		for _, c := range rep.Changes {
			fmt.Fprintf(w, "would %s\n", c.Action)
		}
		for _, f := range rep.Failed {
			fmt.Fprintf(w, "cannot remove: %s\n", f)
		}
	default:
		for _, c := range rep.Changes {
			fmt.Fprintln(w, c.Done)
		}
	}
}
