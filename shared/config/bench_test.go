package config

import (
	"fmt"
	"strings"
	"testing"
)

// scaleFile renders a file like integration/cmd/dsrlb-scale's: services
// of servers each, one VIP, a port per service, check none, static MACs.
func scaleFile(services, servers int) []byte {
	var b strings.Builder
	b.WriteString("balancer:\n  interface: eth0\n  pin_path: /sys/fs/bpf/dsrlb\n  maglev_table_size: 65537\n  metrics: {listen: \"\"}\nservices:\n")
	for i := range services {
		fmt.Fprintf(&b, "  - name: s%d\n    vip: 192.0.2.10\n    ports: [%d]\n    check: {type: none}\n    servers:\n", i, 10001+i)
		for j := range servers {
			fmt.Fprintf(&b, "      - {name: b%d, address: 192.0.2.%d, mac: \"02:00:00:00:53:%02x\", weight: 1}\n", j+1, 101+j, j)
		}
	}
	return []byte(b.String())
}

// BenchmarkParse is what every reload pays before the data plane: the
// whole file parsed and validated (scripts/bench.sh does not run it; see
// BENCHMARKS.md, "Control plane at scale").
func BenchmarkParse(b *testing.B) {
	for _, sh := range [][2]int{{1, 3}, {100, 3}, {1000, 3}, {100, 100}} {
		data := scaleFile(sh[0], sh[1])
		b.Run(fmt.Sprintf("%dx%d", sh[0], sh[1]), func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Parse("bench.yaml", data); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
