// Package bpffs makes sure a bpf filesystem is mounted at /sys/fs/bpf, for
// lbd and for the privileged tests. A machine booted without systemd (CI
// on a new machine, many containers) has none: systemd is what normally
// mounts it, and pins under a plain sysfs directory fail.
package bpffs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/dsrlb/dsrlb/internal/runfiles"
)

// Root is where bpffs is mounted by convention (systemd, cilium, iproute2).
const Root = "/sys/fs/bpf"

// lockFile serialises the check-then-mount of concurrent processes (lbd,
// parallel test binaries): two mounts on Root would stack, and pins made in
// the lower one would vanish from every path lookup.
const lockFile = runfiles.BPFFSLock

// Mounted reports whether dir is on a bpf filesystem.
func Mounted(dir string) bool {
	var st unix.Statfs_t
	return unix.Statfs(dir, &st) == nil && st.Type == unix.BPF_FS_MAGIC
}

// Under reports whether path lies at or below Root.
func Under(path string) bool {
	p := filepath.Clean(path)
	return p == Root || strings.HasPrefix(p, Root+"/")
}

// HostMountNS reports whether the calling process shares PID 1's mount
// namespace: only there does a bpffs it mounts outlive it and is it seen
// by the next lbd. The namespace links of PID 1 are hidden from processes
// that may not ptrace it (containers, a dropped CAP_SYS_PTRACE); then its
// mount table decides: mount IDs are unique across namespaces, so two
// tables that share one belong to the same namespace.
func HostMountNS() (bool, error) {
	self, err := os.Readlink("/proc/self/ns/mnt")
	if err != nil {
		return false, fmt.Errorf("read own mount namespace: %w", err)
	}
	if init, err := os.Readlink("/proc/1/ns/mnt"); err == nil {
		return self == init, nil
	}
	mine, err := mountIDs("/proc/self/mountinfo")
	if err != nil {
		return false, err
	}
	theirs, err := mountIDs("/proc/1/mountinfo")
	if err != nil {
		return false, fmt.Errorf("compare mount namespace with PID 1's: %w", err)
	}
	for id := range mine {
		if theirs[id] {
			return true, nil
		}
	}
	return false, nil
}

// mountIDs reads the mount IDs (first field) of a mountinfo file.
func mountIDs(path string) (map[string]bool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	ids := map[string]bool{}
	for _, line := range strings.Split(string(b), "\n") {
		if id, _, ok := strings.Cut(line, " "); ok {
			ids[id] = true
		}
	}
	return ids, nil
}

// Mount mounts a bpf filesystem at Root unless one is there already, as
// systemd does (mode 0700, nosuid, nodev, noexec). It reports whether it
// mounted one. It needs CAP_SYS_ADMIN.
func Mount() (bool, error) {
	if Mounted(Root) {
		return false, nil
	}
	unlock, err := lock()
	if err != nil {
		return false, err
	}
	defer unlock()
	if Mounted(Root) { // mounted while we waited for the lock
		return false, nil
	}
	if err := os.MkdirAll(Root, 0o755); err != nil {
		return false, fmt.Errorf("create %s: %w", Root, err)
	}
	err = unix.Mount("bpf", Root, "bpf", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC|unix.MS_RELATIME, "mode=0700")
	if err != nil {
		if errors.Is(err, unix.EPERM) {
			return false, fmt.Errorf("mount bpffs at %s: %w (needs CAP_SYS_ADMIN, or mount it beforehand: mount -t bpf bpf %s)", Root, err, Root)
		}
		return false, fmt.Errorf("mount bpffs at %s: %w", Root, err)
	}
	return true, nil
}

func lock() (func(), error) {
	if err := os.MkdirAll(filepath.Dir(lockFile), 0o755); err != nil {
		return nil, fmt.Errorf("create %s: %w", filepath.Dir(lockFile), err)
	}
	f, err := os.OpenFile(lockFile, os.O_RDWR|os.O_CREATE|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", lockFile, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", lockFile, err)
	}
	return func() { f.Close() }, nil
}
