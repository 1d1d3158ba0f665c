package nettest

import (
	"errors"
	"fmt"
	"os"

	"github.com/vishvananda/netns"

	"github.com/dsrlb/dsrlb/internal/netnsdo"
)

// The namespace primitives, returning errors rather than failing a test,
// so the integration harness (integration/topo) uses them too.

// CreateNamed creates the namespace /run/netns/name (`ip netns add
// name`) on a locked thread that returns to its own namespace
// (netnsdo.Do: netns.NewNamed switches the thread it runs on), and
// returns a handle to it.
func CreateNamed(name string) (netns.NsHandle, error) {
	self, err := netns.Get()
	if err != nil {
		return netns.None(), fmt.Errorf("read current netns: %w", err)
	}
	defer self.Close()
	h := netns.None()
	err = netnsdo.Do(self, func() error {
		var nerr error
		h, nerr = netns.NewNamed(name)
		return nerr
	})
	return h, err
}

// AddNamed is CreateNamed for a caller that needs no handle (the
// namespace is reached by name: nsenter, systemd-nspawn).
func AddNamed(name string) error {
	h, err := CreateNamed(name)
	if err == nil {
		h.Close()
	}
	return err
}

// DelNamed removes the namespace /run/netns/name (`ip netns del name`);
// one that is not there is not an error.
func DelNamed(name string) error {
	if err := netns.DeleteNamed(name); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// DoIn runs fn on a locked OS thread inside the namespace named name.
func DoIn(name string, fn func() error) error {
	h, err := netns.GetFromName(name)
	if err != nil {
		return fmt.Errorf("open netns %s: %w", name, err)
	}
	defer h.Close()
	return Do(h, fn)
}

// Do runs fn on a locked OS thread inside the namespace h and returns its
// error; the calling goroutine never changes namespace (netnsdo.Do, the
// product's own).
func Do(h netns.NsHandle, fn func() error) error { return netnsdo.Do(h, fn) }
