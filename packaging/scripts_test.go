package packaging

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/dsrlb/dsrlb/internal/nettest"
)

// fakeBin is a directory of stand-in commands for the maintainer scripts
// and the cloud-init runcmd script: each logs its arguments to log and
// exits with the code in the file NAME.exit (0 when absent).
type fakeBin struct {
	dir, log string
}

func newFakeBin(t *testing.T, names ...string) *fakeBin {
	t.Helper()
	f := &fakeBin{dir: t.TempDir()}
	f.log = filepath.Join(f.dir, "calls.log")
	for _, n := range names {
		script := "#!/bin/sh\necho \"" + n + " $*\" >> " + f.log + "\n" +
			"code=0; [ -f " + f.dir + "/" + n + ".exit ] && code=$(cat " + f.dir + "/" + n + ".exit)\n" +
			"[ -f " + f.dir + "/" + n + ".out ] && cat " + f.dir + "/" + n + ".out\nexit $code\n"
		if err := os.WriteFile(filepath.Join(f.dir, n), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

func (f *fakeBin) set(t *testing.T, name string, code int, out string) {
	t.Helper()
	for file, content := range map[string]string{name + ".exit": strconv.Itoa(code), name + ".out": out} {
		if err := os.WriteFile(filepath.Join(f.dir, file), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func (f *fakeBin) calls() string { b, _ := os.ReadFile(f.log); return string(b) }

// runScript runs a maintainer script with only the fake commands (and
// the shell's basics) on PATH.
func (f *fakeBin) runScript(t *testing.T, script string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command("/bin/sh", append([]string{script}, args...)...)
	cmd.Env = []string{"PATH=" + f.dir + ":/usr/bin:/bin"}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestHostprepPreremoveFailsOnFailedRemove: a purge whose hostprep remove
// failed only warned, and postrm then deleted the state file: the VIPs
// and sysctls stayed with nothing left to undo them (issue 13).
func TestHostprepPreremoveFailsOnFailedRemove(t *testing.T) {
	f := newFakeBin(t, "hostprep", "systemctl")
	f.set(t, "systemctl", 0, "") // is-enabled: yes
	f.set(t, "hostprep", 1, "not removed: delete 192.0.2.10/32 on lo: injected\n")
	out, err := f.runScript(t, "scripts/hostprep-preremove.sh", "remove")
	if err == nil || !strings.Contains(out, "hostprep remove failed") {
		t.Errorf("prerm with a failed hostprep remove: err %v\n%s", err, out)
	}
	f.set(t, "hostprep", 0, "")
	if out, err := f.runScript(t, "scripts/hostprep-preremove.sh", "remove"); err != nil {
		t.Errorf("prerm with a good remove: %v\n%s", err, out)
	}
	if !strings.Contains(f.calls(), "hostprep remove --state /var/lib/dsrlb/hostprep-state.json") {
		t.Errorf("calls:\n%s", f.calls())
	}
}

// TestHostprepPreremoveLeavesUnusedInstall: nothing enabled, nothing
// applied (no state file): the scripts touch nothing.
func TestHostprepPreremoveLeavesUnusedInstall(t *testing.T) {
	if _, err := os.Stat("/var/lib/dsrlb/hostprep-state.json"); err == nil {
		t.Skip("this machine has a hostprep state file")
	}
	f := newFakeBin(t, "hostprep", "systemctl")
	f.set(t, "systemctl", 1, "") // not enabled, not active
	if out, err := f.runScript(t, "scripts/hostprep-preremove.sh", "remove"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if strings.Contains(f.calls(), "hostprep ") {
		t.Errorf("hostprep ran for a unit neither enabled nor active:\n%s", f.calls())
	}
}

// TestLbdPreremoveOnlyPackagedInstance: an lbd.service neither enabled nor
// active means the data planes on this host are someone else's (an lbd
// run by hand, another pin path): prerm must not detach anything. When it
// was enabled, a failed detach fails the removal.
func TestLbdPreremoveOnlyPackagedInstance(t *testing.T) {
	f := newFakeBin(t, "lbd", "systemctl")
	f.set(t, "systemctl", 1, "")
	if out, err := f.runScript(t, "scripts/lbd-preremove.sh", "remove"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if strings.Contains(f.calls(), "lbd detach") || strings.Contains(f.calls(), "disable") {
		t.Errorf("acted on an lbd.service neither enabled nor active:\n%s", f.calls())
	}
	f.set(t, "systemctl", 0, "")
	f.set(t, "lbd", 1, "")
	if out, err := f.runScript(t, "scripts/lbd-preremove.sh", "remove"); err == nil || !strings.Contains(out, "lbd detach --config /etc/dsrlb/dsrlb.yaml failed") {
		t.Errorf("failed detach: err %v\n%s", err, out)
	}
	for _, upgrade := range [][]string{{"upgrade", "0.1.0"}, {"1"}} {
		os.Remove(f.log)
		if _, err := f.runScript(t, "scripts/lbd-preremove.sh", upgrade...); err != nil || f.calls() != "" {
			t.Errorf("prerm %v: %v, calls %q", upgrade, err, f.calls())
		}
	}
}

// TestLbdPostremoveKeepsOtherInstances: postrm deleted every instance's
// /run/dsrlb/lbd-* files (issue 13); now it only removes an empty dir.
func TestLbdPostremoveKeepsOtherInstances(t *testing.T) {
	b, err := os.ReadFile("scripts/lbd-postremove.sh")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "rm -rf") || strings.Contains(string(b), "lbd-*") {
		t.Errorf("postrm removes files under /run/dsrlb that may be another instance's:\n%s", b)
	}
	if !strings.Contains(string(b), "rmdir /run/dsrlb") {
		t.Errorf("postrm leaves an empty /run/dsrlb:\n%s", b)
	}
}

// TestCloudInitRuncmdFailsOnDrift renders runcmd with cloud-init's own
// shellify, as cloud-init does, and runs it with a hostprep whose check
// finds drift: the script must fail (before, only its last command,
// systemctl enable, decided the status).
func TestCloudInitRuncmdFailsOnDrift(t *testing.T) {
	py := "/usr/bin/python3"
	render := exec.Command(py, "-c", `import sys, yaml
from cloudinit import util
sys.stdout.write(util.shellify(yaml.safe_load(open(sys.argv[1]))["runcmd"]))`, "cloud-init/user-data.yaml")
	script, err := render.Output()
	if err != nil {
		nettest.SkipOrFail(t, fmt.Sprintf("render runcmd with cloud-init's python module: %v (scripts/setup-debian.sh installs cloud-init)", err))
	}
	path := filepath.Join(t.TempDir(), "runcmd")
	os.WriteFile(path, script, 0o755)
	f := newFakeBin(t, "hostprep", "systemctl")
	if out, err := f.runScript(t, path); err != nil {
		t.Fatalf("runcmd with everything passing: %v\n%s", err, out)
	}
	// hostprep check exits 1 on drift.
	os.WriteFile(filepath.Join(f.dir, "hostprep"), []byte("#!/bin/sh\necho \"hostprep $*\" >> "+f.log+"\n[ \"$1\" = check ] && { echo 'drift: sysctl ...'; exit 1; }\nexit 0\n"), 0o755)
	os.Remove(f.log)
	out, err := f.runScript(t, path)
	if err == nil {
		t.Errorf("runcmd passed though hostprep check found drift:\n%s\ncalls:\n%s", out, f.calls())
	}
	if strings.Contains(f.calls(), "systemctl enable") {
		t.Errorf("runcmd went on after the drift:\n%s", f.calls())
	}
}
