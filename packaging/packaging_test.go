// Package packaging tests the deb and rpm packages as a user meets them:
// built with packaging/build.sh, inspected with dpkg-deb, rpm and lintian,
// units verified with systemd-analyze, then installed, upgraded and purged
// on this machine. Installing touches the host, so that part runs only
// under CI=true (or DSRLB_TEST_INSTALL=1).
package packaging

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/dsrlb/dsrlb/internal/nettest"
)

const version = "0.1.0"

var (
	buildOnce sync.Once
	buildErr  error
	buildOut  string
)

// release builds the packages once per test binary and returns their folder.
func release(t *testing.T) string {
	t.Helper()
	nettest.RequireTools(t, "dpkg-deb", "rpm", "lintian", "systemd-analyze", "gzip")
	buildOnce.Do(func() {
		cmd := exec.Command("./build.sh")
		cmd.Env = append(os.Environ(), "VERSION="+version, "ARCHES=amd64")
		out, err := cmd.CombinedOutput()
		buildOut, buildErr = string(out), err
	})
	if buildErr != nil {
		t.Fatalf("build.sh: %v\n%s", buildErr, buildOut)
	}
	return "../out/release"
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func debs(rel string) map[string]string {
	return map[string]string{
		"dsrlb-common":   filepath.Join(rel, "dsrlb-common_"+version+"_all.deb"),
		"dsrlb-lbd":      filepath.Join(rel, "dsrlb-lbd_"+version+"_amd64.deb"),
		"dsrlb-hostprep": filepath.Join(rel, "dsrlb-hostprep_"+version+"_amd64.deb"),
	}
}

// wantFiles lists, per package, files with their mode as dpkg-deb -c shows it.
var wantFiles = map[string][]string{
	"dsrlb-common":   {"-rw-r----- ./etc/dsrlb/dsrlb.yaml", "-rw-r--r-- ./usr/share/doc/dsrlb-common/copyright", "-rw-r--r-- ./usr/share/doc/dsrlb-common/changelog.gz"},
	"dsrlb-lbd":      {"-rwxr-xr-x ./usr/sbin/lbd", "-rw-r--r-- ./usr/lib/systemd/system/lbd.service", "-rw-r--r-- ./usr/share/doc/dsrlb-lbd/README.md"},
	"dsrlb-hostprep": {"-rwxr-xr-x ./usr/sbin/hostprep", "-rw-r--r-- ./usr/lib/systemd/system/hostprep.service", "-rw-r--r-- ./usr/share/doc/dsrlb-hostprep/cloud-init-user-data.yaml"},
}

func TestDebContents(t *testing.T) {
	rel := release(t)
	for pkg, deb := range debs(rel) {
		info := run(t, "dpkg-deb", "-I", deb)
		if !strings.Contains(info, "Package: "+pkg) || !strings.Contains(info, "Version: "+version) {
			t.Errorf("%s: control fields wrong:\n%s", deb, info)
		}
		if pkg != "dsrlb-common" && !strings.Contains(info, "Depends: dsrlb-common (= "+version+")") {
			t.Errorf("%s: does not depend on dsrlb-common of the same version:\n%s", deb, info)
		}
		listing := squeeze(run(t, "dpkg-deb", "-c", deb))
		for _, f := range wantFiles[pkg] {
			mode, path, _ := strings.Cut(f, " ")
			if !regexp.MustCompile(regexp.QuoteMeta(mode) + ` root/root \d+ \S+ \S+ ` + regexp.QuoteMeta(path) + `\n`).MatchString(listing) {
				t.Errorf("%s: no %s with mode %s in\n%s", deb, path, mode, listing)
			}
		}
	}
	conf := run(t, "sh", "-c", "dpkg-deb --ctrl-tarfile "+debs(rel)["dsrlb-common"]+" | tar -xO ./conffiles")
	if strings.TrimSpace(conf) != "/etc/dsrlb/dsrlb.yaml" {
		t.Errorf("conffiles = %q, want /etc/dsrlb/dsrlb.yaml (an upgrade must never overwrite it)", conf)
	}
}

func squeeze(s string) string { return regexp.MustCompile(` +`).ReplaceAllString(s, " ") }

func TestRPMContents(t *testing.T) {
	rel := release(t)
	for _, pkg := range []string{"dsrlb-lbd", "dsrlb-hostprep"} {
		rpm := filepath.Join(rel, pkg+"-"+version+"-1.x86_64.rpm")
		info := run(t, "rpm", "-qpi", rpm)
		if !strings.Contains(info, "Name        : "+pkg) {
			t.Errorf("rpm -qpi %s:\n%s", rpm, info)
		}
		bin := strings.TrimPrefix(pkg, "dsrlb-")
		if l := run(t, "rpm", "-qpl", rpm); !strings.Contains(l, "/usr/sbin/"+bin) || !strings.Contains(l, "/usr/lib/systemd/system/"+bin+".service") {
			t.Errorf("rpm -qpl %s lacks binary or unit:\n%s", rpm, l)
		}
		if s := run(t, "rpm", "-qp", "--scripts", rpm); !strings.Contains(s, "preuninstall scriptlet") || !strings.Contains(s, "systemctl daemon-reload") {
			t.Errorf("rpm --scripts %s lacks the systemd steps:\n%s", rpm, s)
		}
		if r := run(t, "rpm", "-qpR", rpm); !strings.Contains(r, "dsrlb-common = "+version) {
			t.Errorf("rpm -qpR %s: no dependency on dsrlb-common:\n%s", rpm, r)
		}
	}
	common := filepath.Join(rel, "dsrlb-common-"+version+"-1.noarch.rpm")
	if c := run(t, "rpm", "-qpc", common); !strings.Contains(c, "/etc/dsrlb/dsrlb.yaml") {
		t.Errorf("rpm -qpc: config file not marked: %s", c)
	}
}

// lintianAccepted are tags inherent to a static Go binary, or deliberate:
// DESIGN: no debhelper, so the maintainer scripts call systemctl themselves.
var lintianAccepted = []string{"statically-linked-binary", "maintainer-script-calls-systemctl"}

func TestLintian(t *testing.T) {
	rel := release(t)
	args := []string{"--tag-display-limit", "0", "--suppress-tags", strings.Join(lintianAccepted, ",")}
	for _, deb := range debs(rel) {
		args = append(args, deb)
	}
	out, _ := exec.Command("lintian", args...).CombinedOutput()
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, "E: ") || strings.HasPrefix(line, "W: ") {
			t.Errorf("lintian: %s", line)
		}
	}
}

