package datapath

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/dsrlb/dsrlb/lbd/maglev"
)

// benchTableSize is the least prime of at least 10 slots per backend (the
// config's rule), and at least the config's minimum.
func benchTableSize(backends int) uint32 {
	n := uint32(max(251, 10*backends))
	for !maglev.IsPrime(n) {
		n++
	}
	return n
}

// benchServices returns n services of backends each on 192.0.2.x,
// 198.51.100.x and 203.0.113.x, port 80 (81 past 750 services); service 0
// (192.0.2.1:80, the one measured) uses sched.
func benchServices(n, backends int, sched Scheduler) []Service {
	svcs := make([]Service, n)
	for i := range svcs {
		r := i % 750 / 250 // 250 VIPs in each documentation range, then more ports
		vip := netip.AddrFrom4([4]byte{[]byte{192, 198, 203}[r], []byte{0, 51, 0}[r], []byte{2, 100, 113}[r], byte(i%250 + 1)})
		bes := make([]Backend, backends)
		for j := range bes {
			a := netip.AddrFrom4([4]byte{10, byte(j >> 8), byte(j), byte(i)}) // backends are never matched as VIPs
			bes[j] = Backend{Name: fmt.Sprint(j), Addr: a, MAC: beMAC(j), Weight: 1, State: Up}
		}
		svcs[i] = Service{Name: fmt.Sprint("s", i), VIP: vip, Proto: TCP, Ports: []uint16{uint16(80 + i/750)}, Scheduler: Maglev, Backends: bes}
	}
	svcs[0].Scheduler = sched
	return svcs
}

// BenchmarkPacket measures the program's cost per packet with
// BPF_PROG_TEST_RUN: ns/pkt is the kernel-measured run time.
func BenchmarkPacket(b *testing.B) {
	for _, nsvc := range []int{1, 100, 1000} {
		for _, nbe := range []int{2, 100, 10000} {
			if nsvc*nbe > 1_000_000 {
				continue // 10M backend slots: beyond the config's bounds (MaxServers 10,000)
			}
			b.Run(fmt.Sprintf("services=%d/backends=%d", nsvc, nbe), func(b *testing.B) {
				benchPackets(b, nsvc, nbe)
			})
		}
	}
}

func benchPackets(b *testing.B, nsvc, nbe int) {
	size := benchTableSize(nbe)
	d := mustOpen(b, Options{MaglevTableSize: size, ConntrackSize: 1 << 20,
		MaxServices: uint32(nsvc), MaxBackends: uint32(nsvc*nbe + 1), MaxServiceKeys: uint32(nsvc)})
	mustApply(b, d, benchServices(nsvc, nbe, Maglev)...)
	vip := benchServices(1, 1, Maglev)[0].VIP
	syn := pkt{src: ap("198.51.100.1:40000"), dst: netip.AddrPortFrom(vip, 80), proto: TCP, syn: true}
	ack := syn
	ack.syn, ack.ack = false, true

	b.Run("conntrack_hit", func(b *testing.B) {
		run(b, d, build(b, syn))
		repeat(b, d, build(b, ack))
	})
	for _, sched := range []Scheduler{Maglev, RoundRobin, Source} {
		b.Run("new_flow_"+sched.String(), func(b *testing.B) {
			svcs := benchServices(nsvc, nbe, sched)
			mustApply(b, d, svcs...)
			newFlows(b, d, build(b, syn))
		})
	}
	b.Run("new_flow_warm_maglev", func(b *testing.B) {
		mustApply(b, d, benchServices(nsvc, nbe, Maglev)...)
		setTCPTimeout(b, d, 0) // every entry expires at once: each SYN is rescheduled
		defer setTCPTimeout(b, d, uint64(d.opts.TCPTimeout))
		run(b, d, build(b, syn))
		repeat(b, d, build(b, syn))
	})
	b.Run("untracked_ack_maglev", func(b *testing.B) {
		repeat(b, d, build(b, pkt{src: ap("198.51.100.2:40000"), dst: syn.dst, proto: TCP, ack: true}))
	})
	b.Run("pass_non_vip", func(b *testing.B) {
		repeat(b, d, build(b, pkt{src: syn.src, dst: ap("192.0.2.255:80"), proto: TCP, syn: true}))
	})
	b.Run("pass_malformed", func(b *testing.B) {
		repeat(b, d, build(b, pkt{src: syn.src, dst: syn.dst, proto: TCP, syn: true, vlan: 5})[:18+12])
	})
}

