package prime

import "testing"

func TestIs(t *testing.T) {
	for n, want := range map[uint32]bool{0: false, 1: false, 2: true, 251: true, 65536: false, 65537: true, 1048573: true, 4294967291: true, 4294967295: false} {
		if Is(n) != want {
			t.Errorf("Is(%d) != %v", n, want)
		}
	}
}
