package procrun

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestRun: the command sees only the environment given and runs in /, its
// output is cut at MaxOutput, and a non-zero exit comes back as an
// *exec.ExitError.
func TestRun(t *testing.T) {
	out, err := Run(context.Background(), Cmd{Path: "/bin/sh", Args: []string{"-c", "pwd; env"},
		Env: []string{"ONLY=1"}, MaxOutput: 1 << 10})
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Fields(out)
	if len(lines) < 2 || lines[0] != "/" || !strings.Contains(out, "ONLY=1") || strings.Contains(out, "HOME=") {
		t.Errorf("output %q: want / and only the given environment", out)
	}
	out, err = Run(context.Background(), Cmd{Path: "/bin/sh", Args: []string{"-c", "head -c 5000 /dev/zero"}, MaxOutput: 100})
	if err != nil || len(out) != 100 {
		t.Errorf("capped run: %d bytes, %v; want 100 bytes and no error", len(out), err)
	}
	var exit *exec.ExitError
	if _, err := Run(context.Background(), Cmd{Path: "/bin/sh", Args: []string{"-c", "exit 3"}}); !errors.As(err, &exit) || exit.ExitCode() != 3 {
		t.Errorf("exit 3: %v", err)
	}
}

// TestRunKillsGroup: when ctx ends the command's whole process group is
// killed, the background child it started too.
func TestRunKillsGroup(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	out, err := Run(ctx, Cmd{Path: "/bin/sh", Args: []string{"-c", "sleep 30 & echo $!; wait"},
		MaxOutput: 100, WaitDelay: 100 * time.Millisecond})
	if err == nil || ctx.Err() == nil {
		t.Fatalf("run past its time: err %v, ctx %v; want both set", err, ctx.Err())
	}
	pid, perr := strconv.Atoi(strings.TrimSpace(out))
	if perr != nil {
		t.Fatalf("background pid from output %q: %v", out, perr)
	}
	deadline := time.Now().Add(5 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("background child %d still running after the group was killed", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// alive: pid exists and is not a zombie (the killed child is reaped by
// whoever inherited it, maybe later).
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || !strings.HasPrefix(s[i+1:], " Z")
}

// TestRunKillsLeftovers: a command that exits 0 and leaves a child behind
// (`sleep 30 &`) succeeds, and the child goes with its group: a check or
// hook run every few seconds cannot pile up orphans.
func TestRunKillsLeftovers(t *testing.T) {
	for _, detach := range []string{"", " >/dev/null 2>&1"} { // holding the output open, or not
		out, err := Run(context.Background(), Cmd{Path: "/bin/sh", Args: []string{"-c", "sleep 30" + detach + " & echo $!; exit 0"},
			MaxOutput: 100, WaitDelay: 100 * time.Millisecond})
		if err != nil {
			t.Fatalf("exit 0 with a leftover child%s: %v, want success", detach, err)
		}
		pid, perr := strconv.Atoi(strings.TrimSpace(out))
		if perr != nil {
			t.Fatalf("background pid from output %q: %v", out, perr)
		}
		deadline := time.Now().Add(5 * time.Second)
		for alive(pid) {
			if time.Now().After(deadline) {
				t.Fatalf("leftover child %d%s still running after Run returned", pid, detach)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}
