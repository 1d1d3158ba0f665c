package cli

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"github.com/dsrlb/dsrlb/lbd/datapath"
	"github.com/dsrlb/dsrlb/shared/config"
)

func mustParse(t *testing.T, yaml string) *config.Config {
	t.Helper()
	cfg, err := config.Parse("t.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

const cfgText = `
balancer: {interface: eth0, pin_path: /sys/fs/bpf/dsrlb-a}
services:
  - name: web
    vip: 192.0.2.10
    ports: [443, 80]
    servers:
      - {name: w1, address: 192.0.2.11}
      - {name: w2, address: 192.0.2.12}
  - name: rest
    vip: 192.0.2.10
    check: {type: none}
    servers:
      - {name: r1, address: 192.0.2.13}
`

func TestPidFileUniquePerPinPath(t *testing.T) {
	a, b := pidFile("/sys/fs/bpf/dsrlb"), pidFile("/sys/fs/bpf/dsrlb-test-1/")
	if a != "/run/dsrlb/lbd-sys-fs-bpf-dsrlb.pid" || a == b {
		t.Errorf("pid files %q %q", a, b)
	}
	if !strings.HasSuffix(runningConfigPath("/sys/fs/bpf/dsrlb"), "lbd-sys-fs-bpf-dsrlb.running.yaml") {
		t.Error(runningConfigPath("/sys/fs/bpf/dsrlb"))
	}
}

func TestParseFlow(t *testing.T) {
	f, err := parseFlow([]string{"TCP", "198.51.100.7:51234", "192.0.2.10:443"})
	if err != nil || f.Proto != datapath.TCP || f.Src.Port() != 51234 || f.Dst.Addr().String() != "192.0.2.10" {
		t.Errorf("parseFlow = %+v, %v", f, err)
	}
	if f, err := parseFlow([]string{"udp", "[2001:db8::7]:5353", "[2001:db8::10]:53"}); err != nil || !f.Dst.Addr().Is6() {
		t.Errorf("v6: %+v %v", f, err)
	}
	for _, bad := range [][]string{{"icmp", "1.2.3.4:1", "1.2.3.4:2"}, {"tcp", "192.0.2.1", "192.0.2.10:80"}, {"tcp", "192.0.2.1:1", "vip:80"}} {
		if _, err := parseFlow(bad); err == nil {
			t.Errorf("parseFlow(%v) accepted", bad)
		}
	}
}

// TestNames: map-side identities (VIP, proto, ports, address) get the
// configuration's names; an exact port wins over the every-port service.
func TestNames(t *testing.T) {
	cfg := mustParse(t, cfgText)
	st := datapath.Stats{Services: []datapath.ServiceStats{
		{Name: "service0", VIP: cfg.Services[0].VIP, Proto: datapath.TCP, Ports: []uint16{80, 443},
			Backends: []datapath.BackendStats{{Name: "192.0.2.12", Addr: cfg.Services[0].Servers[1].Address}}},
		{Name: "service1", VIP: cfg.Services[0].VIP, Proto: datapath.TCP},
	}}
	nameStats(cfg, &st)
	if st.Services[0].Name != "web" || st.Services[0].Backends[0].Name != "w2" || st.Services[1].Name != "rest" {
		t.Errorf("named %+v", st.Services)
	}
	f, _ := parseFlow([]string{"tcp", "198.51.100.7:1", "192.0.2.10:80"})
	info := datapath.FlowInfo{Service: "service0", Backend: "192.0.2.11", Addr: cfg.Services[0].Servers[0].Address}
	nameFlow(cfg, f, &info)
	if info.Service != "web" || info.Backend != "w1" {
		t.Errorf("flow named %+v", info)
	}
	f, _ = parseFlow([]string{"tcp", "198.51.100.7:1", "192.0.2.10:22"})
	info = datapath.FlowInfo{Service: "service1", Backend: "192.0.2.13", Addr: cfg.Services[1].Servers[0].Address}
	nameFlow(cfg, f, &info)
	if info.Service != "rest" || info.Backend != "r1" {
		t.Errorf("every-port flow named %+v", info)
	}
}

// TestMovedShare: the dry-run preview reports Maglev movement, not a guess.
func TestMovedShare(t *testing.T) {
	a := mustParse(t, cfgText)
	b := mustParse(t, strings.Replace(cfgText, "{name: w2, address: 192.0.2.12}", "{name: w2, address: 192.0.2.12, weight: 0}", 1))
	if m := movedShare(&a.Services[0], &a.Services[0], 65537); m != 0 {
		t.Errorf("same service moved %v", m)
	}
	if m := movedShare(&a.Services[0], &b.Services[0], 65537); m < 0.49 || m > 0.51 {
		t.Errorf("draining one of two moved %v, want ~0.5", m)
	}
	var out bytes.Buffer
	if err := previewReload(&out, b); err != nil || !strings.Contains(out.String(), "web") || !strings.Contains(out.String(), "new") {
		t.Errorf("preview without running copy: %v\n%s", err, out.String())
	}
}

func TestHelpListsCommands(t *testing.T) {
	var out, errb bytes.Buffer
	if code := Main("1.2.3", []string{"--help"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	for _, c := range []string{"run", "reload", "status", "flows", "explain", "detach", "validate"} {
		if !strings.Contains(out.String(), "\n  "+c+" ") {
			t.Errorf("help lacks %s:\n%s", c, out.String())
		}
	}
	out.Reset()
	Main("1.2.3", []string{"--version"}, &out, &errb)
	if !strings.Contains(out.String(), "1.2.3") {
		t.Errorf("version: %q", out.String())
	}
}

func TestManPages(t *testing.T) {
	dir := t.TempDir()
	var out, errb bytes.Buffer
	if code := Main("1.2.3", []string{"man", dir}, &out, &errb); code != 0 {
		t.Fatalf("man: exit %d %s", code, errb.String())
	}
	for _, p := range []string{"lbd.8", "lbd-run.8", "lbd-status.8"} {
		if _, err := readFile(dir + "/" + p); err != nil {
			t.Error(err)
		}
	}
}

func readFile(p string) ([]byte, error) { return os.ReadFile(p) }
