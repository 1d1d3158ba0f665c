package daemon

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/dsrlb/dsrlb/shared/config"
)

// pings counts WATCHDOG=1 notifications.
func watchdogDaemon(period, stall time.Duration) (*Daemon, chan time.Time) {
	pings := make(chan time.Time, 1000)
	d := &Daemon{log: slog.New(slog.DiscardHandler), opts: Options{Watchdog: period, StallLimit: stall,
		Notify: func(s string) {
			if s == "WATCHDOG=1" {
				pings <- time.Now()
			}
		}}}
	return d, pings
}

func waitPings(t *testing.T, pings chan time.Time, n int, what string) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for i := 0; i < n; i++ {
		select {
		case <-pings:
		case <-deadline:
			t.Fatalf("%s: %d of %d watchdog pings within 10s", what, i, n)
		}
	}
}

// TestWatchdogLongStepKeepsPinging: a step of the loop longer than the
// watchdog period (reloading 1,000 services takes ~28 s against
// WatchdogSec=30s) does not starve the pings; a step past the stall limit
// stops them, so systemd kills a stuck lbd; and they resume once it ends.
func TestWatchdogLongStepKeepsPinging(t *testing.T) {
	const period = 40 * time.Millisecond
	d, pings := watchdogDaemon(period, 600*time.Millisecond)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go d.runWatchdog(ctx)
	waitPings(t, pings, 2, "idle loop")

	d.live.begin() // a step runs, several periods long
	began := time.Now()
	waitPings(t, pings, 6, "during a long step")
	if time.Since(began) < 2*period {
		t.Fatalf("pings arrived faster than the period: test cannot tell")
	}
	// Past the stall limit the pings must stop: wait for a silence of
	// 8 half-periods (bounded), after the limit has passed.
	deadline := time.Now().Add(10 * time.Second)
	for last := time.Now(); ; {
		select {
		case p := <-pings:
			if time.Now().After(deadline) {
				t.Fatal("pings never stopped for a step past the stall limit")
			}
			last = p
		case <-time.After(4 * period):
			if time.Since(began) > 600*time.Millisecond && time.Since(last) >= 4*period {
				goto stopped
			}
		}
	}
stopped:
	d.live.end()
	waitPings(t, pings, 2, "after the step ended")
}

func TestStatusLineCurrent(t *testing.T) {
	d := &Daemon{cfg: &config.Config{Services: []config.Service{{Name: "web", Servers: []config.Server{{Name: "a"}, {Name: "b"}}}}},
		out: why{"web/b": "tcp connect refused"}}
	var sent []string
	d.opts.Notify = func(s string) { sent = append(sent, s) }
	d.recordReload(errors.New("t.yaml:3: bad"))
	d.publishStatus()
	d.publishStatus() // unchanged: not sent again
	if len(sent) != 1 || !strings.HasPrefix(sent[0], "STATUS=1 services, 2 servers, 1 out of rotation (web/b); last reload rejected at ") {
		t.Fatalf("sent %q", sent)
	}
	d.out = why{}
	d.recordReload(nil)
	d.publishStatus()
	if len(sent) != 2 || !strings.Contains(sent[1], "0 out of rotation; last reload ok at ") {
		t.Errorf("after recovery sent %q", sent)
	}
}
