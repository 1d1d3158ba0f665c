package config

import (
	"bytes"
	"fmt"
	"testing"
)

// TestLoaderAgrees: the Loader gives what Parse gives, cold and after a
// file it could cut, on every seed and edge case.
func TestLoaderAgrees(t *testing.T) {
	cases := append(seeds(t), loaderEdges()...)
	for _, data := range cases {
		want := outcome(t, Parse, data)
		cold := new(Loader)
		if got := outcome(t, cold.Parse, data); got != want {
			t.Errorf("cold Loader and Parse differ on\n%s\n--- loader\n%s\n--- parse\n%s", data, got, want)
		}
		warm := new(Loader)
		if _, err := warm.Parse("f.yaml", scaleFile(5, 2)); err != nil {
			t.Fatal(err)
		}
		if got := outcome(t, warm.Parse, data); got != want {
			t.Errorf("warm Loader and Parse differ on\n%s\n--- loader\n%s\n--- parse\n%s", data, got, want)
		}
		if got := outcome(t, warm.Parse, data); got != want { // again, from its own pieces
			t.Errorf("Loader on the same file twice and Parse differ on\n%s\n--- loader\n%s\n--- parse\n%s", data, got, want)
		}
	}
}

// loaderEdges are files that are hard to cut: items at column 0, comments
// and blank lines between items, services before balancer, quotes and
// brackets across lines, block scalars, a list at the wrong indentation.
func loaderEdges() [][]byte {
	item := func(ind string, i int) string {
		return fmt.Sprintf("%s- name: s%d\n%s  vip: 192.0.2.10\n%s  ports: [%d]\n%s  check: {type: none}\n%s  servers:\n%s    - {name: a, address: 192.0.2.11}\n",
			ind, i, ind, ind, 80+i, ind, ind, ind)
	}
	bal := "balancer:\n  interface: eth0\n"
	var out [][]byte
	add := func(s string) { out = append(out, []byte(s)) }
	add(bal + "services:\n" + item("", 0) + item("", 1))
	add(bal + "services: # the list\n\n# first\n" + item("  ", 0) + "\n  # second\n" + item("  ", 1) + "# end\n")
	add("services:\n" + item("  ", 0) + item("  ", 1) + bal)
	add("services:\n" + item("  ", 0) + "# x\n" + bal + "services:\n" + item("  ", 1))
	add(bal + "services:\n" + item("  ", 0) + "  - name: \"s\n  - 1\"\n    vip: 192.0.2.10\n")
	add(bal + "services:\n" + item("  ", 0) + "  - {name: s9, vip: 192.0.2.10,\n  ports: [9], check: {type: none}, servers: [{name: a, address: 192.0.2.11}]}\n")
	add(bal + "services:\n" + item("  ", 0) + "  - name: s9\n    vip: 192.0.2.10\n    ports: [9,\n  - 10]\n")
	add(bal + "services:\n" + item("  ", 0) + "  - name: |+\n      s9\n\n    vip: 192.0.2.10\n")
	add(bal + "services:\n" + item("  ", 0) + item(" ", 1))
	add(bal + "services:\n" + item("    ", 0) + item("  ", 1))
	add(bal + "services:\n" + item("  ", 0) + "- x\n")
	add(bal + "services:\n" + item("  ", 0) + "  x: 1\n")
	add(bal + "services:\n" + item("  ", 0) + item("  ", 0))
	add(bal + "services:\n" + item("  ", 0) + "  - &a {name: s9, vip: 192.0.2.10, ports: [9], check: {type: none}, servers: [{name: a, address: 192.0.2.11}]}\n")
	add(bal + "services:\n" + item("  ", 0) + "  - !!map {name: s9, vip: 192.0.2.10, ports: [9], check: {type: none}, servers: [{name: a, address: 192.0.2.11}]}\n")
	add(bal + "services:\n" + item("  ", 0) + "---\n" + item("  ", 1))
	add(bal + "services:\n" + item("  ", 0) + "  -\n    name: s9\n    vip: 192.0.2.10\n    ports: [9]\n    check: {type: none}\n    servers: [{name: a, address: 192.0.2.11}]\n")
	add(bal + "services:\n" + item("  ", 0) + "  - ~\n")
	add(bal + "services:\n" + item("  ", 0) + "  - - 1\n")
	add(bal + "services:\n" + item("  ", 0) + "\t\n")
	add(bal + "services:\r\n" + item("  ", 0))
	add(bal + "services:\n" + item("  ", 0) + "  - name: s9\u2028    vip: 192.0.2.10\n")
	add(bal + "services:\n" + item("  ", 0) + item("  ", 1)[:40])
	add(bal + "services:\n" + item("  ", 0) + "  - {name: s9, vip: 192.0.2.10, ports: [9], servers: [{name: a, address: 192.0.2.11, wieght: 1}]}\n")
	add(bal + "  pin_path: \"/sys/fs/bpf/x\nservices:\n" + item("  ", 0) + "\"\nservices:\n" + item("  ", 1))
	add(bal + "services:\n" + item("  ", 0) + "  - name: \"s9\n# not a comment\nx: 1\"\n    vip: 192.0.2.10\n    ports: [9]\n    check: {type: none}\n    servers: [{name: a, address: 192.0.2.11}]\n")
	add("services:\n" + item("  ", 0) + "  - {name: s9, vip: 192.0.2.10, ports: [9], check: {type: none}, servers: [{name: a, address: \"192.0.2.11\nbalancer: x\"}]}\n" + bal)
	add(bal + "services:\n\n")
	add(bal + "services:\nx: 1\n")
	add("balancer: {interface: eth0,\nservices:\n" + item("  ", 0) + "}\n")
	return out
}

