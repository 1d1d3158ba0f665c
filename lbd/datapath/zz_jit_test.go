package datapath

import (
	"fmt"
	"os"
	"testing"
)

func TestZZJit(t *testing.T) {
	d := mustOpen(t, Options{})
	info, err := d.Program().Info()
	if err != nil {
		t.Fatal(err)
	}
	tag := info.Tag
	jit, _ := info.JitedInsns()
	os.WriteFile("/tmp/h16cost-jit.bin", jit, 0o644)
	addrs, _ := info.JitedKsymAddrs()
	jl, _ := info.JitedLineInfos()
	li, err := info.LineInfos()
	if err != nil {
		t.Fatal(err)
	}
	f, _ := os.Create("/tmp/h16cost-lines.txt")
	defer f.Close()
	i := 0
	for _, lo := range li {
		if i >= len(jl) {
			break
		}
		fmt.Fprintf(f, "0x%x %s:%d %s\n", uint64(jl[i])-uint64(addrs[0]), lo.Line.FileName(), lo.Line.LineNumber(), lo.Line.Line())
		i++
	}
	t.Logf("tag %s, %d bytes, %d lines", tag, len(jit), i)
}
