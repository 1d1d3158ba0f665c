package health

import (
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/dsrlb/dsrlb/shared/config"
)

// TestThreeThousandChecksSpread: 3,000 targets started by one Update make
// their first checks spread over the interval, not in a burst: each tenth
// of the interval sees about a tenth of them.
func TestThreeThousandChecksSpread(t *testing.T) {
	const n, interval = 3000, 2 * time.Second
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var accepted []time.Time
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			accepted = append(accepted, time.Now())
			mu.Unlock()
			_ = c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	addr := ln.Addr().(*net.TCPAddr).AddrPort()
	ts := make([]Target, n)
	chk := config.Check{Type: config.CheckTCP, Interval: interval, Timeout: time.Second, Rise: 1, Fall: 1}
	for i := range ts {
		ts[i] = Target{Key: fmt.Sprintf("s%d/b%d", i/3, i%3), Addr: addr, Check: chk, Initial: Up}
	}
	m := mustManager(t, Options{})
	start := time.Now()
	mustUpdate(t, m, ts...)
	// Wait for the first round (bounded): every target checked once.
	for deadline := start.Add(interval + 5*time.Second); ; time.Sleep(50 * time.Millisecond) {
		mu.Lock()
		got := len(accepted)
		mu.Unlock()
		if got >= n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d first checks within %v", got, n, interval+5*time.Second)
		}
	}
	m.Close()
	mu.Lock()
	defer mu.Unlock()
	var buckets [10]int
	for _, at := range accepted {
		if d := at.Sub(start); d < interval {
			buckets[d*10/interval]++
		}
	}
	// A uniform spread puts 300 in each tenth (standard deviation ~16);
	// a burst would put most in the first.
	for i, c := range buckets {
		if c < n/10/2 || c > n/10*2 {
			t.Fatalf("first checks per tenth of the interval %v: tenth %d has %d, want about %d", buckets, i, c, n/10)
		}
	}
	t.Logf("first checks per tenth of %v: %v", interval, buckets)
}
