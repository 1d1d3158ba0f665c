package integration

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/dsrlb/dsrlb/internal/nettest"
)

// The packages under a real systemd (see nspawn_test.go). Scenario names
// start with "systemd-" so the summary line says where they ran.

const (
	sdVersion    = "0.1.0"
	sdNewVersion = "0.1.1" // the upgrade
	sdServerIP   = "198.51.100.11"
	sdServerIP6  = "2001:db8:1::11"
	sdVIP4       = "192.0.2.10"
	sdVIP6       = "2001:db8::10"
)

// backendNS gives each boot of a backend eth0 with the server address, or
// none when late is set (the test adds it during the boot).
func backendNS(m **machine, late *bool) func(ns string) {
	return func(ns string) {
		mm := *m
		mm.nsRun("ip", "link", "add", "eth0", "type", "veth", "peer", "name", "peer0")
		mm.nsRun("ip", "link", "set", "eth0", "up")
		mm.nsRun("ip", "link", "set", "peer0", "up")
		if late == nil || !*late {
			addServerAddrs(mm)
		}
	}
}

func addServerAddrs(m *machine) {
	m.nsRun("ip", "addr", "add", sdServerIP+"/24", "dev", "eth0")
	m.nsRun("ip", "addr", "add", sdServerIP6+"/64", "dev", "eth0", "nodad")
}

const sdBackendConfig = `balancer:
  interface: eth0
services:
  - name: web
    vip: ` + sdVIP4 + `
    ports: [80]
    check: {type: none}
    servers:
      - {name: me, address: ` + sdServerIP + `}
      - {name: other, address: 198.51.100.12}
  - name: web6
    vip: "` + sdVIP6 + `"
    ports: [80]
    check: {type: none}
    servers:
      - {name: me6, address: "` + sdServerIP6 + `"}
`

// assertPrepared checks one boot of a prepared backend: hostprep active,
// VIPs on lo, ARP sysctls set, and lo healthy under networkd with the
// kernel's 127.0.0.1 intact.
func assertPrepared(t *testing.T, m *machine, networkd bool) {
	t.Helper()
	m.waitFor("hostprep.service active", "systemctl is-active hostprep.service", 30*time.Second)
	lo := m.must("ip -o addr show dev lo")
	for _, want := range []string{"inet 127.0.0.1/8", "inet " + sdVIP4 + "/32", "inet6 " + sdVIP6 + "/128", "inet6 ::1/128"} {
		if !strings.Contains(lo, want) {
			t.Errorf("boot %d: lo lacks %s:\n%s", m.n, want, lo)
		}
	}
	for key, want := range map[string]string{"net.ipv4.conf.all.arp_ignore": "1", "net.ipv4.conf.all.arp_announce": "2"} {
		if got := strings.TrimSpace(m.must("sysctl -n " + key)); got != want {
			t.Errorf("boot %d: %s = %s, want %s", m.n, key, got, want)
		}
	}
	if !networkd { // the file was just written; networkd reads it at the next boot
		return
	}
	// networkd manages lo through hostprep's file: it must end configured,
	// never failed (networkd 252 looped on a listed 127.0.0.1/8).
	st := m.waitFor("networkd done with lo", `s=$(networkctl list --no-legend lo | awk '{print $5}'); echo "$s"; [ "$s" = configured ] || [ "$s" = failed ]`, 30*time.Second)
	if !strings.Contains(st, "configured") {
		t.Errorf("boot %d: networkd state of lo %q\n%s", m.n, strings.TrimSpace(st), m.must("networkctl status lo --no-pager 2>&1; journalctl -b -u systemd-networkd --no-pager | tail -20"))
	}
	if out := m.must("journalctl -b -u systemd-networkd --no-pager"); strings.Contains(out, "Failed to configure address") {
		t.Errorf("boot %d: networkd failed an address on lo:\n%s", m.n, tail(out, 20))
	}
}

