package datapath

import (
	"errors"
	"path/filepath"
	"testing"

	"github.com/cilium/ebpf/link"
)

// TestDetachNoticedAndRepaired: a tcx link detached behind the daemon's
// back is reported by CheckAttached and by a Reader, Reattach restores
// forwarding, and both report it attached again.
func TestDetachNoticedAndRepaired(t *testing.T) {
	tp := newTopo(t)
	c := tp.listen(t, 5000)
	pin := testPinPath(t)
	d := tp.openIn(t, Options{PinPath: pin, MaglevTableSize: 251, ConntrackSize: 4096})
	t.Cleanup(func() { inNetns(tp.lb, d.Remove) })
	check := func(wantErr bool, what string) {
		t.Helper()
		var cerr, rerr error
		err := inNetns(tp.lb, func() error {
			cerr = d.CheckAttached()
			r, err := OpenReadOnly(pin)
			if err != nil {
				return err
			}
			defer r.Close()
			rerr = r.Attachment(tp.lbIface)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		for who, e := range map[string]error{"CheckAttached": cerr, "Reader.Attachment": rerr} {
			if wantErr != errors.Is(e, ErrNotAttached) {
				t.Errorf("%s: %s: %v, want not attached = %v", what, who, e, wantErr)
			}
		}
	}
	check(false, "after Attach")
	l, err := link.LoadPinnedLink(filepath.Join(pin, pinLink), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Detach(); err != nil {
		t.Fatal(err)
	}
	l.Close()
	check(true, "link detached")
	tp.expectForwarded(t, c, false, "link detached")
	if err := inNetns(tp.lb, d.Reattach); err != nil {
		t.Fatalf("reattach: %v", err)
	}
	check(false, "after Reattach")
	tp.expectForwarded(t, c, true, "after Reattach")
}
