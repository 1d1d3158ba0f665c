package daemon

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/dsrlb/dsrlb/internal/nettest"
	"github.com/dsrlb/dsrlb/lbd/datapath"
	"github.com/dsrlb/dsrlb/lbd/health"
	"github.com/dsrlb/dsrlb/shared/config"
)

// Control-plane costs (BENCHMARKS.md, "Control plane"). They load the real
// data plane, so they need root; they run only with -bench (scripts/bench.sh
// runs them with -benchtime=3x). No packet is sent: addresses are keys in
// maps only. Backends are IPv6 (2001:db8::/32) so that 10,000 distinct
// documentation addresses exist; the map layout is the same for both
// families.

// benchShapes are the (services, backends per service) shapes measured:
// 10 / 1,000 / 10,000 backends in one service, 1 / 100 / 1,000 services of
// 10 backends. Larger products exceed the data plane's default backend ids
// (datapath.DefaultMaxBackends, 65,536), which lbd uses.
var benchShapes = [][2]int{{1, 10}, {1, 1000}, {1, 10000}, {100, 10}, {1000, 10}}

// benchConfig renders a configuration of nsvc services of nbe servers each,
// every server with a static MAC (no neighbour resolution). weightBump
// services (the first ones) get weight 2 on their first server: two
// configurations differing by it make a reload that changes that many
// services.
func benchConfig(nsvc, nbe, weightBump int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "balancer:\n  interface: eth0\n  maglev_table_size: %d\n  metrics: {listen: \"\"}\nservices:\n", tableSize(nbe))
	for i := range nsvc {
		fmt.Fprintf(&b, "  - name: s%d\n    vip: 2001:db8:ffff::%x\n    ports: [80]\n    check: {type: none}\n    servers:\n", i, i+1)
		for j := range nbe {
			w := 1
			if j == 0 && i < weightBump {
				w = 2
			}
			fmt.Fprintf(&b, "      - {name: b%d, address: \"2001:db8:%x::%x\", mac: \"02:00:00:00:%02x:%02x\", weight: %d}\n", j, j/256+1, j%256+1, j>>8&0xff, j&0xff, w)
		}
	}
	return b.String()
}

// tableSize is the least prime of at least the default and of
// config.MaglevSlotsPerServer slots per server.
func tableSize(backends int) uint32 {
	n := uint32(max(config.DefaultMaglevTableSize, config.MaglevSlotsPerServer*backends))
	for !prime(n) {
		n++
	}
	return n
}

func prime(n uint32) bool {
	for d := uint32(2); d*d <= n; d++ {
		if n%d == 0 {
			return false
		}
	}
	return n > 1
}

// needRoot: control-plane benchmarks load the eBPF data plane (run them
// as root, scripts/bench.sh).
func needRoot(b *testing.B) { b.Helper(); nettest.RequireBPF(b) }

var benchSeq atomic.Int32

// benchPinPath is a unique bpffs directory, removed at the end of b.
func benchPinPath(b *testing.B) string {
	return nettest.PinPath(b, fmt.Sprintf("dsrlb-bench-%d-%d-", os.Getpid(), benchSeq.Add(1)))
}

// toServices is what the daemon does between reading a file and Apply:
// parse, validate, then the desired state with every server healthy.
func toServices(b *testing.B, text string) (*config.Config, []datapath.Service) {
	return toServicesWith(b, config.Parse, text)
}

// toServicesWith parses with parse: a config.Loader's, as lbd's reloads.
func toServicesWith(b *testing.B, parse func(string, []byte) (*config.Config, error), text string) (*config.Config, []datapath.Service) {
	cfg, err := parse("bench.yaml", []byte(text))
	if err != nil {
		b.Fatalf("parse: %v", err)
	}
	obs := observed{health: map[string]health.State{}, macs: map[netip.Addr]net.HardwareAddr{}}
	for _, s := range cfg.Services {
		for _, srv := range s.Servers {
			obs.health[health.Key(s.Name, srv.Name)] = health.Up
		}
	}
	svcs, _ := desired(cfg, obs)
	return cfg, svcs
}

func openLike(b *testing.B, cfg *config.Config, pin string) *datapath.Datapath {
	b.Helper()
	opts := DataplaneOptions(cfg.Balancer)
	opts.Interface, opts.PinPath = "", pin
	opts.InterfaceMAC = net.HardwareAddr{0x02, 0, 0, 0, 0, 1} // no interface: nothing is attached
	d, err := datapath.Open(opts, nil)
	if err != nil {
		b.Fatalf("open data plane: %v", err)
	}
	return d
}

// BenchmarkProgramTables: from configuration text to programmed maps, as
// lbd starting on a clean host: parse + validate + desired state, load the
// program and create (pin) its maps, Apply every service. ns/op is the
// total; parse-ms, open-ms and apply-ms split it.
func BenchmarkProgramTables(b *testing.B) {
	needRoot(b)
	for _, sh := range benchShapes {
		nsvc, nbe := sh[0], sh[1]
		b.Run(fmt.Sprintf("services=%d/backends=%d", nsvc, nbe), func(b *testing.B) {
			text := benchConfig(nsvc, nbe, 0)
			var parse, open, apply time.Duration
			for b.Loop() {
				pin := benchPinPath(b)
				t0 := time.Now()
				cfg, svcs := toServices(b, text)
				t1 := time.Now()
				d := openLike(b, cfg, pin)
				t2 := time.Now()
				if err := d.Apply(svcs); err != nil {
					b.Fatalf("apply: %v", err)
				}
				t3 := time.Now()
				parse, open, apply = parse+t1.Sub(t0), open+t2.Sub(t1), apply+t3.Sub(t2)
				b.StopTimer()
				if err := d.Remove(); err != nil {
					b.Fatalf("remove: %v", err)
				}
				b.StartTimer()
			}
			n := float64(b.N) * 1e6
			b.ReportMetric(float64(parse.Nanoseconds())/n, "parse-ms")
			b.ReportMetric(float64(open.Nanoseconds())/n, "open-ms")
			b.ReportMetric(float64(apply.Nanoseconds())/n, "apply-ms")
		})
	}
}

