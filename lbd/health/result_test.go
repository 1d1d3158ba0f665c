package health

import (
	"sync"
	"testing"

	"github.com/dsrlb/dsrlb/shared/config"
)

// TestOnResultSeesEveryCheck: OnResult gets every result, successes and
// failures, with the time the check took (the check duration histogram).
func TestOnResultSeesEveryCheck(t *testing.T) {
	srv := mustTCPServer(t, "127.0.0.1:0")
	var mu sync.Mutex
	got := map[string][]Result{}
	m := mustManager(t, Options{OnResult: func(tg Target, r Result) {
		mu.Lock()
		got[tg.Key] = append(got[tg.Key], r)
		mu.Unlock()
	}})
	up := Target{Key: "svc/up", Addr: srv.addrPort(), Check: check(config.CheckTCP, 1, 1)}
	gone := mustTCPServer(t, "127.0.0.1:0")
	gone.stop() // a port nobody listens on: connection refused
	down := Target{Key: "svc/down", Addr: gone.addrPort(), Check: check(config.CheckTCP, 1, 1)}
	mustUpdate(t, m, up, down)
	waitChecks(t, m, "svc/up", 2)
	waitChecks(t, m, "svc/down", 2)
	mu.Lock()
	defer mu.Unlock()
	if len(got["svc/up"]) < 2 || len(got["svc/down"]) < 2 {
		t.Fatalf("results seen: up %d, down %d; want at least 2 each", len(got["svc/up"]), len(got["svc/down"]))
	}
	for _, r := range got["svc/up"] {
		if !r.OK() || r.Duration <= 0 {
			t.Errorf("up result %+v: want success with a duration", r)
		}
	}
	for _, r := range got["svc/down"] {
		if r.OK() {
			t.Errorf("down result %+v: want a failure", r)
		}
	}
}
