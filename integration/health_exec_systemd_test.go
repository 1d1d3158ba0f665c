package integration

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

// sandboxProbe is an exec check that records what it may do under
// lbd.service, and is up, so lbd keeps running it.
const sandboxProbe = `#!/bin/sh
out=/var/lib/dsrlb/exec-probe
{
	echo "uid=$(id -u)"
	env | sort | sed 's/^/env /'
	if touch /etc/dsrlb-exec-probe 2>/dev/null; then echo "etc=writable"; else echo "etc=read-only"; fi
	if touch /tmp/dsrlb-exec-probe 2>/dev/null; then echo "tmp=writable"; else echo "tmp=read-only"; fi
	grep -E '^(CapEff|NoNewPrivs):' /proc/self/status
} > "$out.tmp" && mv "$out.tmp" "$out"
`

// lbdCaps is lbd.service's CapabilityBoundingSet: CAP_NET_ADMIN (12),
// CAP_NET_RAW (13), CAP_SYS_RESOURCE (24), CAP_PERFMON (38), CAP_BPF (39).
const lbdCaps = 1<<12 | 1<<13 | 1<<24 | 1<<38 | 1<<39

// TestSystemdExecCheckSandbox: an exec check run by the packaged lbd under
// a real systemd gets what docs/checks.md says: root with at most lbd's
// capabilities and no new privileges, a read-only /etc, a private /tmp,
// /var/lib/dsrlb writable, and an environment of PATH and the target
// only (nothing of lbd's, such as NOTIFY_SOCKET).
func TestSystemdExecCheckSandbox(t *testing.T) {
	s := begin(t, "systemd-exec-check-sandbox")
	s.needSystemd()
	debs := buildDebs(t, sdVersion)
	ctx := ctxFor(t, 10*time.Minute)
	var m *machine
	client := ""
	m = newMachine(t, balancerNS(&m, &client))
	m.writeFile("/usr/local/lib/dsrlb/probe-sandbox", sandboxProbe, 0o755)
	m.boot(ctx)
	m.installDebs(debs, sdVersion, "dsrlb-common", "dsrlb-lbd")
	cfg := strings.Replace(sdLBConfig(""), "check: {type: none}",
		"check: {type: exec, interval: 1s, timeout: 500ms, command: /usr/local/lib/dsrlb/probe-sandbox, args: [x]}", 1)
	m.must("cat > /etc/dsrlb/dsrlb.yaml <<'EOF'\n" + cfg + "EOF")
	m.must("systemctl start lbd.service")
	got := m.waitFor("the exec check's record", "cat /var/lib/dsrlb/exec-probe", 30*time.Second)
	m.waitFor("the backend up by its exec check", "lbd status | grep -E '^ *-> *b1 .* up '", 30*time.Second)

	for _, want := range []string{"uid=0", "etc=read-only", "tmp=writable", "NoNewPrivs:\t1",
		"env DSRLB_SERVICE=dns", "env DSRLB_SERVER=b1", "env DSRLB_VIP=" + sdLBVIP, "env DSRLB_ADDRESS=192.0.2.11", "env DSRLB_PORT=53",
		"env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"} {
		if !strings.Contains(got, want+"\n") {
			t.Errorf("the exec check's record lacks %q:\n%s", want, got)
		}
	}
	t.Logf("what the exec check recorded:\n%s", got)
	seenCaps := false
	for _, l := range strings.Split(got, "\n") {
		if strings.HasPrefix(l, "env ") && !strings.HasPrefix(l, "env DSRLB_") && !strings.HasPrefix(l, "env PATH=") && !strings.HasPrefix(l, "env PWD=") {
			t.Errorf("the exec check inherited %q from lbd", strings.TrimPrefix(l, "env "))
		}
		if v, ok := strings.CutPrefix(l, "CapEff:\t"); ok {
			seenCaps = true
			caps, err := strconv.ParseUint(v, 16, 64)
			if err != nil || caps&^lbdCaps != 0 || caps&(1<<12) == 0 {
				t.Errorf("exec check capabilities %s: want CAP_NET_ADMIN and nothing beyond lbd.service's bounding set (%x)", v, uint64(lbdCaps))
			}
		}
	}
	if !seenCaps {
		t.Errorf("the exec check's record has no CapEff line:\n%s", got)
	}
	// PrivateTmp: what the check wrote to /tmp is not in the machine's /tmp.
	if out, _ := m.sh("ls /tmp/dsrlb-exec-probe"); !strings.Contains(out, "No such file") {
		t.Errorf("the exec check's /tmp is the machine's: %s", out)
	}
	if out, _ := m.sh("ls /etc/dsrlb-exec-probe"); !strings.Contains(out, "No such file") {
		t.Errorf("the exec check wrote to /etc: %s", out)
	}
}
