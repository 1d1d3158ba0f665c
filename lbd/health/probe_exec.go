package health

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Bounds of exec checks, so a check command can never hold up the daemon:
// at most maxExecs commands run at once (a checker waiting for a slot
// spends its own timeout waiting), each one's output is cut at
// maxExecOutput bytes, and a command whose time is up is killed with its
// process group, its pipes closed after execWaitDelay.
const (
	maxExecs      = 16
	maxExecOutput = 1 << 10
	execWaitDelay = 100 * time.Millisecond
	// execPath is the only variable a command inherits besides its
	// DSRLB_* ones: lbd's own environment is none of its business.
	execPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
)

var execSlots = make(chan struct{}, maxExecs)

// execProber runs the check command; exit status 0 is up.
type execProber struct {
	command string
	args    []string
	env     []string
}

func newExecProber(t Target) prober {
	service, server, _ := strings.Cut(t.Key, "/")
	env := []string{
		execPath,
		"DSRLB_SERVICE=" + service,
		"DSRLB_SERVER=" + server,
		"DSRLB_ADDRESS=" + t.Addr.Addr().String(),
		"DSRLB_PORT=" + strconv.Itoa(int(t.Addr.Port())),
	}
	if t.VIP.IsValid() {
		env = append(env, "DSRLB_VIP="+t.VIP.String())
	}
	return execProber{command: t.Check.Command, args: t.Check.Args.List(), env: env}
}

func (p execProber) probe(ctx context.Context) error {
	select {
	case execSlots <- struct{}{}:
		defer func() { <-execSlots }()
	case <-ctx.Done():
		return fmt.Errorf("check command %s not started: %d other check commands ran for the whole timeout; are they hanging?", p.command, maxExecs)
	}
	var out capped
	cmd := exec.CommandContext(ctx, p.command, p.args...)
	cmd.Env = p.env
	cmd.Dir = "/"
	cmd.Stdout, cmd.Stderr = &out, &out
	// Its own process group, so a timeout kills what the command started
	// too (a shell script's children), not only the command.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = execWaitDelay
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		return fmt.Errorf("check command %s did not finish within the timeout and was killed with its process group%s", p.command, out.tail())
	case errors.As(err, &exit):
		return fmt.Errorf("check command %s %s%s", p.command, exitText(exit), out.tail())
	case errors.Is(err, exec.ErrWaitDelay):
		return nil // it exited 0; something it left behind kept the output open
	}
	return fmt.Errorf("run check command: %w", err)
}

func exitText(e *exec.ExitError) string {
	if ws, ok := e.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return "was killed by signal " + ws.Signal().String()
	}
	return "exited with status " + strconv.Itoa(e.ExitCode())
}

// capped keeps the first maxExecOutput bytes written to it and drops the
// rest, never failing a write (that would make the command see EPIPE).
type capped struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (c *capped) Write(b []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if room := maxExecOutput - c.buf.Len(); room > 0 {
		c.buf.Write(b[:min(len(b), room)])
	}
	return len(b), nil
}

// tail is the output for a down reason: ": " and its last lines, on one
// line, or "" when there was none.
func (c *capped) tail() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := strings.Join(strings.Fields(c.buf.String()), " ")
	if s == "" {
		return ""
	}
	const show = 200
	if len(s) > show {
		s = "..." + s[len(s)-show:]
	}
	return ": " + s
}
