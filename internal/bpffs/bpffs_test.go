package bpffs_test

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/dsrlb/dsrlb/internal/bpffs"
	"github.com/dsrlb/dsrlb/internal/nettest"
)

func TestUnder(t *testing.T) {
	for p, want := range map[string]bool{"/sys/fs/bpf": true, "/sys/fs/bpf/dsrlb": true, "/sys/fs/bpfx": false, "/run/bpf": false} {
		if bpffs.Under(p) != want {
			t.Errorf("Under(%s) = %v", p, !want)
		}
	}
}

// TestHostMountNS: this process is where it is; a child in a new mount
// namespace (unshare -m) is not in PID 1's. The child re-runs this test
// binary in helper mode.
func TestHostMountNS(t *testing.T) {
	if os.Getenv("BPFFS_HELPER") == "1" {
		host, err := bpffs.HostMountNS()
		if err != nil {
			t.Fatal(err)
		}
		os.Stdout.WriteString(map[bool]string{true: "HOST\n", false: "PRIVATE\n"}[host])
		return
	}
	nettest.RequireRoot(t, "unshare -m")
	out, err := exec.Command("unshare", "-m", "--propagation", "private", "env", "BPFFS_HELPER=1", os.Args[0], "-test.run", "^TestHostMountNS$").CombinedOutput()
	if err != nil {
		t.Fatalf("helper: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "PRIVATE") {
		t.Errorf("a new mount namespace was taken for the host's:\n%s", out)
	}
}