// repeat runs one frame b.N times inside the kernel.
func repeat(b *testing.B, d *Datapath, frame []byte) {
	_, per, err := d.Program().Benchmark(frame, b.N, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(per.Nanoseconds()), "ns/pkt")
}

// newFlows sends b.N SYNs of distinct flows (source address and port
// patched in place), one test run each, summing the kernel-measured time.
func newFlows(b *testing.B, d *Datapath, frame []byte) {
	rng := rand.New(rand.NewPCG(9, 9))
	var total time.Duration
	for range b.N {
		binary.BigEndian.PutUint32(frame[14+12:], rng.Uint32())         // IPv4 source
		binary.BigEndian.PutUint16(frame[14+20:], uint16(rng.Uint32())) // TCP source port
		ret, per, err := d.Program().Benchmark(frame, 1, nil)
		if err != nil || ret != VerdictRedirect {
			b.Fatalf("new flow: verdict %d, %v", int32(ret), err)
		}
		total += per
	}
	b.ReportMetric(float64(total.Nanoseconds())/float64(b.N), "ns/pkt")
}

// BenchmarkMaglevBuild measures building a service's Maglev table.
func BenchmarkMaglevBuild(b *testing.B) {
	for _, n := range []int{100, 1000, 10000} {
		size := max(benchTableSize(n), 65537)
		pop := make([]maglev.Backend, n)
		for i := range pop {
			pop[i] = maglev.Backend{Key: fmt.Sprintf("10.0.%d.%d", i/256, i%256), Weight: 1 + uint32(i%10)}
		}
		b.Run(fmt.Sprintf("backends=%d/size=%d", n, size), func(b *testing.B) {
			for b.Loop() {
				if _, err := maglev.Build(pop, size); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// setTCPTimeout rewrites the TCP idle timeouts in lb_cfg: established
// entries get ns, the others min(ns, Options.TCPClosingTimeout).
func setTCPTimeout(b *testing.B, d *Datapath, ns uint64) {
	var cfg bpfLbConfig
	if err := d.objs.LbCfg.Lookup(uint32(0), &cfg); err != nil {
		b.Fatal(err)
	}
	cfg.TcpTimeoutNs = ns
	cfg.TcpClosingTimeoutNs = min(ns, uint64(d.opts.TCPClosingTimeout))
	if err := d.objs.LbCfg.Put(uint32(0), &cfg); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkApply measures Apply of nsvc services of nbe backends: from
// nothing (every table created and switched) and a change of every
// service or of one (the first backend's weight). ns/op is one Apply.
func BenchmarkApply(b *testing.B) {
	for _, sh := range [][2]int{{1000, 3}, {100, 100}} {
		nsvc, nbe := sh[0], sh[1]
		opts := Options{MaglevTableSize: 65537, ConntrackSize: 4096, MaxServices: 4096, MaxBackends: 65536, MaxServiceKeys: 16384}
		base := benchServices(nsvc, nbe, Maglev)
		bumped := func(n int) []Service {
			out := benchServices(nsvc, nbe, Maglev)
			for i := range n {
				out[i].Backends[0].Weight = 2
			}
			return out
		}
		b.Run(fmt.Sprintf("services=%d/backends=%d/from_nothing", nsvc, nbe), func(b *testing.B) {
			for b.Loop() {
				b.StopTimer()
				d := mustOpen(b, opts)
				b.StartTimer()
				mustApply(b, d, base...)
				b.StopTimer()
				d.Close()
				b.StartTimer()
			}
		})
		for _, changed := range []int{nsvc, 1} {
			b.Run(fmt.Sprintf("services=%d/backends=%d/changed=%d", nsvc, nbe, changed), func(b *testing.B) {
				d := mustOpen(b, opts)
				states := [2][]Service{base, bumped(changed)}
				mustApply(b, d, base...)
				i := 0
				for b.Loop() {
					i++
					mustApply(b, d, states[i%2]...)
				}
			})
		}
	}
}
