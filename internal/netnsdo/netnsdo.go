// Package netnsdo runs a function inside a network namespace without moving
// the caller: sockets and netlink calls belong to the namespace of the
// thread that makes them, so the function runs on an OS thread of its own,
// locked to its goroutine for the switch there and back.
package netnsdo

import (
	"errors"
	"fmt"
	"runtime"

	"github.com/vishvananda/netns"
)

// Do runs fn on a locked OS thread inside the namespace ns and returns its
// error; the calling goroutine never changes namespace. Sockets fn opens
// stay in ns and may be used from any goroutine afterwards; goroutines fn
// starts do not run in it. The thread is switched back to where it was
// before it is unlocked, also when fn moved it itself (netns.NewNamed
// does); if switching back fails the thread stays locked, so the runtime
// ends it with its goroutine instead of reusing it in the wrong namespace.
func Do(ns netns.NsHandle, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		stuck, err := in(ns, fn)
		if !stuck {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}

// in is Do's body on the locked thread; stuck reports a thread left in
// another namespace.
func in(ns netns.NsHandle, fn func() error) (stuck bool, err error) {
	orig, err := netns.Get()
	if err != nil {
		return false, fmt.Errorf("read current netns: %w", err)
	}
	defer orig.Close()
	if err := netns.Set(ns); err != nil {
		return false, fmt.Errorf("enter netns: %w", err)
	}
	ferr := fn()
	if err := netns.Set(orig); err != nil {
		return true, errors.Join(ferr, fmt.Errorf("restore netns: %w", err))
	}
	return false, ferr
}