// TestSystemdHostprepBoots: hostprep enabled on a backend with networkd;
// several boots each end with the VIPs and sysctls in place and lo
// healthy; a server address that appears late in the boot still ends
// prepared; purge leaves nothing.
func TestSystemdHostprepBoots(t *testing.T) {
	s := begin(t, "systemd-hostprep-boots")
	s.needSystemd()
	debs := buildDebs(t, sdVersion)
	ctx := ctxFor(t, 15*time.Minute)
	var m *machine
	late := false
	m = newMachine(t, backendNS(&m, &late))
	m.boot(ctx)
	m.installDebs(debs, sdVersion, "dsrlb-common", "dsrlb-hostprep")
	if mode := m.must("stat -c %a /etc/dsrlb/dsrlb.yaml"); strings.TrimSpace(mode) != "640" {
		t.Errorf("conffile mode %s, want 640", mode)
	}
	m.must("cat > /etc/dsrlb/dsrlb.yaml <<'EOF'\n" + sdBackendConfig + "EOF")
	m.must("systemctl enable --now hostprep.service")
	assertPrepared(t, m, false)
	if t.Failed() {
		t.FailNow()
	}
	boots := 3
	for i := 0; i < boots; i++ {
		m.reboot(ctx)
		assertPrepared(t, m, true)
		if t.Failed() {
			t.FailNow()
		}
	}
	// A server address that appears only after hostprep.service started.
	late = true
	m.shutdown()
	m.startNspawn()
	m.waitFor("hostprep.service waiting for an address", `[ "$(systemctl is-active hostprep.service)" = activating ] && journalctl -b -u hostprep.service -o cat | grep -q 'waiting for one'`, 60*time.Second)
	addServerAddrs(m)
	m.waitBooted(ctx)
	assertPrepared(t, m, true)
	score := m.securityScore("hostprep.service")
	t.Logf("systemd-analyze security hostprep.service (systemd %s in the machine): %s", m.systemdVersion(), score)
	s.note = fmt.Sprintf("%d boots; security %s", m.n, score)

	// In a container /proc/sys is read-only but in units with a procfs of
	// their own (ProtectProc=): a purge from a shell cannot restore the
	// sysctls, and must fail rather than forget them (issue 13).
	out, err := m.sh("dpkg --purge dsrlb-hostprep dsrlb-common 2>&1")
	if err == nil || !strings.Contains(out, "hostprep remove failed") {
		t.Errorf("purge with sysctls that cannot be restored: err %v\n%s", err, out)
	}
	if st := m.must("dpkg-query -W -f '${Status}' dsrlb-hostprep; ls /var/lib/dsrlb/hostprep-state.json"); !strings.Contains(st, "installed") {
		t.Errorf("failed removal left no hostprep or no state:\n%s", st)
	}
	out = m.must("systemd-run --wait --pipe --quiet -p ProtectProc=invisible dpkg --purge dsrlb-hostprep dsrlb-common 2>&1")
	lo := m.must("ip -o addr show dev lo")
	if strings.Contains(lo, sdVIP4) || strings.Contains(lo, sdVIP6) || !strings.Contains(lo, "127.0.0.1/8") {
		t.Errorf("lo after purge:\n%s\npurge:\n%s", lo, out)
	}
	if got := strings.TrimSpace(m.must("sysctl -n net.ipv4.conf.all.arp_ignore")); got != "0" {
		t.Errorf("arp_ignore after purge = %s, want the 0 found before", got)
	}
	if left := m.must("ls -d /etc/dsrlb /var/lib/dsrlb /etc/systemd/network/05-dsrlb-lo.network /etc/sysctl.d/99-zz-dsrlb-arp.conf /usr/sbin/hostprep /usr/lib/systemd/system/hostprep.service 2>/dev/null || true"); strings.TrimSpace(left) != "" {
		t.Errorf("left after purge:\n%s", left)
	}
}

func (m *machine) systemdVersion() string {
	out, _ := m.sh("systemctl --version | head -1")
	return strings.TrimSpace(strings.TrimPrefix(out, "systemd "))
}

const (
	sdLBAddr     = "192.0.2.1"
	sdClientAddr = "192.0.2.100"
	sdLBVIP      = "192.0.2.10"
	sdBackendMAC = "02:00:00:00:00:0b"
)

