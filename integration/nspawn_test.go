package integration

// A Debian 12 machine with systemd 252 as PID 1, booted with systemd-nspawn
// in a network namespace the test made: the packages meet a real systemd
// (units, notify, watchdog, reload, networkd, maintainer scripts) instead
// of `systemd-analyze verify`. DESIGN §7 lists what it takes: a bpffs
// mounted at boot, CAP_BPF/CAP_PERFMON and the bpf syscall, /proc/sys
// writable only for units.

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/dsrlb/dsrlb/integration/topo"

	"github.com/dsrlb/dsrlb/internal/nettest"
)

// treeCache holds debootstrapped trees between runs on the same machine,
// one directory per package list, so a tree is built once.
const treeCache = "/var/cache/dsrlb-test"

// treePackages are what the machine needs beyond minbase: systemd as
// init, networkd (in systemd), ip and sysctl for the test's checks.
var treePackages = []string{"systemd", "systemd-sysv", "dbus", "iproute2", "procps", "kmod"}

// needSystemd skips (outside CI) or fails (CI=true) without what a booted
// machine needs.
func (s *scenario) needSystemd() {
	s.t.Helper()
	s.needRoot()
	for _, tool := range []string{"systemd-nspawn", "debootstrap", "nsenter", "bpftool"} {
		if _, err := exec.LookPath(tool); err != nil {
			why := tool + " missing (scripts/setup-debian.sh installs debootstrap, systemd-container, bpftool)"
			s.skip("%s", why)
		}
	}
}

// debianMirror is the mirror apt uses here (deb822 or one-line sources).
func debianMirror() string {
	files, _ := filepath.Glob("/etc/apt/sources.list.d/*.sources")
	files = append(files, "/etc/apt/sources.list")
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			fields := strings.Fields(line)
			switch {
			case len(fields) >= 2 && fields[0] == "URIs:" && strings.HasSuffix(strings.TrimRight(fields[1], "/"), "/debian"):
				return fields[1]
			case len(fields) >= 3 && fields[0] == "deb" && strings.HasSuffix(strings.TrimRight(fields[1], "/"), "/debian"):
				return fields[1]
			}
		}
	}
	return "http://deb.debian.org/debian"
}

// cachedTree returns a minimal Debian 12 tree, debootstrapping it once per
// machine (under a lock, so parallel test processes build it once).
func cachedTree(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(treeCache, "bookworm-"+strings.Join(treePackages, "-"))
	defer lockTreeCache(t)()
	if _, err := os.Stat(filepath.Join(dir, "usr/lib/systemd/systemd")); err == nil {
		return dir
	}
	tmp := dir + ".tmp"
	os.RemoveAll(tmp)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	mirror := debianMirror()
	t.Logf("debootstrap bookworm from %s into %s (once per machine)", mirror, dir)
	out, err := exec.CommandContext(ctx, "debootstrap", "--variant=minbase", "--include="+strings.Join(treePackages, ","),
		"bookworm", tmp, mirror).CombinedOutput()
	if err != nil {
		os.RemoveAll(tmp)
		t.Fatalf("debootstrap: %v\n%s", err, tail(string(out), 30))
	}
	if err := os.Rename(tmp, dir); err != nil {
		t.Fatal(err)
	}
	return dir
}

