package runfiles

import "testing"

// TestFor: the names the man page documents, distinct per pin path.
func TestFor(t *testing.T) {
	f := For("/sys/fs/bpf/dsrlb/")
	want := Files{
		PID: "/run/dsrlb/lbd-sys-fs-bpf-dsrlb.pid", Running: "/run/dsrlb/lbd-sys-fs-bpf-dsrlb.running.yaml",
		BGPStatus: "/run/dsrlb/lbd-sys-fs-bpf-dsrlb.bgp.json", Control: "/run/dsrlb/lbd-sys-fs-bpf-dsrlb.sock",
		VIPs: "/run/dsrlb/lbd-sys-fs-bpf-dsrlb.vips", Seen: "/run/dsrlb/lbd-sys-fs-bpf-dsrlb.seen",
	}
	if f != want {
		t.Errorf("For = %+v\nwant %+v", f, want)
	}
	if For("/sys/fs/bpf/dsrlb-x") == f {
		t.Error("two pin paths share run files")
	}
}
