package health

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/dsrlb/dsrlb/internal/procrun"
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
		return fmt.Errorf("check command %s not started within the timeout: lbd runs at most %d check commands at once and they were all busy; make the commands faster, or lengthen check.interval so fewer run together", p.command, maxExecs)
	}
	out, err := procrun.Run(ctx, procrun.Cmd{Path: p.command, Args: p.args, Env: p.env,
		MaxOutput: maxExecOutput, WaitDelay: execWaitDelay})
	var exit *exec.ExitError
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		return fmt.Errorf("check command %s did not finish within the timeout and was killed with its process group%s", p.command, tail(out))
	case errors.As(err, &exit):
		return fmt.Errorf("check command %s %s%s", p.command, exitText(exit), tail(out))
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

// tail is the output for a down reason: ": " and its last lines, on one
// line, or "" when there was none.
func tail(out string) string {
	s := strings.Join(strings.Fields(out), " ")
	if s == "" {
		return ""
	}
	const show = 200
	if len(s) > show {
		s = "..." + s[len(s)-show:]
	}
	return ": " + s
}
