package main

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dsrlb/dsrlb/internal/nettest"
)

const config = `services:
  - name: web
    vip: 203.0.113.10
    ports: [80]
    servers:
      - {name: me, address: 198.51.100.11}
`

// TestBinary runs the built binary in a namespace once, end to end:
// exit codes of check (0 in sync, 1 drift) and its JSON, as monitoring
// and cloud-init see them.
func TestBinary(t *testing.T) {
	ns := nettest.Create(t, "dsrlbhp-")
	bin := filepath.Join(t.TempDir(), "hostprep")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	root := t.TempDir()
	cfg := filepath.Join(root, "etc/dsrlb/dsrlb.yaml")
	if err := os.MkdirAll(filepath.Dir(cfg), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	ns.Sh(t, "ip link add name e0 type veth peer name e1", "ip addr add 198.51.100.11/24 dev e0",
		"for i in all default; do echo 0 > /proc/sys/net/ipv4/conf/$i/arp_ignore; echo 0 > /proc/sys/net/ipv4/conf/$i/arp_announce; done")
	hp := func(args ...string) (int, string) {
		t.Helper()
		cmd := exec.Command("ip", append([]string{"netns", "exec", ns.Name, bin, "--root", root}, args...)...)
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode(), string(out)
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0, string(out)
	}

	if code, out := hp("check"); code != 1 || !strings.Contains(out, "drift: address 203.0.113.10/32: have absent") {
		t.Errorf("check before apply: exit %d\n%s", code, out)
	}
	if code, out := hp("apply"); code != 0 || !strings.Contains(out, "added 203.0.113.10/32 on lo (label lo:1)") {
		t.Errorf("apply: exit %d\n%s", code, out)
	}
	code, out := hp("check", "--json")
	var res struct {
		InSync bool     `json:"in_sync"`
		VIPs   []string `json:"vips"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil || code != 0 || !res.InSync || len(res.VIPs) != 1 {
		t.Errorf("check --json: exit %d, %v\n%s", code, err, out)
	}
	ns.Sh(t, "echo 0 > /proc/sys/net/ipv4/conf/all/arp_ignore")
	code, out = hp("check", "--json")
	if code != 1 || !strings.Contains(out, `"item": "net.ipv4.conf.all.arp_ignore"`) {
		t.Errorf("check --json after drift: exit %d\n%s", code, out)
	}
	if code, out := hp("remove"); code != 0 || !strings.Contains(out, "deleted 203.0.113.10/32") {
		t.Errorf("remove: exit %d\n%s", code, out)
	}
	if code, out := hp("check", "--vip", "nope"); code != 1 || !strings.Contains(out, "not an IP address") {
		t.Errorf("bad --vip: exit %d\n%s", code, out)
	}
	if code, out := hp("apply", "--bogus"); code != 2 || !strings.Contains(out, "see hostprep --help") {
		t.Errorf("usage error: exit %d\n%s", code, out)
	}
	// setpriv (util-linux, always on Debian) runs the binary without root,
	// or as root without CAP_NET_ADMIN.
	for name, prefix := range map[string][]string{
		"not root":         {"setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups"},
		"no CAP_NET_ADMIN": {"setpriv", "--bounding-set", "-net_admin"},
	} {
		out, err := exec.Command(prefix[0], append(prefix[1:], bin, "--root", root, "apply")...).CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(string(out), "hostprep: check privileges:") ||
			!strings.Contains(string(out), "--dry-run") {
			t.Errorf("%s: %v\n%s", name, err, out)
		}
	}
}
