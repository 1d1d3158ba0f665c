package datapath

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/cilium/ebpf"
)

// filterWords is LB_VIP_FILTER_WORDS: lb_vip_filter holds one bit per
// folded destination address (vipBit), set for every VIP. The program
// skips both service lookups when a packet's bit is clear, so traffic that
// is not for a VIP costs one array read.
const filterWords = 1024

type filterBits []uint64

// vipBit is the C lb_vip_bit: the address's four native-endian words
// (IPv4-mapped for IPv4) XORed, folded to 16 bits.
func vipBit(a netip.Addr) uint32 {
	b := a.As16()
	var x uint32
	for i := 0; i < 16; i += 4 {
		x ^= binary.NativeEndian.Uint32(b[i:])
	}
	x ^= x >> 16
	return x & (filterWords*64 - 1)
}

func vipFilter(services []Service) filterBits {
	f := make(filterBits, filterWords)
	for i := range services {
		bit := vipBit(services[i].VIP)
		f[bit/64] |= 1 << (bit % 64)
	}
	return f
}

func (f filterBits) union(g filterBits) filterBits {
	out := slices.Clone(f)
	for i := range g {
		out[i] |= g[i]
	}
	return out
}

// writeVIPFilter writes the words of f that differ from what the map
// holds (all of them the first time: an adopted map is read first).
func (d *Datapath) writeVIPFilter(f filterBits) error {
	if d.state.vipFilter == nil {
		cur, err := d.readVIPFilter()
		if err != nil {
			return err
		}
		d.state.vipFilter = cur
	}
	var keys []uint32
	var vals []uint64
	for i := range f {
		if f[i] != d.state.vipFilter[i] {
			keys, vals = append(keys, uint32(i)), append(vals, f[i])
		}
	}
	if len(keys) == 0 {
		return nil
	}
	if _, err := d.objs.LbVipFilter.BatchUpdate(keys, vals, nil); err != nil {
		return fmt.Errorf("write VIP filter: %w", err)
	}
	d.state.vipFilter = f
	return nil
}

func (d *Datapath) readVIPFilter() (filterBits, error) {
	f := make(filterBits, filterWords)
	keys := make([]uint32, filterWords)
	var cursor ebpf.MapBatchCursor
	n, err := d.objs.LbVipFilter.BatchLookup(&cursor, keys, []uint64(f), nil)
	if n != filterWords && err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return nil, fmt.Errorf("read VIP filter: %w", err)
	}
	return f, nil
}