// TestUnitsVerify extracts the packages into a root and runs
// systemd-analyze verify there, so ExecStart binaries exist as installed.
func TestUnitsVerify(t *testing.T) {
	rel := release(t)
	root := t.TempDir()
	for _, deb := range debs(rel) {
		run(t, "dpkg-deb", "-x", deb, root)
	}
	targets, _ := filepath.Glob("/lib/systemd/system/*.target")
	dst := filepath.Join(root, "usr/lib/systemd/system")
	for _, tg := range targets {
		b, err := os.ReadFile(tg)
		if err == nil {
			os.WriteFile(filepath.Join(dst, filepath.Base(tg)), b, 0o644)
		}
	}
	// ExecReload runs /bin/kill, which comes from util-linux, not from us.
	os.MkdirAll(filepath.Join(root, "bin"), 0o755)
	if b, err := os.ReadFile("/bin/kill"); err == nil {
		os.WriteFile(filepath.Join(root, "bin/kill"), b, 0o755)
	}
	for _, unit := range []string{"lbd.service", "hostprep.service"} {
		out, err := exec.Command("systemd-analyze", "verify", "--man=no", "--root="+root, unit).CombinedOutput()
		if err != nil || len(strings.TrimSpace(string(out))) > 0 {
			t.Errorf("systemd-analyze verify %s: %v\n%s", unit, err, out)
		}
		sec, _ := exec.Command("systemd-analyze", "security", "--offline=yes", "--root="+root, unit).CombinedOutput()
		if i := strings.LastIndex(string(sec), "Overall exposure level"); i >= 0 {
			t.Logf("%s: %s", unit, strings.TrimSpace(string(sec[i:])))
		}
	}
}

