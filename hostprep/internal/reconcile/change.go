package reconcile

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"

	"github.com/dsrlb/dsrlb/hostprep/internal/state"
)

// Change is one difference between the plan and the host, with the steps
// that remove it and put it back.
type Change struct {
	Kind string `json:"kind"`           // sysctl, link, address, file, conflict
	Item string `json:"item"`           // what differs: a key, an address, a path
	Have string `json:"have"`           // the host's value
	Want string `json:"want"`           // the plan's value
	Diff string `json:"diff,omitempty"` // files: lines to remove (-) and add (+)

	Action string `json:"-"` // imperative, for --dry-run: "add 192.0.2.10/32 to lo"
	Done   string `json:"-"` // past tense, for apply's output

	do, undo func() error
	forget   func() // remove: drops the item from the state once undone
}

// String is the one-line drift report of check.
func (c *Change) String() string {
	return fmt.Sprintf("%s %s: have %s, want %s", c.Kind, c.Item, c.Have, c.Want)
}

// Report is the outcome of a run.
type Report struct {
	Changes    []*Change // done (apply, remove), or to do (dry run, check)
	Notes      []string  // things left alone on purpose, for the user to know
	RolledBack []*Change // undone after a failure, newest first
	NotUndone  []*Change // apply: made, then not undone after a failure (still recorded)
	Failed     []string  // remove: what could not be undone, and why
}

// run executes changes in order and, on the first failure, undoes the
// ones done, newest first. The state is saved after the last change, so
// it never records a change that did not happen, and is saved even after
// a failed rollback so that remove can still undo what stayed.
type run struct {
	d       *Deps
	st      *state.State
	raw     []byte // the state file's content as found
	changes []*Change
	finish  func() // runs after the last change, before the state is saved
	rep     Report
}

func (r *run) execute() (*Report, error) {
	var done []*Change
	for _, c := range r.changes {
		if err := c.do(); err != nil {
			return &r.rep, r.rollback(done, err)
		}
		done = append(done, c)
		r.d.Log.Debug("changed", "kind", c.Kind, "item", c.Item, "from", c.Have, "to", c.Want)
	}
	if r.finish != nil {
		r.finish()
	}
	if err := r.saveState(r.st); err != nil {
		return &r.rep, r.rollback(done, err)
	}
	r.rep.Changes = done
	return &r.rep, nil
}

func (r *run) rollback(done []*Change, cause error) error {
	var errs []error
	for i := len(done) - 1; i >= 0; i-- {
		c := done[i]
		if err := c.undo(); err != nil {
			errs = append(errs, fmt.Errorf("undo %s %s: %w", c.Kind, c.Item, err))
			r.rep.NotUndone = append(r.rep.NotUndone, c)
			continue
		}
		r.rep.RolledBack = append(r.rep.RolledBack, c)
	}
	if len(errs) == 0 {
		return fmt.Errorf("%w; the %d change(s) made before it were rolled back", cause, len(done))
	}
	// What could not be undone stays recorded, so remove can undo it later.
	if err := r.saveState(r.st); err != nil {
		errs = append(errs, err)
	}
	r.d.Log.Error("rollback incomplete", "error", errors.Join(errs...))
	return fmt.Errorf("%w; rollback incomplete, fix the cause and run hostprep apply or remove again: %w",
		cause, errors.Join(errs...))
}

// saveState writes st when its content changed; an empty state is no file.
func (r *run) saveState(st *state.State) error {
	if st.Empty() {
		if r.raw == nil {
			return nil
		}
		if err := r.d.Files.Remove(r.d.StatePath); err != nil {
			return fmt.Errorf("remove state: %w", err)
		}
		return nil
	}
	data := st.Encode()
	if bytes.Equal(data, r.raw) {
		return nil
	}
	if err := r.d.Files.Write(r.d.StatePath, data); err != nil {
		return fmt.Errorf("save state: %w", err)
	}
	return nil
}

func newRun(d *Deps) (*run, error) {
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	st, raw, err := loadState(d)
	if err != nil {
		return nil, err
	}
	return &run{d: d, st: st, raw: raw}, nil
}
