// Package nstest runs privileged test code in a fresh network namespace
// without ever leaving the test's own thread in it.
package nstest

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/vishvananda/netns"
)

// Require skips tb unless the process is root with CAP_NET_ADMIN and
// CAP_SYS_ADMIN (namespaces); with CI=true a missing capability fails it,
// so CI can never pass by skipping.
func Require(tb testing.TB) {
	tb.Helper()
	if err := privileged(); err != nil {
		if os.Getenv("CI") == "true" {
			tb.Fatalf("privileged test cannot run in CI: %v", err)
		}
		tb.Skipf("skipping privileged test: %v (run as root; CI=true makes this a failure)", err)
	}
}

func privileged() error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("not root")
	}
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "CapEff:"); ok {
			caps, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			const netAdmin, sysAdmin = 12, 21
			if err != nil || caps&(1<<netAdmin) == 0 || caps&(1<<sysAdmin) == 0 {
				return fmt.Errorf("CAP_NET_ADMIN and CAP_SYS_ADMIN needed (CapEff %s)", strings.TrimSpace(v))
			}
			return nil
		}
	}
	return fmt.Errorf("no CapEff in /proc/self/status")
}

// NS is a named network namespace deleted when the test ends.
type NS struct {
	Name string
	h    netns.NsHandle
}

// New creates a uniquely named namespace ("dsrlbhp-…"), visible to
// `ip netns exec`, and deletes it in tb.Cleanup.
func New(tb testing.TB) *NS {
	tb.Helper()
	Require(tb)
	ns := &NS{Name: fmt.Sprintf("dsrlbhp-%08x", rand.Uint32())}
	err := onThread(func() error {
		orig, err := netns.Get()
		if err != nil {
			return err
		}
		defer orig.Close()
		if ns.h, err = netns.NewNamed(ns.Name); err != nil { // switches this thread
			return err
		}
		return netns.Set(orig)
	})
	if err != nil {
		tb.Fatalf("create namespace %s: %v", ns.Name, err)
	}
	tb.Cleanup(func() {
		ns.h.Close()
		if err := netns.DeleteNamed(ns.Name); err != nil {
			tb.Errorf("delete namespace %s: %v", ns.Name, err)
		}
	})
	return ns
}

// Do runs fn on a locked OS thread inside the namespace and returns its
// error. fn must not start goroutines that depend on the namespace.
func (ns *NS) Do(fn func() error) error {
	return onThread(func() error {
		orig, err := netns.Get()
		if err != nil {
			return err
		}
		defer orig.Close()
		if err := netns.Set(ns.h); err != nil {
			return fmt.Errorf("enter namespace %s: %w", ns.Name, err)
		}
		fnErr := fn()
		if err := netns.Set(orig); err != nil {
			return fmt.Errorf("leave namespace %s: %w", ns.Name, err)
		}
		return fnErr
	})
}

// onThread runs fn on its own locked thread. If fn leaves the thread in
// another namespace (its error says so) the thread is not unlocked, so the
// runtime ends it instead of reusing it for other goroutines.
func onThread(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		err := fn()
		if err == nil {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}

// Sh runs each command with sh -c inside the namespace (`ip netns exec`).
func (ns *NS) Sh(tb testing.TB, cmds ...string) {
	tb.Helper()
	for _, c := range cmds {
		out, err := exec.Command("ip", "netns", "exec", ns.Name, "sh", "-ec", c).CombinedOutput()
		if err != nil {
			tb.Fatalf("in %s: %s: %v\n%s", ns.Name, c, err, out)
		}
	}
}