// BenchmarkReload: a reload as lbd does it on SIGHUP (parse + validate +
// desired state + Apply to the running data plane) where the first
// server's weight of one service, or of every service, changed. The file
// is read by a config.Loader, as lbd does, which parses again only the
// services whose text changed; Apply rebuilds only the tables whose
// population changed.
func BenchmarkReload(b *testing.B) {
	needRoot(b)
	for _, sh := range benchShapes {
		nsvc, nbe := sh[0], sh[1]
		variants := []struct {
			name    string
			changed int
		}{{"one_service", 1}}
		if nsvc > 1 {
			variants = append(variants, struct {
				name    string
				changed int
			}{"every_service", nsvc})
		}
		for _, v := range variants {
			changed := v.changed
			b.Run(fmt.Sprintf("services=%d/backends=%d/%s", nsvc, nbe, v.name), func(b *testing.B) {
				texts := [2]string{benchConfig(nsvc, nbe, 0), benchConfig(nsvc, nbe, changed)}
				loader := new(config.Loader)
				cfg, svcs := toServicesWith(b, loader.Parse, texts[0])
				d := openLike(b, cfg, benchPinPath(b))
				b.Cleanup(func() { _ = d.Remove() })
				if err := d.Apply(svcs); err != nil {
					b.Fatalf("apply: %v", err)
				}
				i := 0
				for b.Loop() {
					i++
					_, svcs := toServicesWith(b, loader.Parse, texts[i%2])
					if err := d.Apply(svcs); err != nil {
						b.Fatalf("reload apply: %v", err)
					}
				}
			})
		}
	}
}

// BenchmarkConntrackMemory reports the kernel memory of the conntrack map
// per million entries: the map's memlock as the kernel accounts it
// (fdinfo, htab_map_mem_usage), and the same computed from its key and
// value sizes for a preallocated LRU hash: per entry sizeof(struct
// htab_elem) (48 B on x86-64) + key and value rounded up to 8, plus one
// 16 B bucket per power-of-two slot. It measures nothing per op: run it
// with -benchtime=1x.
func BenchmarkConntrackMemory(b *testing.B) {
	needRoot(b)
	for _, entries := range []uint32{1 << 20, 1 << 22} {
		b.Run(fmt.Sprintf("entries=%d", entries), func(b *testing.B) {
			cfg, _ := toServices(b, benchConfig(1, 10, 0))
			cfg.Balancer.Conntrack.Size = entries
			pin := benchPinPath(b)
			d := openLike(b, cfg, pin)
			b.Cleanup(func() { _ = d.Remove() })
			m, err := ebpf.LoadPinnedMap(filepath.Join(pin, "lb_conntrack"), nil)
			if err != nil {
				b.Fatalf("load pinned conntrack map: %v", err)
			}
			defer m.Close()
			info, err := m.Info()
			if err != nil {
				b.Fatal(err)
			}
			memlock, ok := info.Memlock()
			if !ok {
				b.Fatal("the kernel reports no memlock for the conntrack map")
			}
			for b.Loop() {
			}
			round8 := func(n uint32) uint64 { return (uint64(n) + 7) &^ 7 }
			buckets := uint64(1)
			for buckets < uint64(info.MaxEntries) {
				buckets <<= 1
			}
			computed := uint64(info.MaxEntries)*(48+round8(info.KeySize)+round8(info.ValueSize)) + 16*buckets
			perM := func(bytes uint64) float64 { return float64(bytes) / float64(info.MaxEntries) * 1e6 / (1 << 20) }
			b.Logf("%v max_entries=%d key=%d B value=%d B memlock=%d B computed=%d B", info.Type, info.MaxEntries, info.KeySize, info.ValueSize, memlock, computed)
			b.ReportMetric(perM(memlock), "memlock-MiB/Mentries")
			b.ReportMetric(perM(computed), "computed-MiB/Mentries")
			b.ReportMetric(float64(memlock)/float64(info.MaxEntries), "memlock-B/entry")
		})
	}
}

// BenchmarkReloadChecks: the daemon's health-check bookkeeping of a reload
// (targets, health.Manager.Update, observed states), which runs for every
// server of the file whatever changed. No root needed: checks of type
// none run no prober.
func BenchmarkReloadChecks(b *testing.B) {
	for _, sh := range [][2]int{{1000, 3}, {100, 100}} {
		nsvc, nbe := sh[0], sh[1]
		b.Run(fmt.Sprintf("services=%d/backends=%d/one_service", nsvc, nbe), func(b *testing.B) {
			var cfgs [2]*config.Config
			for i := range cfgs {
				var err error
				if cfgs[i], err = config.Parse("bench.yaml", []byte(benchConfig(nsvc, nbe, i))); err != nil {
					b.Fatal(err)
				}
			}
			d := &Daemon{cfg: cfgs[0], obs: observed{health: map[string]health.State{}}}
			d.checks = health.New(b.Context(), health.Options{OnChange: d.onHealth})
			b.Cleanup(d.checks.Close)
			d.dirty = make(chan struct{}, 1)
			if err := d.updateChecks(cfgs[0], cfgs[0]); err != nil {
				b.Fatal(err)
			}
			i := 0
			b.ReportAllocs()
			for b.Loop() {
				i++
				prev, next := cfgs[(i+1)%2], cfgs[i%2]
				d.cfg = next
				if err := d.updateChecks(prev, next); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
