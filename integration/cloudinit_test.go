package integration

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The cloud-init example (packaging/cloud-init/user-data.yaml) run by a
// real cloud-init 22.4 under systemd 252: a NoCloud seed in the machine,
// the packages from a local file repository that the seed adds with
// apt.sources. The example is used as shipped, with only that repository
// appended: its network (eth0 192.0.2.11, web1 of service web, VIP
// 192.0.2.10) is what the machine gets.

const (
	ciRepo     = "/srv/dsrlb-repo"
	ciServerIP = "192.0.2.11" // web1 in the example
	ciVIP      = "192.0.2.10" // service web in the example
)

// ciUserData is the shipped example plus the local repository, trusted
// (it is unsigned) and, the instance being offline, the only one.
func ciUserData(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../packaging/cloud-init/user-data.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return string(b) + `apt:
  sources:
    dsrlb:
      source: "deb [trusted=yes] file:` + ciRepo + ` ./"
`
}

// localRepo makes a flat apt repository from the .debs build.sh made:
// the packages and a Packages index by dpkg-scanpackages.
func localRepo(t *testing.T, debs string) string {
	t.Helper()
	dir := t.TempDir()
	names, _ := filepath.Glob(filepath.Join(debs, "*.deb"))
	if len(names) == 0 {
		t.Fatalf("no .deb in %s", debs)
	}
	for _, n := range names {
		if out, err := exec.Command("cp", n, dir).CombinedOutput(); err != nil {
			t.Fatalf("cp %s: %v\n%s", n, err, out)
		}
	}
	cmd := exec.Command("dpkg-scanpackages", "--multiversion", ".")
	cmd.Dir = dir
	idx, err := cmd.Output()
	if err != nil {
		t.Fatalf("dpkg-scanpackages in %s: %v (scripts/setup-debian.sh installs dpkg-dev)", dir, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "Packages"), idx, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// seedCloudInit turns a fresh machine into a cloud instance: the
// repository in /srv, the NoCloud seed, and a cloud.cfg for what a
// container is not (no network for cloud-init to render: the test sets
// eth0 from outside; no Debian mirror is reachable from its namespace).
func (m *machine) seedCloudInit(repo, instanceID, userData string) {
	m.t.Helper()
	dst := filepath.Join(m.root, ciRepo)
	if err := os.MkdirAll(dst, 0o755); err != nil {
		m.t.Fatal(err)
	}
	if out, err := exec.Command("cp", "-a", repo+"/.", dst).CombinedOutput(); err != nil {
		m.t.Fatalf("copy the repository into the machine: %v\n%s", err, out)
	}
	os.Chmod(dst, 0o755) // apt reads it as _apt
	m.writeFile("/var/lib/cloud/seed/nocloud/meta-data", "instance-id: "+instanceID+"\nlocal-hostname: backend1\n", 0o644)
	m.writeFile("/var/lib/cloud/seed/nocloud/user-data", userData, 0o644)
	m.writeFile("/etc/cloud/cloud.cfg.d/90-dsrlb-test.cfg", `# dsrlb integration test: a NoCloud seed in /var/lib/cloud/seed/nocloud,
# eth0 configured by the test from outside the container.
datasource_list: [NoCloud, None]
network: {config: disabled}
# the tree generated no locale for cloud-init's default en_US.UTF-8
locale: false
`, 0o644)
	// systemd-nspawn mounts /proc/sys read-only; a unit with a procfs of
	// its own (ProtectProc=) gets a writable one, as hostprep.service does.
	// On a VM cloud-final needs no such thing.
	m.writeFile("/etc/systemd/system/cloud-final.service.d/dsrlb-test-procfs.conf",
		"# container only: a writable /proc/sys for runcmd's hostprep apply\n[Service]\nProtectProc=invisible\n", 0o644)
	m.writeFile("/etc/apt/sources.list", "# offline instance: cloud-init adds the only repository\n", 0o644)
	os.RemoveAll(filepath.Join(m.root, "var/lib/apt/lists"))
	os.MkdirAll(filepath.Join(m.root, "var/lib/apt/lists/partial"), 0o755)
}

// ciNS gives each boot eth0 with the example's server address and, with
// drift, the VIP on eth0 too (an image made from a balancer, or a cloud
// that put the VIP on the NIC).
func ciNS(m **machine, drift bool) func(ns string) {
	return func(ns string) {
		mm := *m
		mm.nsRun("ip", "link", "add", "eth0", "type", "veth", "peer", "name", "peer0")
		mm.nsRun("ip", "addr", "add", ciServerIP+"/24", "dev", "eth0")
		if drift {
			mm.nsRun("ip", "addr", "add", ciVIP+"/24", "dev", "eth0")
		}
		mm.nsRun("ip", "link", "set", "eth0", "up")
		mm.nsRun("ip", "link", "set", "peer0", "up")
	}
}

// ciResult is /run/cloud-init/result.json, written when the final stage ends.
type ciResult struct {
	V1 struct {
		Datasource string   `json:"datasource"`
		Errors     []string `json:"errors"`
	} `json:"v1"`
}

// cloudInitDone waits (bounded) for cloud-init to finish all stages and
// returns `cloud-init status --long`, result.json and the status command's error.
func (m *machine) cloudInitDone() (string, ciResult, error) {
	m.t.Helper()
	m.waitFor("cloud-init finished", "test -f /run/cloud-init/result.json", 2*time.Minute)
	status, err := m.sh("cloud-init status --long")
	var res ciResult
	raw := m.must("cat /run/cloud-init/result.json")
	if jerr := json.Unmarshal([]byte(raw), &res); jerr != nil {
		m.t.Fatalf("result.json: %v\n%s", jerr, raw)
	}
	return status, res, err
}

// keepCloudInitLogs keeps cloud-init's own logs beside the journal when
// the test failed.
func (m *machine) keepCloudInitLogs() {
	m.t.Cleanup(func() {
		if !m.t.Failed() {
			return
		}
		for _, f := range []string{"var/log/cloud-init.log", "var/log/cloud-init-output.log", "run/cloud-init/result.json"} {
			if b, err := os.ReadFile(filepath.Join(m.root, f)); err == nil {
				m.keep(filepath.Base(f)+".txt", string(b))
			} else if out, err := m.sh("cat /" + f); err == nil {
				m.keep(filepath.Base(f)+".txt", out)
			}
		}
	})
}

// TestSystemdCloudInit: the cloud-init example on a NoCloud instance whose
// only repository is a local one. On a clean host the stages succeed and
// the backend is prepared; with the VIP already on eth0 (a conflict
// hostprep check reports as drift) the runcmd stage fails, visibly in
// cloud-init status and result.json, and leaves the host as it was.
func TestSystemdCloudInit(t *testing.T) {
	s := begin(t, "systemd-cloud-init")
	s.needSystemd()
	if _, err := exec.LookPath("dpkg-scanpackages"); err != nil {
		s.skip("dpkg-scanpackages missing (scripts/setup-debian.sh installs dpkg-dev)")
	}
	repo := localRepo(t, buildDebs(t, sdVersion))
	tree := cachedTreeWith(t, "cloud-init")
	userData := ciUserData(t)
	ctx := ctxFor(t, 10*time.Minute)

	t.Run("clean", func(t *testing.T) {
		var m *machine
		m = newMachineOn(t, tree, ciNS(&m, false))
		m.keepCloudInitLogs()
		m.seedCloudInit(repo, "dsrlb-clean", userData)
		m.boot(ctx)
		status, res, err := m.cloudInitDone()
		if err != nil || !strings.Contains(status, "status: done") || len(res.V1.Errors) != 0 {
			t.Fatalf("cloud-init on a clean host: %v\n%s\nerrors: %q\n%s", err, status, res.V1.Errors,
				tail(m.must("cat /var/log/cloud-init-output.log"), 30))
		}
		if !strings.Contains(res.V1.Datasource, "NoCloud") {
			t.Errorf("datasource %q, want NoCloud", res.V1.Datasource)
		}
		if v := m.must("dpkg-query -W -f '${Status} ${Version}' dsrlb-hostprep dsrlb-common"); strings.Count(v, "install ok installed "+sdVersion) != 2 {
			t.Errorf("packages: %q", v)
		}
		if p := m.must("apt-cache policy dsrlb-hostprep"); !strings.Contains(p, "file:"+ciRepo) {
			t.Errorf("dsrlb-hostprep not from the local repository:\n%s", p)
		}
		assertCloudPrepared(t, m)
		// A cloud-init instance is prepared at every boot by the unit it enabled.
		m.reboot(ctx)
		if st := m.show("hostprep.service", "ActiveState"); st != "active" {
			t.Errorf("boot %d: hostprep.service %s, want active (it, not runcmd, prepares later boots)", m.n, st)
		}
		assertCloudPrepared(t, m)
		s.note = "cloud-init " + strings.TrimSpace(m.must("cloud-init --version 2>&1 | awk '{print $2}'")) + ", systemd " + m.systemdVersion() +
			"; clean: done, prepared over 2 boots"
	})
	if t.Failed() {
		return
	}

	t.Run("drift", func(t *testing.T) {
		var m *machine
		m = newMachineOn(t, tree, ciNS(&m, true))
		m.keepCloudInitLogs()
		m.seedCloudInit(repo, "dsrlb-drift", userData)
		m.boot(ctx)
		status, res, err := m.cloudInitDone()
		if err == nil || !strings.Contains(status, "status: error") || len(res.V1.Errors) == 0 {
			t.Errorf("cloud-init with the VIP on eth0: want a failed stage; status exit %v\n%s\nerrors: %q", err, status, res.V1.Errors)
		}
		t.Logf("cloud-init status --long with the VIP on eth0 (%v):\n%s", err, status)
		if !strings.Contains(strings.Join(res.V1.Errors, "\n"), "scripts-user") {
			t.Errorf("result.json errors do not name the runcmd (scripts-user) stage: %q", res.V1.Errors)
		}
		outLog := m.must("cat /var/log/cloud-init-output.log")
		if !strings.Contains(outLog, "VIP on a non-loopback interface") {
			t.Errorf("cloud-init-output.log lacks hostprep's refusal:\n%s", tail(outLog, 30))
		}
		if st := m.show("cloud-final.service", "Result"); st == "success" {
			t.Errorf("cloud-final.service Result=%s, want a failure", st)
		}
		// The same state is what hostprep check reports as drift.
		out, cerr := m.sh("hostprep check --config /etc/dsrlb/dsrlb.yaml")
		if cerr == nil || !strings.Contains(out, "drift: conflict "+ciVIP) {
			t.Errorf("hostprep check after the failed stage: %v\n%s", cerr, out)
		}
		// set -e stopped the script: nothing half done, the unit not enabled.
		if lo := m.must("ip -o addr show dev lo"); strings.Contains(lo, ciVIP) {
			t.Errorf("VIP put on lo though the stage failed:\n%s", lo)
		}
		if v := strings.TrimSpace(m.must("sysctl -n net.ipv4.conf.all.arp_ignore")); v != "0" {
			t.Errorf("arp_ignore = %s after a refused apply, want 0 as found", v)
		}
		if en, _ := m.sh("systemctl is-enabled hostprep.service"); strings.TrimSpace(en) != "disabled" {
			t.Errorf("hostprep.service %q after the failed stage, want disabled (runcmd must stop at the failure)", strings.TrimSpace(en))
		}
		if !t.Failed() {
			s.note += "; drift (VIP on eth0): stage failed, host untouched"
		}
	})
}

// assertCloudPrepared: the example's VIP on lo, the ARP sysctls, hostprep
// check clean and its unit enabled.
func assertCloudPrepared(t *testing.T, m *machine) {
	t.Helper()
	if lo := m.must("ip -o addr show dev lo"); !strings.Contains(lo, "inet "+ciVIP+"/32") || !strings.Contains(lo, "inet 127.0.0.1/8") {
		t.Errorf("boot %d: lo:\n%s", m.n, lo)
	}
	for key, want := range map[string]string{"net.ipv4.conf.all.arp_ignore": "1", "net.ipv4.conf.all.arp_announce": "2"} {
		if got := strings.TrimSpace(m.must("sysctl -n " + key)); got != want {
			t.Errorf("boot %d: %s = %s, want %s", m.n, key, got, want)
		}
	}
	if out, err := m.sh("hostprep check --config /etc/dsrlb/dsrlb.yaml"); err != nil {
		t.Errorf("boot %d: hostprep check: %v\n%s", m.n, err, out)
	}
	if en := strings.TrimSpace(m.must("systemctl is-enabled hostprep.service")); en != "enabled" {
		t.Errorf("boot %d: hostprep.service %s", m.n, en)
	}
}
