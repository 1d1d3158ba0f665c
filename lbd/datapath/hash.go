package datapath

import (
	"encoding/binary"
	"math/bits"
	"net/netip"
)

// HashSeed is the C LB_HASH_SEED: fixed, so every balancer with the same
// configuration maps a flow to the same slot.
const HashSeed = 0x64737231

const jhashInitval = 0xdeadbeef

// jhash2 is the kernel's jhash2 (lookup3), as bpf/lib/hash.h.
func jhash2(k []uint32, seed uint32) uint32 {
	a := jhashInitval + uint32(len(k))<<2 + seed
	b, c := a, a
	for len(k) > 3 {
		a += k[0]
		b += k[1]
		c += k[2]
		a, b, c = jhashMix(a, b, c)
		k = k[3:]
	}
	switch len(k) {
	case 3:
		c += k[2]
		fallthrough
	case 2:
		b += k[1]
		fallthrough
	case 1:
		a += k[0]
		c = jhashFinal(a, b, c)
	}
	return c
}

func jhashMix(a, b, c uint32) (uint32, uint32, uint32) {
	a -= c
	a ^= bits.RotateLeft32(c, 4)
	c += b
	b -= a
	b ^= bits.RotateLeft32(a, 6)
	a += c
	c -= b
	c ^= bits.RotateLeft32(b, 8)
	b += a
	a -= c
	a ^= bits.RotateLeft32(c, 16)
	c += b
	b -= a
	b ^= bits.RotateLeft32(a, 19)
	a += c
	c -= b
	c ^= bits.RotateLeft32(b, 4)
	b += a
	return a, b, c
}

func jhashFinal(a, b, c uint32) uint32 {
	c ^= b
	c -= bits.RotateLeft32(b, 14)
	a ^= c
	a -= bits.RotateLeft32(c, 11)
	b ^= a
	b -= bits.RotateLeft32(a, 25)
	c ^= b
	c -= bits.RotateLeft32(b, 16)
	a ^= c
	a -= bits.RotateLeft32(c, 4)
	b ^= a
	b -= bits.RotateLeft32(a, 14)
	c ^= b
	c -= bits.RotateLeft32(b, 24)
	return c
}

// words reads b as native-endian u32 words, as the C code reads the struct.
func words(b []byte) []uint32 {
	w := make([]uint32, len(b)/4)
	for i := range w {
		w[i] = binary.NativeEndian.Uint32(b[i*4:])
	}
	return w
}

// flowBytes is struct lb_flow in memory: addresses IPv4-mapped, ports in
// network order, protocol, three zero bytes.
func flowBytes(src, dst netip.Addr, sport, dport uint16, proto Proto) []byte {
	b := make([]byte, 40)
	s, d := src.As16(), dst.As16()
	copy(b[0:], s[:])
	copy(b[16:], d[:])
	binary.BigEndian.PutUint16(b[32:], sport)
	binary.BigEndian.PutUint16(b[34:], dport)
	b[36] = byte(proto)
	return b
}

// HashFlow is the C lb_hash_flow: the maglev scheduler's hash of a flow.
func HashFlow(f Flow) uint32 {
	return jhash2(words(flowBytes(f.Src.Addr(), f.Dst.Addr(), f.Src.Port(), f.Dst.Port(), f.Proto)), HashSeed)
}

// HashSource is the C lb_hash_source: the source scheduler's hash.
func HashSource(client netip.Addr) uint32 {
	a := client.As16()
	return jhash2(words(a[:]), HashSeed)
}
