package reconcile

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"slices"
	"strings"

	"github.com/dsrlb/dsrlb/hostprep/internal/netops"
	"github.com/dsrlb/dsrlb/hostprep/internal/plan"
	"github.com/dsrlb/dsrlb/hostprep/internal/state"
	"github.com/dsrlb/dsrlb/hostprep/internal/sysctl"
)

// Remove undoes what the state file says hostprep did: VIPs first, then
// lo, then the sysctls (so no VIP is ever held with ARP answered), then
// the files. Offline, only the files. With dryRun it only reports.
//
// Unlike apply, remove does not roll back on a failure: it is what a
// package removal runs, and undoing what it could undo would leave the
// host prepared with nothing left to remove it. It removes what it can,
// keeps the rest in the state file for another remove, and fails naming
// each part it could not undo (Report.Failed).
func Remove(d *Deps, h *Host, dryRun bool) (*Report, error) {
	r, err := newRun(d)
	if err != nil {
		return nil, err
	}
	if d.Live() {
		r.changes = append(r.changes, r.removeAddrs(h)...)
		r.changes = append(r.changes, r.removeLoopback(h)...)
		r.restoreSysctls()
	}
	r.restoreFiles()
	if dryRun {
		return &Report{Changes: r.changes, Notes: r.rep.Notes, Failed: r.rep.Failed}, nil
	}
	r.finish = func() { r.st = forget(r.st, d.Live()) }
	return r.removeAll()
}

// ErrIncomplete means remove could not undo everything hostprep did.
var ErrIncomplete = errors.New("remove incomplete")

// removeAll makes every change it can. A sysctl is not restored while a
// VIP it protects could not be deleted: that host would answer ARP for it.
func (r *run) removeAll() (*Report, error) {
	var done []*Change
	addrLeft := false
	for _, c := range r.changes {
		if c.Kind == "sysctl" && addrLeft {
			r.failed("kept %s = %s: a VIP is still on lo, and without it this host would answer ARP for that VIP", c.Item, c.Have)
			continue
		}
		if err := c.do(); err != nil {
			r.failed("%s: %v", c.Action, err)
			addrLeft = addrLeft || c.Kind == "address"
			continue
		}
		if c.forget != nil {
			c.forget()
		}
		done = append(done, c)
		r.d.Log.Debug("removed", "kind", c.Kind, "item", c.Item)
	}
	r.rep.Changes = done
	if len(r.rep.Failed) == 0 && r.finish != nil {
		r.finish()
	}
	if err := r.saveState(r.st); err != nil {
		r.failed("%v", err)
	}
	if n := len(r.rep.Failed); n > 0 {
		return &r.rep, fmt.Errorf("%w: %d part(s) of what hostprep did are still in place, recorded in %s:\n  %s\nfix the cause and run hostprep remove again",
			ErrIncomplete, n, r.d.StatePath, strings.Join(r.rep.Failed, "\n  "))
	}
	return &r.rep, nil
}

func (r *run) failed(format string, args ...any) {
	r.rep.Failed = append(r.rep.Failed, fmt.Sprintf(format, args...))
}

// forget is the state after a successful remove: empty, or offline only
// the live part kept for a later live remove.
func forget(st *state.State, live bool) *state.State {
	if live {
		return state.New()
	}
	st.Files = map[string]*string{}
	return st
}

func (r *run) removeAddrs(h *Host) []*Change {
	var cs []*Change
	for _, p := range r.st.Addresses {
		if i := indexOnLo(h.Addrs, p); i >= 0 {
			cs = append(cs, r.delAddr(h.Addrs[i], "hostprep added it"))
		}
	}
	return cs
}

func (r *run) removeLoopback(h *Host) []*Change {
	if !r.st.LoopbackUp || !h.LoUp {
		return nil
	}
	return []*Change{{Kind: "link", Item: netops.Loopback, Have: "up", Want: "down (hostprep brought it up)",
		Action: "bring lo down", Done: "brought lo down (hostprep had brought it up)",
		do:     func() error { return r.d.Net.SetLoopbackUp(false) },
		undo:   func() error { return r.d.Net.SetLoopbackUp(true) },
		forget: func() { r.st.LoopbackUp = false },
	}}
}

// restoreSysctls puts back the values found before hostprep's first
// change, but only where the value is still hostprep's: a value changed
// since is someone's decision and stays.
// A key it cannot read is reported as failed and stays recorded.
func (r *run) restoreSysctls() {
	for _, name := range slices.Sorted(maps.Keys(r.st.Sysctls)) {
		before := r.st.Sysctls[name]
		k, err := sysctl.ParseKey(name)
		if err != nil {
			r.failed("read state %s: %v", r.d.StatePath, err)
			continue
		}
		cur, err := r.d.Sysctls.Get(k)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			r.note("skipped %s: the interface is gone", name)
		case err != nil:
			r.failed("restore %s = %s: %v", name, before, err)
		case cur != plan.Value(k.Param):
			r.note("left %s = %s: changed since hostprep set it to %s (it was %s before hostprep)", name, cur, plan.Value(k.Param), before)
		case cur != before:
			c := r.setSysctl(k, cur, before)
			c.Done = fmt.Sprintf("restored %s = %s (hostprep had set %s)", k, before, cur)
			c.forget = func() { delete(r.st.Sysctls, name) }
			r.changes = append(r.changes, c)
		}
	}
}

func (r *run) restoreFiles() {
	for _, path := range slices.Sorted(maps.Keys(r.st.Files)) {
		cur, exists, err := r.d.Files.Read(path)
		if err != nil {
			r.failed("restore %s: %v", path, err)
			continue
		}
		before := r.st.Files[path]
		switch {
		case before == nil && exists:
			r.changes = append(r.changes, r.fileChange(path, cur, exists, nil, false, "delete", "deleted"))
		case before != nil && (!exists || string(cur) != *before):
			r.changes = append(r.changes, r.fileChange(path, cur, exists, []byte(*before), true, "restore", "restored"))
		}
	}
}

func (r *run) fileChange(path string, cur []byte, exists bool, to []byte, toExists bool, verb, done string) *Change {
	return &Change{Kind: "file", Item: path, Have: "written by hostprep", Want: "as before hostprep",
		Action: verb + " " + path, Done: done + " " + path + " (as before hostprep)",
		do:     func() error { return restoreFile(r.d.Files, path, to, toExists) },
		undo:   func() error { return restoreFile(r.d.Files, path, cur, exists) },
		forget: func() { delete(r.st.Files, path) },
	}
}

func (r *run) note(format string, args ...any) {
	r.rep.Notes = append(r.rep.Notes, fmt.Sprintf(format, args...))
}
