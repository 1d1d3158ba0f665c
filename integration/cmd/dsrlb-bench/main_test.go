package main

import (
	"slices"
	"strings"
	"testing"
	"time"
)

// TestParseModes: -modes takes every path the bench measures, track too,
// and names the valid ones when given another.
func TestParseModes(t *testing.T) {
	valid := func() options {
		return options{duration: 6 * time.Second, runs: 3, conns: 32, threads: 2, backends: 1}
	}
	o := valid()
	if err := o.parse("64", "dsrlb, floor,track"); err != nil {
		t.Fatal(err)
	}
	if want := []string{"dsrlb", "floor", "track"}; !slices.Equal(o.modes, want) {
		t.Errorf("modes %q, want %q", o.modes, want)
	}
	o = valid()
	err := o.parse("64", "dsrlb,tracked")
	if err == nil || !strings.Contains(err.Error(), `"tracked"`) || !strings.Contains(err.Error(), "floor, track") {
		t.Errorf("-modes dsrlb,tracked: %v; want the unknown mode and the valid ones", err)
	}
}
