package nettest

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/dsrlb/dsrlb/internal/caps"
)

// CI reports whether the tests run in CI (CI=true), where every
// privileged test must run: a missing privilege or tool there is a broken
// runner, not a reason to skip.
func CI() bool { return os.Getenv("CI") == "true" }

// SkipOrFail is the one policy for a test that cannot run here: it skips
// with why, or fails with it under CI=true, so CI never passes by
// skipping.
func SkipOrFail(tb testing.TB, why string) {
	tb.Helper()
	if CI() {
		tb.Fatalf("%s; CI=true, so this is a failure, not a skip", why)
	}
	tb.Skip(why + " (CI=true makes this a failure)")
}

// Capability bits (linux/capability.h).
const (
	capNetAdmin = 12
	capSysAdmin = 21
	capPerfmon  = 38
	capBPF      = 39
)

// Require is for tests that create network namespaces: root with
// CAP_NET_ADMIN and CAP_SYS_ADMIN, and iproute2's ip.
func Require(tb testing.TB) {
	tb.Helper()
	if why := missing(capNetAdmin, capSysAdmin); why != "" {
		SkipOrFail(tb, "needs network namespaces: "+why)
	}
	RequireTools(tb, "ip")
}

// RequireRoot is for tests that need root only; what says why.
func RequireRoot(tb testing.TB, what string) {
	tb.Helper()
	if os.Geteuid() != 0 {
		SkipOrFail(tb, what+": needs root")
	}
}

// RequireBPF is for tests that load BPF programs and maps: root with
// CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN), and a kernel that lets this
// process create a map.
func RequireBPF(tb testing.TB) {
	tb.Helper()
	if why := missing(); why != "" {
		SkipOrFail(tb, "needs BPF: "+why)
	}
	if eff, err := caps.Effective(); err == nil && eff&(1<<capSysAdmin) == 0 && (eff&(1<<capBPF) == 0 || eff&(1<<capPerfmon) == 0) {
		SkipOrFail(tb, fmt.Sprintf("needs BPF: CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN) not in effect (CapEff %#x)", eff))
	}
	m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 4, MaxEntries: 1})
	if err != nil {
		SkipOrFail(tb, "needs BPF: cannot create a BPF map: "+err.Error())
		return
	}
	m.Close()
}

// RequireTools is for tests that run programs: each must be on PATH.
func RequireTools(tb testing.TB, names ...string) {
	tb.Helper()
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			SkipOrFail(tb, n+" not found (scripts/setup-debian.sh installs it)")
		}
	}
}

// missing says what the process lacks of root and the capabilities
// bits, "" when nothing.
func missing(bits ...uint) string {
	if os.Geteuid() != 0 {
		return "not root"
	}
	eff, err := caps.Effective()
	if err != nil {
		return err.Error()
	}
	names := map[uint]string{capNetAdmin: "CAP_NET_ADMIN", capSysAdmin: "CAP_SYS_ADMIN"}
	var lack []string
	for _, b := range bits {
		if eff&(1<<b) == 0 {
			lack = append(lack, names[b])
		}
	}
	if len(lack) > 0 {
		return fmt.Sprintf("%s not in effect (CapEff %#x)", strings.Join(lack, " and "), eff)
	}
	return ""
}
