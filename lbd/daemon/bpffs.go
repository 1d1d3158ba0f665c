package daemon

import (
	"fmt"
	"path/filepath"

	"golang.org/x/sys/unix"
)

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
