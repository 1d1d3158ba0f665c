package daemon

import (
	"context"
	"encoding/json"
	"net/netip"
	"testing"
	"time"

	"github.com/dsrlb/dsrlb/lbd/control"
	"github.com/dsrlb/dsrlb/lbd/datapath"
	"github.com/dsrlb/dsrlb/lbd/statusjson"
	"github.com/dsrlb/dsrlb/shared/config"
)

// TestLiveStateSince: the control socket's live answer carries since when
// each backend is in its state; the time moves only when the state or its
// reason changes. Without a guard it says the guard is not running, and
// why.
func TestLiveStateSince(t *testing.T) {
	d := &Daemon{cfg: &config.Config{Balancer: config.Balancer{VIPOwner: config.VIPOwnerLBD}}}
	d.guard.err = "start ARP guard on eth0: operation not permitted"
	svc := func(st datapath.State) []datapath.Service {
		return []datapath.Service{{Name: "web", VIP: netip.MustParseAddr("192.0.2.10"), Backends: []datapath.Backend{{Name: "web1", State: st}}}}
	}
	ask := func() statusjson.Live {
		t.Helper()
		resp := d.handleControl(context.Background(), control.Request{Command: control.CmdLive})
		var l statusjson.Live
		if err := json.Unmarshal(resp.Data, &l); err != nil || !resp.OK {
			t.Fatalf("live answer %+v: %v", resp, err)
		}
		if len(l.Backends) != 1 || l.Backends[0].StateSince == nil {
			t.Fatalf("live backends %+v, want web/web1 with a time", l.Backends)
		}
		return l
	}
	d.noteStates(svc(datapath.Down), why{"web/web1": "health check failing"})
	first := ask()
	if b := first.Backends[0]; b.State != "down" || b.StateReason != "health check failing" {
		t.Errorf("backend %+v, want down: health check failing", b)
	}
	if g := first.ARPGuard; g == nil || g.Running || g.Note == "" || g.Mode != "lbd" {
		t.Errorf("ARP guard %+v, want not running with its reason, mode lbd", g)
	}
	time.Sleep(5 * time.Millisecond) // two marks must differ in time
	d.noteStates(svc(datapath.Down), why{"web/web1": "health check failing"})
	if again := ask(); !again.Backends[0].StateSince.Equal(*first.Backends[0].StateSince) {
		t.Errorf("state unchanged but since moved: %s -> %s", first.Backends[0].StateSince, again.Backends[0].StateSince)
	}
	d.noteStates(svc(datapath.Up), why{})
	if up := ask(); up.Backends[0].State != "up" || !up.Backends[0].StateSince.After(*first.Backends[0].StateSince) {
		t.Errorf("after going up: %+v, want up since later than %s", up.Backends[0], first.Backends[0].StateSince)
	}
}
