package notify

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// script writes an executable shell script into a temporary directory.
func script(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "hook")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// waitFor polls cond until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(d); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("%s: not within %v", what, d)
		}
	}
}

func TestEventsInOrderWithEnvironment(t *testing.T) {
	out := filepath.Join(t.TempDir(), "events")
	hook := script(t, `echo "$DSRLB_SERVICE/$DSRLB_SERVER $DSRLB_ADDRESS $DSRLB_OLD_STATE>$DSRLB_NEW_STATE [$DSRLB_REASON] fb=$DSRLB_FALLBACK home=${HOME:-none}" >> `+out)
	n := New(nil, 0)
	defer n.Close()
	n.Set(&Command{Path: hook, Timeout: 5 * time.Second})
	states := []string{"up", "down", "up", "drain", "down"}
	for i := 1; i < len(states); i++ {
		e := Event{Service: "web", Server: "b1", Address: "192.0.2.11", Old: states[i-1], New: states[i], Time: time.Now()}
		if states[i] == "down" {
			e.Reason = "health check failing"
		}
		e.Fallback = i == 3
		if !n.Send(e) {
			t.Fatalf("event %d dropped with an empty queue", i)
		}
	}
	var lines []string
	waitFor(t, 10*time.Second, "four events run", func() bool {
		b, _ := os.ReadFile(out)
		lines = strings.Split(strings.TrimSpace(string(b)), "\n")
		return len(lines) == 4
	})
	want := []string{
		"web/b1 192.0.2.11 up>down [health check failing] fb=0 home=none",
		"web/b1 192.0.2.11 down>up [] fb=0 home=none",
		"web/b1 192.0.2.11 up>drain [] fb=1 home=none",
		"web/b1 192.0.2.11 drain>down [health check failing] fb=0 home=none",
	}
	for i := range want {
		if lines[i] != want[i] {
			t.Errorf("event %d: %q, want %q", i, lines[i], want[i])
		}
	}
}

func TestTimeoutKillsProcessGroup(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "child")
	hook := script(t, `sleep 60 & echo $! > `+pidFile+`; sleep 60`)
	start := time.Now()
	_, err := Run(context.Background(), Command{Path: hook, Timeout: 300 * time.Millisecond}, nil)
	if err == nil || !strings.Contains(err.Error(), "killed (with its process group) after the timeout of 300ms") {
		t.Fatalf("Run = %v, want a timeout kill", err)
	}
	if took := time.Since(start); took > 20*time.Second {
		t.Fatalf("Run returned after %v: the timeout did not end it", took)
	}
	b, rerr := os.ReadFile(pidFile)
	if rerr != nil {
		t.Fatalf("the hook did not record its child: %v", rerr)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	if pid <= 1 {
		t.Fatalf("child pid %q", b)
	}
	// The background sleep was in the hook's process group: it is gone
	// (a zombie until reaped by init counts as gone for kill -0 only once
	// reaped, so accept ESRCH or a zombie state).
	waitFor(t, 5*time.Second, "background child killed", func() bool {
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			return true
		}
		st, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		f := strings.Fields(string(st))
		return len(f) > 2 && f[2] == "Z"
	})
}

func TestFailureReported(t *testing.T) {
	hook := script(t, `echo "no such pool" >&2; exit 3`)
	out, err := Run(context.Background(), Command{Path: hook, Timeout: 5 * time.Second}, nil)
	if err == nil || !strings.Contains(err.Error(), "exit status 3") || !strings.Contains(out, "no such pool") {
		t.Fatalf("Run = %q, %v", out, err)
	}
	if _, err := Run(context.Background(), Command{Path: "/nonexistent/hook", Timeout: time.Second}, nil); err == nil {
		t.Fatal("a missing command ran")
	}
}

// TestQueueBounded: a hanging command never blocks Send; what does not fit
// the queue is dropped and counted.
func TestQueueBounded(t *testing.T) {
	started := filepath.Join(t.TempDir(), "started")
	hook := script(t, `echo x >> `+started+`; sleep 60`)
	n := New(nil, 2)
	n.Set(&Command{Path: hook, Timeout: time.Minute})
	n.Send(Event{Server: "b0", New: "down"})
	waitFor(t, 10*time.Second, "first command started", func() bool { _, err := os.Stat(started); return err == nil })
	begin := time.Now()
	sent := 0
	for i := 1; i <= 10; i++ {
		if n.Send(Event{Server: "b" + strconv.Itoa(i), New: "down"}) {
			sent++
		}
	}
	if took := time.Since(begin); took > 5*time.Second {
		t.Errorf("10 sends took %v: Send blocks", took)
	}
	if sent != 2 || n.Dropped() != 8 {
		t.Errorf("queued %d, dropped %d; want 2 queued (the queue's size) and 8 dropped", sent, n.Dropped())
	}
	done := make(chan struct{})
	go func() { n.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not end the running command")
	}
}

func TestNoCommandNoQueue(t *testing.T) {
	n := New(nil, 1)
	defer n.Close()
	if n.Send(Event{Server: "b1"}) {
		t.Error("an event was queued without a command")
	}
	n.Set(&Command{Path: "/bin/true", Timeout: time.Second})
	if !n.Send(Event{Server: "b1"}) {
		t.Error("event dropped with a command set and an empty queue")
	}
	waitFor(t, 5*time.Second, "command run", func() bool { return n.Ran() == 1 })
	n.Set(nil)
	if n.Send(Event{Server: "b1"}) {
		t.Error("event queued after notifications were turned off")
	}
}
