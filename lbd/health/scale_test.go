package health

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/dsrlb/dsrlb/shared/config"
)

// TestThreeThousandChecksSpread: 3,000 targets started by one Update
// schedule their first checks spread over the interval, not in a burst:
// each tenth of the interval gets about a tenth of them. (The schedule is
// checked, not wall-clock arrivals, which a loaded machine would skew.)
func TestThreeThousandChecksSpread(t *testing.T) {
	const n, interval = 3000, time.Hour // never fires during the test
	ts := make([]Target, n)
	chk := config.Check{Type: config.CheckTCP, Interval: interval, Timeout: time.Second, Rise: 1, Fall: 1}
	for i := range ts {
		addr := netip.AddrPortFrom(netip.AddrFrom4([4]byte{192, 0, 2, byte(i%250 + 1)}), uint16(1000+i))
		ts[i] = Target{Key: fmt.Sprintf("s%d/b%d", i/3, i%3), Addr: addr, Check: chk, Initial: Up}
	}
	m := mustManager(t, Options{})
	mustUpdate(t, m, ts...)
	m.mu.Lock()
	var buckets [10]int
	started := 0
	for _, e := range m.entries {
		if e.c.first < 0 || e.c.first >= interval {
			t.Fatalf("first check of %s after %v, outside [0, %v)", e.t.Key, e.c.first, interval)
		}
		buckets[e.c.first*10/interval]++
		if e.c.cancel != nil {
			started++
		}
	}
	m.mu.Unlock()
	if started != n {
		t.Fatalf("%d of %d checkers started", started, n)
	}
	// A uniform spread puts 300 in each tenth (standard deviation ~16).
	for i, c := range buckets {
		if c < n/10*2/3 || c > n/10*4/3 {
			t.Fatalf("first checks per tenth of the interval %v: tenth %d has %d, want about %d", buckets, i, c, n/10)
		}
	}
	t.Logf("first checks per tenth of the interval: %v", buckets)
}
