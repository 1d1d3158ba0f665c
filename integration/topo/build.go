package topo

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Bins are the binaries a topology runs, built once per test process.
type Bins struct {
	Dir      string
	Hostprep string
	Lbd      string
	TestSrv  string // integration/cmd/dsrlb-testsrv
}

// BinsIn names the binaries already built in dir (scripts/demo.sh builds
// them into out/).
func BinsIn(dir string) *Bins {
	return &Bins{Dir: dir, Hostprep: filepath.Join(dir, "hostprep"), Lbd: filepath.Join(dir, "lbd"),
		TestSrv: filepath.Join(dir, "dsrlb-testsrv")}
}

// Build builds hostprep, lbd and dsrlb-testsrv into dir with one go build.
func Build(ctx context.Context, dir string) (*Bins, error) {
	// go test puts its GOROOT/bin first on PATH; the demo and bench
	// scripts add /usr/local/go/bin.
	goBin, err := exec.LookPath("go")
	if err != nil {
		return nil, fmt.Errorf("find the go command to build the binaries: %w: put Go's bin directory (e.g. /usr/local/go/bin) on PATH", err)
	}
	root, err := ModuleRoot(ctx, goBin)
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, goBin, "build", "-o", dir+"/", "./hostprep", "./lbd", "./integration/cmd/dsrlb-testsrv")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("build binaries: %v\n%s", err, out)
	}
	return BinsIn(dir), nil
}

// ModuleRoot is the directory of the dsrlb go.mod, found from the current
// directory.
func ModuleRoot(ctx context.Context, goBin string) (string, error) {
	out, err := exec.CommandContext(ctx, goBin, "env", "GOMOD").Output()
	mod := strings.TrimSpace(string(out))
	if err != nil || mod == "" || mod == os.DevNull {
		return "", fmt.Errorf("find module root: run from inside the dsrlb repository (go env GOMOD: %q, %v)", mod, err)
	}
	return filepath.Dir(mod), nil
}

// LbdRunAvailable reports whether the built lbd has the run command (the
// daemon), which the data-path scenarios need.
func (b *Bins) LbdRunAvailable() bool {
	out, err := exec.Command(b.Lbd, "run", "--help").CombinedOutput()
	return err == nil && !strings.Contains(string(out), "unknown command")
}
