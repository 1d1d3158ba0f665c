package netorder

import (
	"encoding/binary"
	"testing"
)

// TestHtons: the result's bytes in host memory are v big-endian, which is
// what the kernel reads from sockaddr_ll.sll_protocol.
func TestHtons(t *testing.T) {
	for _, v := range []uint16{0, 1, 0x0003, 0x0800, 0x0806, 0x86dd, 0x8100, 0xffff} {
		var mem [2]byte
		binary.NativeEndian.PutUint16(mem[:], Htons(v))
		if got := binary.BigEndian.Uint16(mem[:]); got != v {
			t.Errorf("Htons(%#04x) is %x in memory, want %#04x big-endian", v, mem, v)
		}
	}
}
