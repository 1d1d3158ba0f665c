package nettest

import (
	"errors"
	"fmt"
	"os"
	"runtime"

	"github.com/vishvananda/netns"
)

// The namespace primitives, returning errors rather than failing a test,
// so the integration harness (integration/topo) uses them too.

// CreateNamed creates the namespace /run/netns/name (`ip netns add
// name`) on a locked thread that returns to its own namespace, and
// returns a handle to it.
func CreateNamed(name string) (netns.NsHandle, error) {
	h := netns.None()
	err := onThread(func() error {
		orig, err := netns.Get()
		if err != nil {
			return err
		}
		defer orig.Close()
		if h, err = netns.NewNamed(name); err != nil { // switches this thread
			return errors.Join(err, restore(orig))
		}
		return restore(orig)
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
// error; the calling goroutine never changes namespace. Sockets fn
// creates stay in the namespace and may be used from any goroutine
// afterwards; goroutines fn starts do not run in it.
func Do(h netns.NsHandle, fn func() error) error {
	return onThread(func() error {
		orig, err := netns.Get()
		if err != nil {
			return err
		}
		defer orig.Close()
		if err := netns.Set(h); err != nil {
			return fmt.Errorf("enter netns %s: %w", h, err)
		}
		return errors.Join(fn(), restore(orig))
	})
}

// errStuck marks a thread that could not return to its namespace.
var errStuck = errors.New("thread left in another namespace")

func restore(orig netns.NsHandle) error {
	if err := netns.Set(orig); err != nil {
		return fmt.Errorf("%w: %w", errStuck, err)
	}
	return nil
}

// onThread runs fn on its own locked thread. If fn leaves the thread in
// another namespace the thread is not unlocked, so the runtime ends it
// with the goroutine instead of reusing it.
func onThread(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		err := fn()
		if !errors.Is(err, errStuck) {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}
