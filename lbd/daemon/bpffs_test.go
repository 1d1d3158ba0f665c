package daemon

import (
	"errors"
	"strings"
	"testing"

	"github.com/dsrlb/dsrlb/internal/nettest"
)

func TestCheckBPFFS(t *testing.T) {
	if err := checkBPFFS(t.TempDir() + "/pins"); !errors.Is(err, ErrNoBPFFS) || !strings.Contains(err.Error(), "not on a bpf filesystem") {
		t.Errorf("tmp dir accepted as bpffs: %v", err)
	}
	nettest.Require(t)
	pin := nettest.PinPath(t, "dsrlb-not-created-yet-") // mounts bpffs when missing
	if err := checkBPFFS(pin + "/sub"); err != nil {
		t.Errorf("bpffs refused: %v", err)
	}
	if err := EnsureBPFFS(pin, nil); err != nil {
		t.Errorf("mounted bpffs refused: %v", err)
	}
}
