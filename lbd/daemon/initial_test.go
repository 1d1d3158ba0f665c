package daemon

import (
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"github.com/dsrlb/dsrlb/lbd/health"
)

func newTestDaemon(t *testing.T, yaml string) *Daemon {
	d := &Daemon{cfg: mustParse(t, yaml), dirty: make(chan struct{}, 1),
		obs: observed{health: map[string]health.State{}, macs: map[netip.Addr]net.HardwareAddr{}}}
	return d
}

// TestInitialFromAddressChange: a server keeping its name but changing
// address starts Down; one keeping its address keeps its observed state.
func TestInitialFromAddressChange(t *testing.T) {
	d := newTestDaemon(t, twoServers)
	d.obs.health["web/a"], d.obs.health["web/d"] = health.Up, health.Up
	next := mustParse(t, strings.Replace(twoServers, "{name: d, address: 192.0.2.14}", "{name: d, address: 192.0.2.24}", 1))
	ts := healthTargets(next, d.initialFrom(d.cfg))
	got := map[string]health.State{}
	for _, tg := range ts {
		got[tg.Key] = tg.Initial
	}
	if got["web/a"] != health.Up || got["web/d"] != health.Down {
		t.Errorf("initial states %v: want a up (same address), d down (new address)", got)
	}
}

// TestInitialFromConcurrentHealth: health events land while a reload
// computes initial states (run with -race: this was a data race that
// could abort lbd on a concurrent map read and write).
func TestInitialFromConcurrentHealth(t *testing.T) {
	d := newTestDaemon(t, twoServers)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for i := 0; i < 2000; i++ {
			d.onHealth(health.Target{Key: "web/a"}, health.State(i%2), "")
		}
	}()
	go func() {
		defer wg.Done()
		for i := 0; i < 200; i++ {
			healthTargets(d.cfg, d.initialFrom(d.cfg))
		}
	}()
	wg.Wait()
}
