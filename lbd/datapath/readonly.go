package datapath

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// Reader reads a pinned data plane without being able to change it: the
// maps are opened from their pins with BPF_F_RDONLY (every update or
// delete fails in the kernel), no program is loaded and nothing is
// attached. It is what `lbd status` and `lbd explain` use, so nothing a
// reader does can change forwarding, whatever configuration file it was
// given: sizes and timeouts come from the pinned lb_cfg, not the file.
type Reader struct{ d *Datapath }

// ErrNotPinned: no data plane is pinned at the path.
var ErrNotPinned = errors.New("no data plane pinned")

// OpenReadOnly opens the maps pinned under pinPath read-only.
func OpenReadOnly(pinPath string) (*Reader, error) {
	d := &Datapath{opts: Options{PinPath: pinPath}, log: slog.New(slog.DiscardHandler)}
	d.opts.setDefaults()
	if err := d.loadPinnedReadOnly(); err != nil {
		d.objs.Close()
		return nil, err
	}
	if err := d.readPinnedConfig(); err != nil {
		d.objs.Close()
		return nil, err
	}
	if err := d.initState(); err != nil {
		d.objs.Close()
		return nil, err
	}
	return &Reader{d: d}, nil
}

// loadPinnedReadOnly fills every map of bpfMaps from its pin, by the
// `ebpf:"name"` tags the generated struct carries, so a map added in C is
// picked up without a change here.
func (d *Datapath) loadPinnedReadOnly() error {
	v := reflect.ValueOf(&d.objs.bpfMaps).Elem()
	for i := range v.NumField() {
		name := v.Type().Field(i).Tag.Get("ebpf")
		if programOwn(name) {
			continue
		}
		path := filepath.Join(d.opts.PinPath, name)
		m, err := ebpf.LoadPinnedMap(path, &ebpf.LoadPinOptions{ReadOnly: true})
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("open %s: %w (lbd has not run with this pin path, or it was detached)", path, ErrNotPinned)
		}
		if err != nil {
			return fmt.Errorf("open pinned map %s read-only: %w", path, err)
		}
		v.Field(i).Set(reflect.ValueOf(m))
	}
	return nil
}

// readPinnedConfig takes the settings the program runs with from lb_cfg.
func (d *Datapath) readPinnedConfig() error {
	var cur bpfLbConfig
	if err := d.objs.LbCfg.Lookup(uint32(0), &cur); err != nil {
		return fmt.Errorf("read data plane config: %w", err)
	}
	if cur.Abi == 0 {
		return fmt.Errorf("read data plane config in %s: %w (maps created but never programmed)", d.opts.PinPath, ErrNotPinned)
	}
	if cur.Abi != uint32(bpfLbAbiLB_ABI_VERSION) {
		return fmt.Errorf("read data plane in %s: %w: written by ABI %d, this lbd reads %d", d.opts.PinPath, ErrIncompatible, cur.Abi, bpfLbAbiLB_ABI_VERSION)
	}
	d.adopted = true
	d.cookieFloor = cur.LastCookie
	d.opts.TCPTimeout = time.Duration(cur.TcpTimeoutNs)
	d.opts.UDPTimeout = time.Duration(cur.UdpTimeoutNs)
	d.opts.TCPClosingTimeout = time.Duration(cur.TcpClosingTimeoutNs)
	d.opts.MaglevTableSize = cur.TableSize
	d.opts.MaxServices = d.objs.LbMaglev.MaxEntries()
	d.opts.MaxBackends = d.objs.LbBackends.MaxEntries()
	d.opts.ConntrackSize = d.objs.LbCt4.MaxEntries()
	return nil
}

// Stats reads every counter. See Datapath.Stats.
func (r *Reader) Stats() (Stats, error) { return r.d.Stats() }

// ActiveFlows counts live conntrack entries per backend. See Datapath.ActiveFlows.
func (r *Reader) ActiveFlows(st *Stats) error { return r.d.ActiveFlows(st) }

// ConntrackStats reads the flow table's counters. See
// Datapath.ConntrackStats.
func (r *Reader) ConntrackStats() (ConntrackStats, error) { return r.d.ConntrackStats() }

// LookupFlow explains where f goes. See Datapath.LookupFlow.
func (r *Reader) LookupFlow(f Flow) (FlowInfo, error) { return r.d.LookupFlow(f) }

// TCPTimeout is the idle timeout the program applies to TCP flows.
func (r *Reader) TCPTimeout() time.Duration { return r.d.opts.TCPTimeout }

// Close releases the map handles.
func (r *Reader) Close() error { return r.d.objs.Close() }

// openMapByID opens a map by id (an inner Maglev table) with a read-only
// descriptor, as for the pins: the callers only read, and a Reader must
// not hold a descriptor that could write.
func (d *Datapath) openMapByID(id ebpf.MapID) (*ebpf.Map, error) {
	attr := struct {
		id, nextID, openFlags uint32
	}{id: uint32(id), openFlags: unix.BPF_F_RDONLY}
	fd, _, errno := unix.Syscall(unix.SYS_BPF, unix.BPF_MAP_GET_FD_BY_ID, uintptr(unsafe.Pointer(&attr)), unsafe.Sizeof(attr))
	if errno != 0 {
		return nil, fmt.Errorf("open map %d read-only: %w", id, errno)
	}
	return ebpf.NewMapFromFD(int(fd))
}
