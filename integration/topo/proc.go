package topo

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// RunID is this process's unique prefix: every namespace, bpffs pin
// directory and process the harness creates carries it ("dsrit" + 6 hex).
var RunID = func() string {
	b := make([]byte, 3)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return "dsrit" + hex.EncodeToString(b)
}()

// envRun marks every process the harness starts (DSRIT_RUN=<RunID>), so the
// leak check finds one even when its PID was lost.
const envRun = "DSRIT_RUN"

// Proc is a long-running process started inside a namespace.
type Proc struct {
	Name string // for messages: "lbd", "testsrv b1"

	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
	err  error
}

// spawner is one goroutine locked to its thread for the whole process life,
// from which every long-running process is forked. Pdeathsig fires when the
// forking *thread* exits; the harness's namespace threads may exit (see
// NS.Do: one that cannot leave the namespace is dropped), so forking from
// one of them could kill children at random.
var spawner = sync.OnceValue(func() chan func() {
	ch := make(chan func())
	go func() {
		runtime.LockOSThread()
		for f := range ch {
			f()
		}
	}()
	return ch
})

// startProc starts args inside ns with output captured. nsenter, not `ip
// netns exec`: the latter remounts /sys, which hides bpffs (/sys/fs/bpf)
// from lbd. nsenter execs the program, so the PID is the program's.
func startProc(ns *NS, name string, args ...string) (*Proc, error) {
	p := &Proc{Name: name, out: &syncBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command("nsenter", append([]string{"--net=" + ns.Path(), "--"}, args...)...)
	p.cmd.Env = append(os.Environ(), envRun+"="+RunID)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	errc := make(chan error, 1)
	spawner() <- func() { errc <- p.cmd.Start() }
	if err := <-errc; err != nil {
		return nil, fmt.Errorf("start %s in %s: %w", name, ns.Name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// PID of the process.
func (p *Proc) PID() int { return p.cmd.Process.Pid }

// Output is everything the process wrote so far (stdout and stderr).
func (p *Proc) Output() string { return p.out.String() }

// Exited reports whether the process has ended, and how.
func (p *Proc) Exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}

// Signal sends sig to the process (by PID).
func (p *Proc) Signal(sig syscall.Signal) error {
	if ok, _ := p.Exited(); ok {
		return fmt.Errorf("signal %s: already exited", p.Name)
	}
	return p.cmd.Process.Signal(sig)
}

// Wait waits for the process to end, at most d.
func (p *Proc) Wait(d time.Duration) error {
	select {
	case <-p.done:
		return p.err
	case <-time.After(d):
		return fmt.Errorf("%s (pid %d) still running after %v", p.Name, p.PID(), d)
	}
}

// Stop sends SIGTERM, waits up to grace, then SIGKILL. It returns the exit
// error of a process that stopped on SIGTERM (nil for a clean exit).
func (p *Proc) Stop(grace time.Duration) error {
	if ok, err := p.Exited(); ok {
		return err
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return p.err
	case <-time.After(grace):
	}
	p.Kill()
	return fmt.Errorf("%s (pid %d) ignored SIGTERM for %v: killed", p.Name, p.PID(), grace)
}

// Kill sends SIGKILL and waits for the process to be reaped.
func (p *Proc) Kill() {
	if ok, _ := p.Exited(); ok {
		return
	}
	_ = p.cmd.Process.Kill()
	<-p.done
}

// WaitOutput waits until the output contains s, the process exits, or d
// passes.
func (p *Proc) WaitOutput(ctx context.Context, s string, d time.Duration) error {
	return p.WaitOutputN(ctx, s, 1, d)
}

// WaitOutputN waits until the output contains s n times (a second reload
// logs its line again), the process exits, or d passes.
func (p *Proc) WaitOutputN(ctx context.Context, s string, n int, d time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	for {
		if strings.Count(p.Output(), s) >= n {
			return nil
		}
		if ok, err := p.Exited(); ok {
			return fmt.Errorf("%s exited (%v) before printing %q %d times; output:\n%s", p.Name, err, s, n, p.Output())
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s did not print %q %d times within %v; output:\n%s", p.Name, s, n, d, p.Output())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// registry of the live topologies, for CloseAll (signal handlers).
var (
	liveMu sync.Mutex
	live   = map[*Topology]struct{}{}
)

// CloseAll closes every topology not closed yet; for signal handlers and
// the end of TestMain.
func CloseAll() error {
	liveMu.Lock()
	ts := make([]*Topology, 0, len(live))
	for t := range live {
		ts = append(ts, t)
	}
	liveMu.Unlock()
	var errs []string
	for _, t := range ts {
		if err := t.Close(); err != nil {
			errs = append(errs, err.Error())
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("close topologies: %s", strings.Join(errs, "; "))
	}
	return nil
}

// Leaks lists what this process created and did not remove: namespaces and
// bpffs entries named with RunID, and processes carrying DSRIT_RUN=RunID.
func Leaks() []string {
	var leaks []string
	for _, dir := range []string{"/run/netns", bpffsRoot} {
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), RunID) {
				leaks = append(leaks, filepath.Join(dir, e.Name()))
			}
		}
	}
	procs, _ := os.ReadDir("/proc")
	marker := []byte(envRun + "=" + RunID + "\x00")
	for _, e := range procs {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err != nil || !bytes.Contains(env, marker) {
			continue
		}
		if st, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "stat")); bytes.Contains(st, []byte(") Z ")) {
			continue // a zombie holds nothing
		}
		cmd, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		leaks = append(leaks, fmt.Sprintf("process %d: %s", pid, strings.ReplaceAll(string(cmd), "\x00", " ")))
	}
	return leaks
}
