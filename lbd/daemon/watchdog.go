package daemon

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync/atomic"
	"time"
)

// DefaultStallLimit is how long one step of the loop (an apply, a reload)
// may run before lbd counts as stuck and stops the watchdog pings. It is
// far above any real step (reloading 1,000 services takes ~30 s here), so
// a long reload is never killed, while a deadlocked loop is, by systemd,
// after this plus WatchdogSec.
const DefaultStallLimit = 5 * time.Minute

// liveness is the loop's heartbeat, read by the watchdog goroutine: the
// time the current step began, 0 while the loop waits for work.
type liveness struct {
	busySince atomic.Int64 // unix nanoseconds
}

func (l *liveness) begin() { l.busySince.Store(time.Now().UnixNano()) }
func (l *liveness) end()   { l.busySince.Store(0) }

// stalled returns how long the current step has run, 0 when idle.
func (l *liveness) stalled(now time.Time) time.Duration {
	since := l.busySince.Load()
	if since == 0 {
		return 0
	}
	return now.Sub(time.Unix(0, since))
}

// runWatchdog pings systemd every half period from its own goroutine, so
// a long step of the loop never starves the pings, for as long as the
// loop is alive: waiting for work, or in a step younger than the stall
// limit. A step older than that stops the pings and systemd kills lbd.
func (d *Daemon) runWatchdog(ctx context.Context) {
	if d.opts.Watchdog <= 0 {
		return
	}
	limit := d.opts.StallLimit
	if limit <= 0 {
		limit = DefaultStallLimit
	}
	t := time.NewTicker(d.opts.Watchdog / 2)
	defer t.Stop()
	var warned, stuck bool
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			busy := d.live.stalled(now)
			switch {
			case busy > limit:
				if !stuck {
					d.log.Error("lbd's loop is stuck in one step: watchdog pings stopped, systemd will kill lbd", "step_running", busy.Round(time.Second), "stall_limit", limit)
					stuck = true
				}
				continue
			case busy > d.opts.Watchdog && !warned:
				d.log.Warn("a step of lbd's loop runs long; watchdog pings continue", "step_running", busy.Round(time.Second), "stall_limit", limit)
				warned = true
			case busy == 0:
				warned, stuck = false, false
			}
			d.opts.Notify("WATCHDOG=1")
		}
	}
}

// publishStatus sends STATUS= when it changed, so `systemctl status lbd`
// shows the backends out of rotation now, not at start.
func (d *Daemon) publishStatus() {
	line := d.statusLine()
	if old, _ := d.status.Load().(string); old == line {
		return
	}
	d.status.Store(line)
	d.opts.Notify("STATUS=" + line)
}

// statusLine is the one-line state for STATUS= and `control status`. It
// reads d.out, which only the loop (and start, before it) writes.
func (d *Daemon) statusLine() string {
	d.mu.Lock()
	n := 0
	for _, s := range d.cfg.Services {
		n += len(s.Servers)
	}
	svcs := len(d.cfg.Services)
	d.mu.Unlock()
	var b strings.Builder
	fmt.Fprintf(&b, "%d services, %d servers, %d out of rotation", svcs, n, len(d.out))
	if len(d.out) > 0 {
		keys := slices.Sorted(maps.Keys(d.out))
		if len(keys) > 3 {
			keys = append(keys[:3], "…")
		}
		fmt.Fprintf(&b, " (%s)", strings.Join(keys, ", "))
	}
	if r, _ := d.lastReload.Load().(string); r != "" {
		b.WriteString("; last reload " + r)
	}
	return b.String()
}

// recordReload keeps the last reload's outcome for the status line.
func (d *Daemon) recordReload(err error) {
	at := d.host().now().Format("15:04:05")
	if err != nil {
		d.lastReload.Store("rejected at " + at + " (running configuration kept; see the log)")
		return
	}
	d.lastReload.Store("ok at " + at)
}
