package health

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"
)

// counter applies the rise/fall rule: an up backend goes down after `fall`
// consecutive failures, a down one comes up after `rise` consecutive
// successes. A result agreeing with the state clears the opposite run.
type counter struct {
	state    State
	ok, fail int // current runs of successes and failures
}

// observe records one result and reports whether the state changed.
func (c *counter) observe(ok bool, rise, fall int) bool {
	if ok {
		c.ok, c.fail = c.ok+1, 0
		if c.state == Down && c.ok >= rise {
			c.state, c.ok = Up, 0
			return true
		}
		return false
	}
	c.fail, c.ok = c.fail+1, 0
	if c.state == Up && c.fail >= fall {
		c.state, c.fail = Down, 0
		return true
	}
	return false
}

// jitterDivisor bounds per-interval jitter to ±interval/jitterDivisor.
const jitterDivisor = 10

// firstDelay spreads the first checks of many targets over one interval.
func firstDelay(interval time.Duration, r *rand.Rand) time.Duration {
	if interval <= 0 {
		return 0
	}
	return time.Duration(r.Int64N(int64(interval)))
}

// nextDelay is interval ± interval/jitterDivisor, so checkers started
// together drift apart instead of probing in lockstep.
func nextDelay(interval time.Duration, r *rand.Rand) time.Duration {
	j := int64(interval / jitterDivisor)
	if j <= 0 {
		return interval
	}
	return interval + time.Duration(r.Int64N(2*j+1)-j)
}

// checker runs the checks of one target until its context ends.
type checker struct {
	t      Target
	probe  prober
	log    *slog.Logger
	notify func(ctx context.Context, t Target, s State, reason string)
	// onResult, when set, sees every result (Options.OnResult).
	onResult func(Target, Result)
	rnd      *rand.Rand
	lim      logLimiter

	cancel context.CancelFunc
	done   chan struct{}
	first  time.Duration // delay of the first check after start

	mu  sync.Mutex // guards st and cnt, read by Status
	st  Status
	cnt counter
}

func newChecker(t Target, initial State, p prober, log *slog.Logger, every time.Duration,
	notify func(context.Context, Target, State, string)) *checker {
	now := time.Now()
	c := &checker{
		t:      t,
		probe:  p,
		log:    log.With("backend", t.Key, "addr", t.Addr.String()),
		notify: notify,
		rnd:    rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64())),
		lim:    logLimiter{every: every},
		done:   make(chan struct{}),
		st:     Status{Target: t, State: initial, Since: now},
		cnt:    counter{state: initial},
	}
	c.first = firstDelay(t.Check.Interval, c.rnd)
	return c
}

// start runs the checker on its own goroutine, tracked by wg.
func (c *checker) start(ctx context.Context, wg *sync.WaitGroup) {
	ctx, c.cancel = context.WithCancel(ctx)
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(c.done)
		c.run(ctx)
	}()
}

// stop ends the checker and waits for its goroutine: once stop returns,
// the checker sends no more events.
func (c *checker) stop() {
	c.cancel()
	<-c.done
}

func (c *checker) run(ctx context.Context) {
	timer := time.NewTimer(c.first)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		start := time.Now()
		res := c.once(ctx)
		if ctx.Err() != nil {
			return // a cancelled check says nothing about the backend
		}
		c.record(ctx, res)
		// Schedule from the start of this check, so a slow check does
		// not stretch the interval.
		timer.Reset(max(0, time.Until(start.Add(nextDelay(c.t.Check.Interval, c.rnd)))))
	}
}

// once runs one check bounded by the check timeout.
func (c *checker) once(ctx context.Context) Result {
	ctx, cancel := context.WithTimeout(ctx, c.t.Check.Timeout)
	defer cancel()
	start := time.Now()
	err := c.probe.probe(ctx)
	return Result{At: start, Duration: time.Since(start), Err: err}
}

// record applies a result, and on a transition notifies and logs.
func (c *checker) record(ctx context.Context, res Result) {
	if c.onResult != nil {
		c.onResult(c.t, res)
	}
	c.mu.Lock()
	c.st.Last = res
	c.st.Checks++
	if !res.OK() {
		c.st.Failures++
	}
	ok, fail := c.cnt.ok, c.cnt.fail
	changed := c.cnt.observe(res.OK(), c.t.Check.Rise, c.t.Check.Fall)
	state := c.cnt.state
	if changed {
		c.st.State, c.st.Since = state, res.At
		c.st.Transitions++
	}
	c.mu.Unlock()

	if !changed {
		c.logSummary(res.At)
		return
	}
	reason := c.reason(res, ok, fail)
	c.notify(ctx, c.t, state, reason)
	c.logChange(res.At, state, reason)
}

// reason explains a transition in words an operator can act on.
func (c *checker) reason(res Result, okBefore, failBefore int) string {
	if res.OK() {
		return fmt.Sprintf("%d consecutive successful %s checks", okBefore+1, c.t.Check.Type)
	}
	return fmt.Sprintf("%d consecutive failed %s checks, last: %v", failBefore+1, c.t.Check.Type, res.Err)
}

func (c *checker) logChange(now time.Time, s State, reason string) {
	ok, suppressed := c.lim.allow(now)
	if !ok {
		return
	}
	lvl := slog.LevelInfo
	if s == Down {
		lvl = slog.LevelWarn
	}
	args := []any{"state", s.String(), "reason", reason}
	if suppressed > 0 {
		args = append(args, "suppressed_transitions", suppressed)
	}
	c.log.Log(context.Background(), lvl, "backend "+s.String(), args...)
}

// logSummary reports the state a flapping backend settled in once the
// log window that suppressed its transitions has passed.
func (c *checker) logSummary(now time.Time) {
	suppressed, ok := c.lim.flush(now)
	if !ok {
		return
	}
	c.mu.Lock()
	s := c.st.State
	c.mu.Unlock()
	c.log.Warn("backend flapping", "state", s.String(), "suppressed_transitions", suppressed)
}

func (c *checker) status() Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.st
}

// logLimiter allows one transition log line per backend per `every`,
// counting what it held back. It limits logs only, never events.
type logLimiter struct {
	every      time.Duration
	last       time.Time
	suppressed int
}

// allow reports whether a transition at now may be logged, and how many
// transitions were suppressed before it.
func (l *logLimiter) allow(now time.Time) (bool, int) {
	if !l.last.IsZero() && now.Sub(l.last) < l.every {
		l.suppressed++
		return false, 0
	}
	n := l.suppressed
	l.last, l.suppressed = now, 0
	return true, n
}

// flush reports held-back transitions once the window has passed, so the
// final state of a flapping backend is always logged.
func (l *logLimiter) flush(now time.Time) (int, bool) {
	if l.suppressed == 0 || now.Sub(l.last) < l.every {
		return 0, false
	}
	n := l.suppressed
	l.last, l.suppressed = now, 0
	return n, true
}
