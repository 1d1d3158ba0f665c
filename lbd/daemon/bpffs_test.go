package daemon

import (
	"errors"
	"os"
	"strings"
	"testing"
)

func TestCheckBPFFS(t *testing.T) {
	if err := checkBPFFS(t.TempDir() + "/pins"); !errors.Is(err, ErrNoBPFFS) || !strings.Contains(err.Error(), "not on a bpf filesystem") {
		t.Errorf("tmp dir accepted as bpffs: %v", err)
	}
	if _, err := os.Stat("/sys/fs/bpf"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("/sys/fs/bpf missing in CI")
		}
		t.Skip("no /sys/fs/bpf here")
	}
	if err := checkBPFFS("/sys/fs/bpf/dsrlb-not-created-yet/sub"); err != nil {
		t.Errorf("bpffs refused: %v", err)
	}
}
