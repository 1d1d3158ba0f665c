package daemon

import (
	"fmt"
	"log/slog"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/dsrlb/dsrlb/internal/bpffs"
)

// privateNSHint is what to do when lbd sees no bpffs from a private mount
// namespace.
const privateNSHint = "lbd runs in a private mount namespace (as `ip netns exec` makes one), where a bpffs it mounted " +
	"would vanish with it and lose the data plane on restart: mount one on the host (`mount -t bpf bpf /sys/fs/bpf`) " +
	"or start lbd in a network namespace with `nsenter --net=/run/netns/NAME`"

// EnsureBPFFS mounts bpffs at /sys/fs/bpf when the pin path lies under it
// and nothing is mounted there, as cilium-agent does: a machine booted
// without systemd has none. It does so only in the host's mount namespace
// (PID 1's), where the mount outlives lbd; elsewhere it refuses. It then
// checks the pin path is on a bpf filesystem.
func EnsureBPFFS(pinPath string, log *slog.Logger) error {
	if err := bpffsState(pinPath); err != errNotMounted {
		return err
	}
	host, err := bpffs.HostMountNS()
	if err != nil {
		return fmt.Errorf("no bpffs at %s and cannot tell whether lbd runs in the host's mount namespace (%v): mount it with `mount -t bpf bpf %s`", bpffs.Root, err, bpffs.Root)
	}
	if !host {
		return fmt.Errorf("no bpffs at %s: %s", bpffs.Root, privateNSHint)
	}
	mounted, err := bpffs.Mount()
	if err != nil {
		return err
	}
	if mounted && log != nil {
		log.Info("mounted bpffs: none was mounted (a host booted without systemd)", "path", bpffs.Root)
	}
	return checkBPFFS(pinPath)
}

// CheckBPFFS is EnsureBPFFS without mounting: nil when lbd run would find
// or mount a bpffs for the pin path, an error saying why not otherwise.
func CheckBPFFS(pinPath string) error {
	if err := bpffsState(pinPath); err != errNotMounted {
		return err
	}
	host, err := bpffs.HostMountNS()
	if err != nil || !host {
		return fmt.Errorf("no bpffs at %s: %s", bpffs.Root, privateNSHint)
	}
	return nil // lbd run mounts it
}

// errNotMounted: the pin path is under /sys/fs/bpf and nothing is mounted there.
var errNotMounted = fmt.Errorf("bpffs not mounted at %s", bpffs.Root)

func bpffsState(pinPath string) error {
	if bpffs.Under(pinPath) && !bpffs.Mounted(bpffs.Root) {
		return errNotMounted
	}
	return checkBPFFS(pinPath)
}

// checkBPFFS makes sure the pin path lies on a bpf filesystem. Pins on any
// other filesystem fail, and a bpffs mounted privately (as `ip netns exec`
// does when it remounts /sys) vanishes with the process, which would lose
// the data plane on restart; both deserve a clear message up front.
func checkBPFFS(pinPath string) error {
	dir := filepath.Clean(pinPath)
	for {
		var st unix.Statfs_t
		err := unix.Statfs(dir, &st)
		if err == nil {
			if st.Type != unix.BPF_FS_MAGIC {
				return fmt.Errorf("pin path %s is not on a bpf filesystem (%s is %w): mount one with `mount -t bpf bpf /sys/fs/bpf`, "+
					"or set balancer.pin_path; note that `ip netns exec` remounts /sys, so start lbd in a namespace with `nsenter --net=/run/netns/NAME` instead", pinPath, dir, ErrNoBPFFS)
			}
			return nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return fmt.Errorf("check pin path %s: %w", pinPath, err)
		}
		dir = parent
	}
}
