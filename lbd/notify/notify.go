// Package notify runs balancer.notify, the operator's command, on every
// backend state change, as keepalived's notify scripts do, without ever
// holding up the daemon: events wait in a bounded queue and one worker
// runs them one after the other, so the events of one server (of all
// servers, in fact) reach the command in the order they happened. When the
// queue is full an event is dropped, counted (Dropped, the metric
// dsrlb_notify_dropped_total) and a warning logged at most once a minute.
//
// The command runs without a shell and without arguments, with a small
// environment: PATH and the DSRLB_* variables of Event.Env. It runs in a
// process group of its own, and the whole group is killed when it exits
// or runs past the timeout (internal/procrun): a script that starts
// `sleep 600 &` cannot pile up.
package notify

import (
	"context"
	"fmt"
	"log/slog"
	"os/exec"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dsrlb/dsrlb/internal/procrun"
)

// QueueSize is how many events may wait for the command.
const QueueSize = 256

// warnEvery bounds the warnings about dropped events.
const warnEvery = time.Minute

// maxOutput is how much of the command's output is kept for the log.
const maxOutput = 4096

// Event is one backend state change.
type Event struct {
	Service  string
	Server   string
	Address  string
	Old      string // up, drain or down; "" for a server new to lbd
	New      string
	Reason   string // why the server is not up; "" when it is
	Fallback bool   // a fallback: server
	Time     time.Time
}

// Env is the environment the command gets for e.
func (e Event) Env() []string {
	fb := "0"
	if e.Fallback {
		fb = "1"
	}
	return []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"DSRLB_SERVICE=" + e.Service,
		"DSRLB_SERVER=" + e.Server,
		"DSRLB_ADDRESS=" + e.Address,
		"DSRLB_OLD_STATE=" + e.Old,
		"DSRLB_NEW_STATE=" + e.New,
		"DSRLB_REASON=" + e.Reason,
		"DSRLB_FALLBACK=" + fb,
		"DSRLB_TIME=" + e.Time.UTC().Format(time.RFC3339Nano),
	}
}

// Command is what to run: an absolute path and a time bound.
type Command struct {
	Path    string
	Timeout time.Duration
}

// Notifier queues events and runs the command for each.
type Notifier struct {
	log     *slog.Logger
	q       chan Event
	cmd     atomic.Pointer[Command] // nil: events are not queued
	dropped atomic.Uint64
	ran     atomic.Uint64

	mu       sync.Mutex
	lastWarn time.Time

	cancel context.CancelFunc
	done   chan struct{}
}

// New starts a notifier with a queue of size events (QueueSize when <= 0);
// Close stops it.
func New(log *slog.Logger, size int) *Notifier {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if size <= 0 {
		size = QueueSize
	}
	ctx, cancel := context.WithCancel(context.Background())
	n := &Notifier{log: log, q: make(chan Event, size), cancel: cancel, done: make(chan struct{})}
	go n.work(ctx)
	return n
}

// Set makes c the command for the next events; nil turns notifications
// off (events already queued still run with the command they find). A
// nil Notifier ignores Set and Send.
func (n *Notifier) Set(c *Command) {
	if n == nil {
		return
	}
	if c == nil || c.Path == "" {
		n.cmd.Store(nil)
		return
	}
	cp := *c
	n.cmd.Store(&cp)
}

// Send queues e without blocking; it reports false when e was dropped
// (the queue is full) or no command is set.
func (n *Notifier) Send(e Event) bool {
	if n == nil || n.cmd.Load() == nil {
		return false
	}
	select {
	case n.q <- e:
		return true
	default:
	}
	total := n.dropped.Add(1)
	n.mu.Lock()
	warn := time.Since(n.lastWarn) >= warnEvery
	if warn {
		n.lastWarn = time.Now()
	}
	n.mu.Unlock()
	if warn {
		n.log.Warn("notify: queue full, state change not passed to the command; is it slow or hanging?",
			"service", e.Service, "server", e.Server, "new_state", e.New, "dropped_total", total, "queue", cap(n.q))
	}
	return false
}

// Dropped is the number of events dropped for a full queue.
func (n *Notifier) Dropped() uint64 { return n.dropped.Load() }

// Ran is the number of commands run (whatever their outcome).
func (n *Notifier) Ran() uint64 { return n.ran.Load() }

// Close stops the worker: the running command is killed, queued events are
// discarded.
func (n *Notifier) Close() {
	n.cancel()
	<-n.done
}

func (n *Notifier) work(ctx context.Context) {
	defer close(n.done)
	for {
		select {
		case <-ctx.Done():
			return
		case e := <-n.q:
			if c := n.cmd.Load(); c != nil {
				n.run(ctx, *c, e)
			}
		}
	}
}

// run runs c for e and logs a failure with the start of its output.
func (n *Notifier) run(ctx context.Context, c Command, e Event) {
	out, err := Run(ctx, c, e.Env())
	n.ran.Add(1)
	if err != nil {
		n.log.Warn("notify command failed", "command", c.Path, "service", e.Service, "server", e.Server,
			"old_state", e.Old, "new_state", e.New, "err", err, "output", out)
		return
	}
	n.log.Debug("notify command ran", "command", c.Path, "service", e.Service, "server", e.Server, "new_state", e.New)
}

// Run runs c once with env, in a process group of its own that is killed
// when c.Timeout passes (or ctx ends). It returns the first maxOutput
// bytes of its output and why the command failed.
func Run(ctx context.Context, c Command, env []string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	// A child that left the group but kept the output open must not hold
	// the worker: give up reading a second after the kill.
	out, err := procrun.Run(ctx, procrun.Cmd{Path: c.Path, Env: env, MaxOutput: maxOutput, WaitDelay: time.Second})
	switch {
	case err == nil:
		return out, nil
	case ctx.Err() == context.DeadlineExceeded:
		return out, fmt.Errorf("run %s: killed (with its process group) after the timeout of %s", c.Path, c.Timeout)
	}
	if ee, ok := err.(*exec.ExitError); ok {
		return out, fmt.Errorf("run %s: exit status %s", c.Path, strconv.Itoa(ee.ExitCode()))
	}
	return out, fmt.Errorf("run %s: %w", c.Path, err)
}