// sdLBConfig is a UDP service whose backend has a static MAC: forwarding
// shows as frames to that MAC on the client's link, with no backend host.
func sdLBConfig(extra string) string {
	return `balancer:
  interface: eth0
services:
  - name: dns
    vip: ` + sdLBVIP + `
    protocol: udp
    ports: [53]
    check: {type: none}
    servers:
      - {name: b1, address: 192.0.2.11, mac: "` + sdBackendMAC + `"}
` + extra
}

// balancerNS: eth0 in the machine's namespace, its peer cl0 in a client
// namespace of the test, both on 192.0.2.0/24.
func balancerNS(m **machine, client *string) func(ns string) {
	return func(ns string) {
		mm := *m
		if *client != "" {
			nettest.DelNamed(*client)
		}
		*client = ns + "-cl"
		mm.t.Cleanup(func() { nettest.DelNamed(*client) })
		if err := nettest.AddNamed(*client); err != nil {
			mm.t.Fatalf("create namespace %s: %v", *client, err)
		}
		mm.nsRun("ip", "link", "add", "eth0", "type", "veth", "peer", "name", "cl0", "netns", *client)
		mm.nsRun("ip", "addr", "add", sdLBAddr+"/24", "dev", "eth0")
		mm.nsRun("ip", "link", "set", "eth0", "up")
		for _, c := range [][]string{{"ip", "addr", "add", sdClientAddr + "/24", "dev", "cl0"}, {"ip", "link", "set", "cl0", "up"}} {
			if out, err := exec.Command("nsenter", append([]string{"--net=/run/netns/" + *client, "--"}, c...)...).CombinedOutput(); err != nil {
				mm.t.Fatalf("%v: %v\n%s", c, err, out)
			}
		}
	}
}

// forwards proves the data plane forwards: UDP from the client to the VIP
// comes back out of eth0 addressed to the backend's MAC, seen by tcpdump
// on the client's link. Bounded: 20 datagrams, 20 s.
func forwards(t *testing.T, client string) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cap := exec.CommandContext(ctx, "nsenter", "--net=/run/netns/"+client, "--", "tcpdump", "-i", "cl0", "-nn", "-e", "-c", "1",
		"--immediate-mode", "ether dst "+sdBackendMAC+" and udp dst port 53")
	var out strings.Builder
	cap.Stdout = &out
	stderr, _ := cap.StderrPipe()
	if err := cap.Start(); err != nil {
		return err
	}
	listening := make(chan struct{})
	go func() {
		buf := make([]byte, 4096)
		n, _ := stderr.Read(buf) // "listening on cl0 ..."
		if n > 0 {
			close(listening)
		}
		for {
			if _, err := stderr.Read(buf); err != nil {
				return
			}
		}
	}()
	select {
	case <-listening:
	case <-ctx.Done():
		return fmt.Errorf("tcpdump did not start")
	}
	done := make(chan error, 1)
	go func() { done <- cap.Wait() }()
	for i := 0; i < 20; i++ {
		exec.Command("nsenter", "--net=/run/netns/"+client, "--", "bash", "-c", "echo probe > /dev/udp/"+sdLBVIP+"/53").Run()
		select {
		case err := <-done:
			if err != nil {
				return fmt.Errorf("tcpdump: %v", err)
			}
			if !strings.Contains(out.String(), sdBackendMAC) {
				return fmt.Errorf("captured %q", out.String())
			}
			return nil
		case <-time.After(500 * time.Millisecond):
		}
	}
	cancel()
	<-done
	return fmt.Errorf("no datagram to the VIP left eth0 for %s", sdBackendMAC)
}

