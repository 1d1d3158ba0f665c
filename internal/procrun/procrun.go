// Package procrun runs an operator's command the way lbd runs all of them
// (exec checks, balancer.notify): without a shell, with the environment it
// is given and nothing else, in /, and in a process group of its own, so
// that when its time is up the whole group is killed: a script that starts
// `sleep 600 &` cannot pile up. Its output is kept up to a bound and never
// refused, so the command does not see EPIPE.
package procrun

import (
	"bytes"
	"context"
	"errors"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// Cmd is one run of a program.
type Cmd struct {
	Path      string
	Args      []string
	Env       []string      // the whole environment
	MaxOutput int           // bytes of stdout and stderr (together) kept
	WaitDelay time.Duration // how long output is read after the kill
}

// Run runs c until it exits or ctx ends, when its process group is killed
// with SIGKILL. It returns the first c.MaxOutput bytes of its output and
// the error of exec.Cmd.Run (an *exec.ExitError, ...; nil when it exited 0
// even if something it left behind held the output open past c.WaitDelay);
// the caller tells a timeout by ctx.Err(). The process group is killed
// when Run returns, in every case.
func Run(ctx context.Context, c Cmd) (string, error) {
	out := &capped{max: c.MaxOutput}
	cmd := exec.CommandContext(ctx, c.Path, c.Args...)
	cmd.Env = c.Env
	cmd.Dir = "/"
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = c.WaitDelay
	err := cmd.Run()
	if cmd.Process != nil {
		// What the command left behind (`sleep 30 &`) goes with it: the
		// group is killed whether it exited or timed out, so a check or
		// hook run every few seconds cannot pile up orphans.
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	if errors.Is(err, exec.ErrWaitDelay) && cmd.ProcessState != nil && cmd.ProcessState.Success() {
		// It exited 0; only a leftover child held the output open.
		err = nil
	}
	return out.String(), err
}

// capped keeps the first max bytes written to it and drops the rest,
// never failing a write.
type capped struct {
	mu  sync.Mutex
	max int
	buf bytes.Buffer
}

func (c *capped) Write(b []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if room := c.max - c.buf.Len(); room > 0 {
		c.buf.Write(b[:min(len(b), room)])
	}
	return len(b), nil
}

func (c *capped) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.String()
}