// cachedTreeWith returns a copy of the cached tree with more Debian
// packages, installed by apt in a chroot and cached beside it, so the
// other scenarios' tree stays as it is. debootstrap cannot do it with
// --include: its resolver takes no virtual packages or alternatives, and
// cloud-init's python3 dependencies need them (python3-cryptography fails).
func cachedTreeWith(t *testing.T, pkgs ...string) string {
	t.Helper()
	base := cachedTree(t)
	dir := base + "+" + strings.Join(pkgs, "-")
	defer lockTreeCache(t)()
	if _, err := os.Stat(dir); err == nil {
		return dir
	}
	tmp := dir + ".tmp"
	os.RemoveAll(tmp)
	if out, err := exec.Command("cp", "-a", "--reflink=auto", base, tmp).CombinedOutput(); err != nil {
		os.RemoveAll(tmp)
		t.Fatalf("copy %s: %v\n%s", base, err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	t.Logf("apt-get install %s into %s (once per machine)", strings.Join(pkgs, " "), dir)
	script := "apt-get update -qq && apt-get install -y -qq --no-install-recommends " + strings.Join(pkgs, " ") + " && apt-get clean"
	out, err := exec.CommandContext(ctx, "chroot", tmp, "/usr/bin/env", "-i", "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
		"DEBIAN_FRONTEND=noninteractive", "LANG=C", "/bin/sh", "-c", script).CombinedOutput()
	if err != nil {
		os.RemoveAll(tmp)
		t.Fatalf("apt-get install %s in a chroot of %s: %v\n%s", strings.Join(pkgs, " "), base, err, tail(string(out), 30))
	}
	if err := os.Rename(tmp, dir); err != nil {
		t.Fatal(err)
	}
	return dir
}

// lockTreeCache takes the cache's lock (parallel test processes build a
// tree once) and returns its release.
func lockTreeCache(t *testing.T) func() {
	t.Helper()
	if err := os.MkdirAll(treeCache, 0o755); err != nil {
		t.Fatal(err)
	}
	lock, err := os.OpenFile(filepath.Join(treeCache, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		lock.Close()
		t.Fatal(err)
	}
	return func() { lock.Close() }
}

var machineSeq atomic.Int32

// machine is one booted (or bootable) container. Its root is an overlay on
// the cached tree, so what a scenario installs stays across its reboots
// and nothing reaches the cache.
type machine struct {
	t       *testing.T
	name    string // unique prefix for the namespace
	dir     string // upper, work, root
	root    string
	netns   string
	setupNS func(ns string) // links and addresses of each boot's namespace
	n       int             // boots so far

	nspawn *exec.Cmd
	exited chan struct{}
	leader int
}

func newMachine(t *testing.T, setupNS func(ns string)) *machine {
	t.Helper()
	return newMachineOn(t, cachedTree(t), setupNS)
}

// newMachineOn is newMachine on another cached tree (cachedTreeWith).
func newMachineOn(t *testing.T, base string, setupNS func(ns string)) *machine {
	t.Helper()
	m := &machine{t: t, setupNS: setupNS, name: fmt.Sprintf("%s-sd%d", topo.RunID, machineSeq.Add(1))}
	var err error
	if m.dir, err = os.MkdirTemp("", m.name+"-"); err != nil {
		t.Fatal(err)
	}
	m.root = filepath.Join(m.dir, "root")
	for _, d := range []string{"upper", "work", "root"} {
		os.MkdirAll(filepath.Join(m.dir, d), 0o755)
	}
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s/upper,workdir=%s/work", base, m.dir, m.dir)
	if out, err := exec.Command("mount", "-t", "overlay", "overlay", "-o", opts, m.root).CombinedOutput(); err != nil {
		t.Fatalf("mount overlay: %v\n%s", err, out)
	}
	t.Cleanup(m.cleanup)
	m.prepare()
	return m
}

// prepare makes the tree bootable for the scenarios: a bpffs at boot
// (systemd refuses a .mount unit for this API file system, so a oneshot
// mounts it), a persistent journal (the evidence on failure), networkd
// enabled, and no getty on a console nobody reads.
func (m *machine) prepare() {
	m.writeFile("/etc/systemd/system/dsrlb-test-bpffs.service", `[Unit]
Description=bpf filesystem for lbd (systemd mounts none in a container)
DefaultDependencies=no
Before=sysinit.target
ConditionPathIsMountPoint=!/sys/fs/bpf
[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/mount -t bpf bpffs /sys/fs/bpf
[Install]
WantedBy=sysinit.target
`, 0o644)
	os.MkdirAll(filepath.Join(m.root, "var/log/journal"), 0o755)
	m.writeFile("/etc/hostname", "dsrlb-sd\n", 0o644)
	if out, err := exec.Command("chroot", m.root, "systemctl", "enable", "dsrlb-test-bpffs.service", "systemd-networkd.service").CombinedOutput(); err != nil {
		m.t.Fatalf("enable units in the tree: %v\n%s", err, out)
	}
	// The test's eth0 is not networkd's (the test sets its addresses from
	// outside), so wait-online would wait its 2 minutes at every boot.
	exec.Command("chroot", m.root, "systemctl", "mask", "console-getty.service", "getty@tty1.service",
		"systemd-networkd-wait-online.service").Run()
}

func (m *machine) writeFile(path, content string, mode os.FileMode) {
	m.t.Helper()
	p := filepath.Join(m.root, path)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		m.t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		m.t.Fatal(err)
	}
}

// ns runs ip (or another command) in the machine's namespace from outside.
func (m *machine) nsRun(args ...string) string {
	m.t.Helper()
	out, err := exec.Command("nsenter", append([]string{"--net=/run/netns/" + m.netns, "--"}, args...)...).CombinedOutput()
	if err != nil {
		m.t.Fatalf("%s in %s: %v\n%s", strings.Join(args, " "), m.netns, err, out)
	}
	return string(out)
}

// boot starts the machine in a fresh network namespace (a reboot's kernel
// state: lo alone, default sysctls) and waits for it to finish booting.
func (m *machine) boot(ctx context.Context) {
	m.t.Helper()
	m.startNspawn()
	m.waitBooted(ctx)
}

// startNspawn starts the machine and finds its PID 1, without waiting for
// the boot to finish.
func (m *machine) startNspawn() {
	m.t.Helper()
	m.n++
	m.delNS()
	m.netns = fmt.Sprintf("%s-b%d", m.name, m.n)
	if err := nettest.AddNamed(m.netns); err != nil {
		m.t.Fatalf("create namespace %s: %v", m.netns, err)
	}
	if m.setupNS != nil {
		m.setupNS(m.netns)
	}
	console, err := os.OpenFile(filepath.Join(m.dir, "console.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		m.t.Fatal(err)
	}
	fmt.Fprintf(console, "---- boot %d ----\n", m.n)
	m.nspawn = exec.Command("systemd-nspawn", "-D", m.root, "-b", "--register=no", "--keep-unit",
		"--network-namespace-path=/run/netns/"+m.netns,
		"--capability=CAP_NET_ADMIN,CAP_BPF,CAP_PERFMON", "--system-call-filter=bpf",
		"--console=pipe", "--quiet")
	m.nspawn.Stdout, m.nspawn.Stderr, m.nspawn.Stdin = console, console, nil
	if err := m.nspawn.Start(); err != nil {
		console.Close()
		m.t.Fatalf("start systemd-nspawn: %v", err)
	}
	m.exited = make(chan struct{})
	go func(c *exec.Cmd, done chan struct{}) { c.Wait(); console.Close(); close(done) }(m.nspawn, m.exited)
	m.leader = 0
	deadline := time.Now().Add(30 * time.Second)
	for m.leader == 0 {
		if time.Now().After(deadline) {
			m.t.Fatalf("systemd-nspawn (pid %d) started no systemd within 30s; console:\n%s", m.nspawn.Process.Pid, m.console())
		}
		select {
		case <-m.exited:
			m.t.Fatalf("systemd-nspawn exited at boot %d; console:\n%s", m.n, m.console())
		case <-time.After(100 * time.Millisecond):
		}
		m.leader = findChild(m.nspawn.Process.Pid, "systemd")
	}
}

// findChild returns the child of pid named comm, or 0.
func findChild(pid int, comm string) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	if err != nil {
		return 0
	}
	for _, f := range strings.Fields(string(b)) {
		c, _ := strconv.Atoi(f)
		if name, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", c)); strings.TrimSpace(string(name)) == comm {
			return c
		}
	}
	return 0
}

// waitBooted waits (bounded) until systemd finished the boot transaction.
func (m *machine) waitBooted(ctx context.Context) {
	m.t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	// systemctl needs PID 1's private socket, made early in the boot.
	m.waitFor("systemd's private socket", "test -S /run/systemd/private", time.Minute)
	out, _ := m.shCtx(ctx, "systemctl is-system-running --wait")
	state := strings.TrimSpace(out)
	if state != "running" && state != "degraded" {
		diag, _ := m.sh("systemctl --failed --no-pager; systemctl list-jobs --no-pager")
		m.t.Fatalf("boot %d: system state %q\n%s", m.n, state, diag)
	}
	if state == "degraded" {
		diag, _ := m.sh("systemctl --failed --no-pager")
		m.t.Logf("boot %d degraded:\n%s", m.n, diag)
	}
}

// sh runs a shell script inside the machine (its namespaces, as root) and
// returns its combined output and error.
func (m *machine) sh(script string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	return m.shCtx(ctx, script)
}

func (m *machine) shCtx(ctx context.Context, script string) (string, error) {
	cmd := exec.CommandContext(ctx, "nsenter", "-t", strconv.Itoa(m.leader), "-m", "-u", "-i", "-n", "-p", "-C", "--",
		"/usr/bin/env", "-i", "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C", "SYSTEMD_PAGER=", "/bin/sh", "-c", script)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// must runs script and fails the test when it fails.
func (m *machine) must(script string) string {
	m.t.Helper()
	out, err := m.sh(script)
	if err != nil {
		m.t.Fatalf("boot %d: %s: %v\n%s", m.n, script, err, out)
	}
	return out
}

// waitFor runs script until it succeeds, bounded.
func (m *machine) waitFor(what, script string, d time.Duration) string {
	m.t.Helper()
	deadline := time.Now().Add(d)
	for {
		out, err := m.sh(script)
		if err == nil {
			return out
		}
		if time.Now().After(deadline) {
			m.t.Fatalf("boot %d: %s not within %s: %s: %v\n%s", m.n, what, d, script, err, out)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// shutdown powers the machine off and waits for nspawn to exit (bounded;
// then killed by PID).
func (m *machine) shutdown() {
	if m.nspawn == nil {
		return
	}
	m.sh("systemctl poweroff")
	select {
	case <-m.exited:
	case <-time.After(90 * time.Second):
		m.t.Errorf("boot %d: machine did not power off within 90s; killing systemd-nspawn pid %d", m.n, m.nspawn.Process.Pid)
		m.nspawn.Process.Kill()
		<-m.exited
	}
	m.nspawn = nil
}

// reboot is a power cycle: a new namespace is a new kernel network state.
func (m *machine) reboot(ctx context.Context) {
	m.t.Helper()
	m.shutdown()
	m.boot(ctx)
}

func (m *machine) delNS() {
	if m.netns != "" {
		nettest.DelNamed(m.netns)
		m.netns = ""
	}
}

func (m *machine) console() string {
	b, _ := os.ReadFile(filepath.Join(m.dir, "console.log"))
	return tail(string(b), 40)
}

// cleanup powers off, keeps the journal under out/ when the test failed,
// and removes overlay, namespace and directories.
func (m *machine) cleanup() {
	if m.t.Failed() && m.nspawn != nil {
		if out, err := m.sh("journalctl -b --no-pager -o short-precise"); err == nil {
			m.keep("journal-last-boot.txt", out)
		}
	}
	m.shutdown()
	if m.t.Failed() {
		out, _ := exec.Command("journalctl", "-D", filepath.Join(m.root, "var/log/journal"), "--no-pager", "-o", "short-precise").CombinedOutput()
		m.keep("journal.txt", string(out))
		b, _ := os.ReadFile(filepath.Join(m.dir, "console.log"))
		m.keep("console.txt", string(b))
	}
	m.delNS()
	if out, err := exec.Command("umount", m.root).CombinedOutput(); err != nil {
		m.t.Errorf("umount %s: %v\n%s", m.root, err, out)
		return
	}
	os.RemoveAll(m.dir)
}

// keep writes evidence to out/systemd/<test>/ at the repository root.
func (m *machine) keep(name, content string) {
	dir := filepath.Join("..", "out", "systemd", strings.ReplaceAll(m.t.Name(), "/", "_"))
	os.MkdirAll(dir, 0o755)
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err == nil {
		abs, _ := filepath.Abs(p)
		m.t.Logf("kept %s", abs)
	}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// buildDebs builds the packages with packaging/build.sh (deb, amd64) into
// a directory of the test and returns it.
func buildDebs(t *testing.T, version string) string {
	t.Helper()
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "../packaging/build.sh")
	cmd.Env = append(os.Environ(), "VERSION="+version, "ARCHES=amd64", "FORMATS=deb", "RELEASE_DIR="+dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("packaging/build.sh %s: %v\n%s", version, err, tail(string(out), 30))
	}
	return dir
}

// installDebs copies the named packages into the machine and installs them
// with dpkg, as an administrator would.
func (m *machine) installDebs(dir, version string, pkgs ...string) string {
	m.t.Helper()
	var paths []string
	for _, p := range pkgs {
		arch := "amd64"
		if p == "dsrlb-common" {
			arch = "all"
		}
		name := fmt.Sprintf("%s_%s_%s.deb", p, version, arch)
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			m.t.Fatal(err)
		}
		m.writeFile("/root/debs/"+name, string(b), 0o644)
		paths = append(paths, "/root/debs/"+name)
	}
	return m.must("dpkg -i " + strings.Join(paths, " ") + " 2>&1")
}

// show reads one property of a unit.
func (m *machine) show(unit, prop string) string {
	m.t.Helper()
	return strings.TrimSpace(m.must("systemctl show --property " + prop + " --value " + unit))
}

// securityScore is systemd-analyze security's overall exposure of a unit,
// measured by the machine's own systemd.
func (m *machine) securityScore(unit string) string {
	m.t.Helper()
	out := m.must("systemd-analyze security --no-pager " + unit)
	sc := bufio.NewScanner(strings.NewReader(out))
	re := regexp.MustCompile(`Overall exposure level for \S+: (.*)$`)
	for sc.Scan() {
		if g := re.FindStringSubmatch(sc.Text()); g != nil {
			return strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(g[1]), ":-)"))
		}
	}
	m.t.Fatalf("no exposure level in systemd-analyze security %s:\n%s", unit, out)
	return ""
}