// TestInstallUpgradePurge installs the three .debs on this machine, checks
// what a user sees, reinstalls over a modified config, then purges and
// checks nothing is left behind.
func TestInstallUpgradePurge(t *testing.T) {
	if !nettest.CI() && os.Getenv("DSRLB_TEST_INSTALL") != "1" {
		t.Skip("installs packages on this machine: runs under CI=true or DSRLB_TEST_INSTALL=1")
	}
	if os.Geteuid() != 0 {
		t.Fatal("installing packages needs root")
	}
	rel := release(t)
	d := debs(rel)
	purge := func() { exec.Command("dpkg", "--purge", "dsrlb-lbd", "dsrlb-hostprep", "dsrlb-common").Run() }
	purge()
	t.Cleanup(purge)
	run(t, "dpkg", "-i", d["dsrlb-common"], d["dsrlb-lbd"], d["dsrlb-hostprep"])

	for path, mode := range map[string]os.FileMode{
		"/usr/sbin/lbd": 0o755, "/usr/sbin/hostprep": 0o755, "/etc/dsrlb/dsrlb.yaml": 0o640,
		"/usr/lib/systemd/system/lbd.service": 0o644, "/usr/lib/systemd/system/hostprep.service": 0o644,
	} {
		fi, err := os.Stat(path)
		if err != nil || fi.Mode().Perm() != mode {
			t.Errorf("%s: %v, mode %v, want %v", path, err, fi, mode)
		}
	}
	for _, bin := range []string{"lbd", "hostprep"} {
		if out := run(t, "/usr/sbin/"+bin, "--version"); !strings.Contains(out, version) {
			t.Errorf("%s --version = %q, want %s", bin, out, version)
		}
	}
	run(t, "/usr/sbin/lbd", "validate")
	run(t, "/usr/sbin/hostprep", "validate")

	// An upgrade (here a reinstall) keeps the administrator's configuration.
	const mark = "# edited by the administrator\n"
	orig, _ := os.ReadFile("/etc/dsrlb/dsrlb.yaml")
	os.WriteFile("/etc/dsrlb/dsrlb.yaml", append([]byte(mark), orig...), 0o644)
	cmd := exec.Command("dpkg", "-i", "--force-confold", d["dsrlb-common"], d["dsrlb-lbd"], d["dsrlb-hostprep"])
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("reinstall: %v\n%s", err, out)
	}
	if b, _ := os.ReadFile("/etc/dsrlb/dsrlb.yaml"); !strings.HasPrefix(string(b), mark) {
		t.Error("reinstall overwrote /etc/dsrlb/dsrlb.yaml")
	}

	out := run(t, "dpkg", "--purge", "dsrlb-lbd", "dsrlb-hostprep", "dsrlb-common")
	if strings.Contains(out, "failed") {
		t.Errorf("a maintainer script reported a failure during purge:\n%s", out)
	}
	for _, path := range []string{"/usr/sbin/lbd", "/usr/sbin/hostprep", "/etc/dsrlb", "/var/lib/dsrlb",
		"/usr/lib/systemd/system/lbd.service", "/usr/lib/systemd/system/hostprep.service", "/usr/share/doc/dsrlb-lbd"} {
		if _, err := os.Stat(path); err == nil {
			t.Errorf("%s left behind after purge", path)
		}
	}
	if out, _ := exec.Command("dpkg", "-l", "dsrlb-*").CombinedOutput(); regexp.MustCompile(`(?m)^[a-z]{2} +dsrlb`).Match(out) && !regexp.MustCompile(`(?m)^un`).Match(out) {
		t.Errorf("dpkg still lists dsrlb packages:\n%s", out)
	}
}

// TestCloudInitSchema validates the shipped user-data offline.
func TestCloudInitSchema(t *testing.T) {
	nettest.RequireTools(t, "cloud-init")
	run(t, "cloud-init", "schema", "-c", "cloud-init/user-data.yaml")
}