// TestLoaderReparsesOnlyChanges: one service changed, one service parsed.
func TestLoaderReparsesOnlyChanges(t *testing.T) {
	base := scaleFile(100, 3)
	one := bytes.Replace(base, []byte("ports: [10051]"), []byte("ports: [10051, 9]"), 1)
	l := new(Loader)
	for _, step := range []struct {
		data []byte
		want int
	}{{base, 100}, {base, 0}, {one, 1}, {base, 1}} {
		if _, err := l.Parse("f.yaml", step.data); err != nil {
			t.Fatal(err)
		}
		if l.parsed != step.want {
			t.Errorf("parsed %d services, want %d", l.parsed, step.want)
		}
	}
}

// FuzzLoaderAgrees: after a good file, the Loader and Parse agree on any
// other.
func FuzzLoaderAgrees(f *testing.F) {
	for _, s := range append(seeds(f), loaderEdges()...) {
		f.Add(s)
	}
	warm := scaleFile(5, 2)
	f.Fuzz(func(t *testing.T, data []byte) {
		l := new(Loader)
		if _, err := l.Parse("f.yaml", warm); err != nil {
			t.Fatal(err)
		}
		if got, want := outcome(t, l.Parse, data), outcome(t, Parse, data); got != want {
			t.Fatalf("Loader and Parse differ on %q\n--- loader\n%s\n--- parse\n%s", data, got, want)
		}
	})
}

// BenchmarkLoaderReload: what a reload of 1,000 services parses when one
// service changed, or every one.
func BenchmarkLoaderReload(b *testing.B) {
	base := scaleFile(1000, 3)
	one := bytes.Replace(base, []byte("ports: [10501]"), []byte("ports: [10501, 9]"), 1)
	every := bytes.ReplaceAll(base, []byte("name: b1,"), []byte("name: c1,"))
	for _, v := range []struct {
		name string
		next []byte
	}{{"one_service", one}, {"every_service", every}} {
		b.Run(v.name, func(b *testing.B) {
			l := new(Loader)
			if _, err := l.Parse("bench.yaml", base); err != nil {
				b.Fatal(err)
			}
			files := [2][]byte{v.next, base}
			i := 0
			b.ReportAllocs()
			for b.Loop() {
				if _, err := l.Parse("bench.yaml", files[i%2]); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}

// BenchmarkLoaderCold: a Loader's first file (lbd run), against Parse.
func BenchmarkLoaderCold(b *testing.B) {
	data := scaleFile(1000, 3)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := new(Loader).Parse("bench.yaml", data); err != nil {
			b.Fatal(err)
		}
	}
}
