package netnsdo_test

import (
	"errors"
	"testing"

	"github.com/vishvananda/netns"

	"github.com/dsrlb/dsrlb/internal/netnsdo"
	"github.com/dsrlb/dsrlb/internal/nettest"
)

// TestDo: fn runs in the namespace, its error comes back as it is, and a
// fn that moves its thread elsewhere still returns without error (the
// thread is switched back, not left where fn put it).
func TestDo(t *testing.T) {
	a := nettest.Create(t, "dsrlbnd-")
	b := nettest.Create(t, "dsrlbnd-")
	var inside bool
	if err := netnsdo.Do(a.Handle, func() error {
		cur, err := netns.Get()
		if err != nil {
			return err
		}
		defer cur.Close()
		inside = cur.Equal(a.Handle)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if !inside {
		t.Error("fn did not run in the namespace")
	}
	sentinel := errors.New("from fn")
	if err := netnsdo.Do(a.Handle, func() error { return sentinel }); !errors.Is(err, sentinel) {
		t.Errorf("Do returned %v, want fn's error", err)
	}
	if err := netnsdo.Do(a.Handle, func() error { return netns.Set(b.Handle) }); err != nil {
		t.Errorf("fn that moved its thread: %v", err)
	}
	if err := netnsdo.Do(netns.None(), func() error { return nil }); err == nil {
		t.Error("Do with a closed handle ran fn instead of failing")
	}
}