// TestSystemdLbdLifecycle: lbd.service under systemd: start reaches READY
// with a current STATUS=, a good reload passes and a rejected one fails
// systemctl reload, the journal has priorities, a bad file is not
// restarted in a loop, restart adopts the pinned plane, stop leaves it
// forwarding, an upgrade restarts and adopts, purge leaves nothing.
func TestSystemdLbdLifecycle(t *testing.T) {
	s := begin(t, "systemd-lbd-lifecycle")
	s.needSystemd()
	if _, err := exec.LookPath("tcpdump"); err != nil {
		t.Fatal("tcpdump missing: scripts/setup-debian.sh installs it")
	}
	debs := buildDebs(t, sdVersion)
	newer := buildDebs(t, sdNewVersion)
	ctx := ctxFor(t, 15*time.Minute)
	var m *machine
	client := ""
	m = newMachine(t, balancerNS(&m, &client))
	m.boot(ctx)
	if out := m.must("findmnt -n -o FSTYPE /sys/fs/bpf"); strings.TrimSpace(out) != "bpf" {
		t.Fatalf("no bpffs in the machine: %q", out)
	}
	m.installDebs(debs, sdVersion, "dsrlb-common", "dsrlb-lbd")
	if st := m.show("lbd.service", "ActiveState"); st != "inactive" {
		t.Errorf("a fresh install started lbd: %s", st)
	}
	write := func(cfg string) { m.must("cat > /etc/dsrlb/dsrlb.yaml <<'EOF'\n" + cfg + "EOF") }
	write(sdLBConfig(""))
	m.must("systemctl enable --now lbd.service") // Type=notify: returns once READY=1 came
	if st := m.show("lbd.service", "ActiveState"); st != "active" {
		t.Fatalf("lbd after start: %s\n%s", st, m.must("journalctl -u lbd --no-pager | tail -20"))
	}
	if st := m.show("lbd.service", "StatusText"); !strings.Contains(st, "1 services, 1 servers, 0 out of rotation") {
		t.Errorf("STATUS= %q", st)
	}
	if j := m.must("journalctl -u lbd --no-pager -o cat"); !strings.Contains(j, "lbd starting version="+sdVersion) || !strings.Contains(j, "lbd ready") {
		t.Errorf("journal lacks the version or ready line:\n%s", tail(j, 20))
	}
	// The unit's sandbox (capabilities, address families, system calls)
	// lets the ARP guard open its packet sockets.
	if j := m.must("journalctl -u lbd --no-pager -o cat"); !strings.Contains(j, "ARP guard watching") || strings.Contains(j, "ARP guard not running") {
		t.Errorf("the ARP guard did not start under the lbd unit:\n%s", tail(j, 20))
	}
	if j := m.must("journalctl -u lbd --no-pager -o cat VERSION=" + sdVersion); !strings.Contains(j, "lbd starting") {
		t.Errorf("no journal field VERSION=%s on the start line: %q", sdVersion, j)
	}
	if err := forwards(t, client); err != nil {
		t.Fatalf("lbd started: not forwarding: %v", err)
	}

	// Reload: a good file passes, a rejected one fails systemctl reload.
	// The added service has a tcp check, through the DSR path by default:
	// its backend (a static MAC, no host) never answers, and lbd status
	// says so, which shows the unit lets lbd open its packet socket.
	write(sdLBConfig("") + "  - name: web2\n    vip: 192.0.2.20\n    ports: [80]\n    check: {type: tcp, interval: 500ms, timeout: 200ms}\n    servers:\n      - {name: b1, address: 192.0.2.11, mac: \"" + sdBackendMAC + "\"}\n")
	m.must("systemctl reload lbd.service")
	if st := m.show("lbd.service", "StatusText"); !strings.Contains(st, "2 services") || !strings.Contains(st, "last reload ok") {
		t.Errorf("STATUS= after a good reload %q", st)
	}
	m.waitFor("lbd status giving the DSR-path reason", `out=$(lbd status 2>&1); echo "$out"; echo "$out" | grep -q 'VIP 192.0.2.20:80 not answered by 192.0.2.11 through the DSR path'`, 20*time.Second)
	write(sdLBConfig("") + "  - name: far\n    vip: 192.0.2.30\n    protocol: udp\n    ports: [53]\n    check: {type: none}\n    servers:\n      - {name: f1, address: 203.0.113.250, mac: \"" + sdBackendMAC + "\"}\n")
	if out, err := m.sh("systemctl reload lbd.service"); err == nil {
		t.Errorf("systemctl reload accepted a file lbd rejects:\n%s", out)
	}
	if st := m.show("lbd.service", "ActiveState"); st != "active" {
		t.Errorf("lbd after a rejected reload: %s", st)
	}
	if st := m.show("lbd.service", "StatusText"); !strings.Contains(st, "last reload rejected") {
		t.Errorf("STATUS= after a rejected reload %q", st)
	}
	if j := m.must("journalctl -u lbd -p warning --no-pager -o cat"); !strings.Contains(j, "reload rejected") || strings.Contains(j, "lbd ready") {
		t.Errorf("journalctl -p warning -u lbd: want the rejection, not the info lines:\n%s", tail(j, 20))
	}
	m.must("kill -HUP $(systemctl show -p MainPID --value lbd.service)") // SIGHUP still reloads
	m.waitFor("SIGHUP reload logged", "journalctl -u lbd --no-pager -o cat | grep -c 'reloading configuration' | grep -qx 3", 20*time.Second)

	// Restart adopts; stop leaves the data plane forwarding.
	write(sdLBConfig(""))
	m.must("systemctl restart lbd.service")
	if j := m.must("journalctl -u lbd --no-pager -o cat"); !strings.Contains(j, "adopted the pinned data plane") {
		t.Errorf("restart did not adopt:\n%s", tail(j, 20))
	}
	m.must("systemctl stop lbd.service")
	if err := forwards(t, client); err != nil {
		t.Errorf("lbd stopped: data plane not forwarding: %v", err)
	}

	// A bad file fails once, with exit 6, and is not restarted.
	write("services: [\n")
	m.sh("systemctl start lbd.service")
	m.waitFor("lbd failed", `[ "$(systemctl show -p ActiveState --value lbd.service)" = failed ]`, 30*time.Second)
	if st, code, n := m.show("lbd.service", "SubState"), m.show("lbd.service", "ExecMainStatus"), m.show("lbd.service", "NRestarts"); st != "failed" || code != "6" || n != "0" {
		t.Errorf("lbd with a bad file: SubState %s, ExecMainStatus %s, NRestarts %s; want failed, 6, 0", st, code, n)
	}
	write(sdLBConfig(""))
	m.must("systemctl reset-failed lbd.service; systemctl start lbd.service")

	// Upgrade to a rebuilt newer version: restarted, adopting.
	m.installDebs(newer, sdNewVersion, "dsrlb-common", "dsrlb-lbd")
	m.waitFor("upgraded lbd running", "journalctl -u lbd --no-pager -o cat | grep -q 'lbd starting version="+sdNewVersion+"'", 30*time.Second)
	m.waitFor("upgraded lbd active", `[ "$(systemctl is-active lbd.service)" = active ]`, 30*time.Second)
	if j := m.must("journalctl -u lbd --no-pager -o cat | sed -n '/version=" + sdNewVersion + "/,$p'"); !strings.Contains(j, "adopted the pinned data plane") {
		t.Errorf("upgraded lbd did not adopt:\n%s", tail(j, 20))
	}
	if err := forwards(t, client); err != nil {
		t.Errorf("after upgrade: not forwarding: %v", err)
	}
	score := m.securityScore("lbd.service")
	t.Logf("systemd-analyze security lbd.service (systemd %s in the machine): %s", m.systemdVersion(), score)
	s.note = "security " + score

	// Purge: nothing left, not forwarding.
	out := m.must("dpkg --purge dsrlb-lbd dsrlb-common 2>&1")
	if left := m.must("ls -d /etc/dsrlb /run/dsrlb /sys/fs/bpf/dsrlb /usr/sbin/lbd /usr/lib/systemd/system/lbd.service 2>/dev/null || true"); strings.TrimSpace(left) != "" {
		t.Errorf("left after purge:\n%s\npurge:\n%s", left, out)
	}
	if a := m.must("ip -o addr show dev eth0"); strings.Contains(a, sdLBVIP) {
		t.Errorf("VIP left on eth0 after purge:\n%s", a)
	}
	if err := forwards(t, client); err == nil {
		t.Error("still forwarding after purge")
	}
}
