package reconcile

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"slices"

	"github.com/dsrlb/dsrlb/hostprep/internal/netops"
	"github.com/dsrlb/dsrlb/hostprep/internal/plan"
	"github.com/dsrlb/dsrlb/hostprep/internal/state"
	"github.com/dsrlb/dsrlb/hostprep/internal/sysctl"
)

// Remove undoes what the state file says hostprep did: VIPs first, then
// lo, then the sysctls (so no VIP is ever held with ARP answered), then
// the files. Offline, only the files. With dryRun it only reports.
func Remove(d *Deps, h *Host, dryRun bool) (*Report, error) {
	r, err := newRun(d)
	if err != nil {
		return nil, err
	}
	if d.Live() {
		r.changes = append(r.changes, r.removeAddrs(h)...)
		r.changes = append(r.changes, r.removeLoopback(h)...)
		if err := r.restoreSysctls(); err != nil {
			return nil, err
		}
	}
	if err := r.restoreFiles(); err != nil {
		return nil, err
	}
	if dryRun {
		return &Report{Changes: r.changes, Notes: r.rep.Notes}, nil
	}
	r.finish = func() { r.st = forget(r.st, d.Live()) }
	return r.execute()
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
		do:   func() error { return r.d.Net.SetLoopbackUp(false) },
		undo: func() error { return r.d.Net.SetLoopbackUp(true) },
	}}
}

// restoreSysctls puts back the values found before hostprep's first
// change, but only where the value is still hostprep's: a value changed
// since is someone's decision and stays.
func (r *run) restoreSysctls() error {
	for _, name := range slices.Sorted(maps.Keys(r.st.Sysctls)) {
		before := r.st.Sysctls[name]
		k, err := sysctl.ParseKey(name)
		if err != nil {
			return fmt.Errorf("read state %s: %w", r.d.StatePath, err)
		}
		cur, err := r.d.Sysctls.Get(k)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			r.note("skipped %s: the interface is gone", name)
		case err != nil:
			return err
		case cur != plan.Value(k.Param):
			r.note("left %s = %s: changed since hostprep set it to %s (it was %s before hostprep)", name, cur, plan.Value(k.Param), before)
		case cur != before:
			c := r.setSysctl(k, cur, before)
			c.Done = fmt.Sprintf("restored %s = %s (hostprep had set %s)", k, before, cur)
			r.changes = append(r.changes, c)
		}
	}
	return nil
}

func (r *run) restoreFiles() error {
	for _, path := range slices.Sorted(maps.Keys(r.st.Files)) {
		cur, exists, err := r.d.Files.Read(path)
		if err != nil {
			return err
		}
		before := r.st.Files[path]
		switch {
		case before == nil && exists:
			r.changes = append(r.changes, r.fileChange(path, cur, exists, nil, false, "delete", "deleted"))
		case before != nil && (!exists || string(cur) != *before):
			r.changes = append(r.changes, r.fileChange(path, cur, exists, []byte(*before), true, "restore", "restored"))
		}
	}
	return nil
}

func (r *run) fileChange(path string, cur []byte, exists bool, to []byte, toExists bool, verb, done string) *Change {
	return &Change{Kind: "file", Item: path, Have: "written by hostprep", Want: "as before hostprep",
		Action: verb + " " + path, Done: done + " " + path + " (as before hostprep)",
		do:   func() error { return restoreFile(r.d.Files, path, to, toExists) },
		undo: func() error { return restoreFile(r.d.Files, path, cur, exists) },
	}
}

func (r *run) note(format string, args ...any) {
	r.rep.Notes = append(r.rep.Notes, fmt.Sprintf(format, args...))
}
