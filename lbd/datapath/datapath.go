package datapath

import (
	"errors"
	"fmt"
	"log/slog"
	"math/bits"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/dsrlb/dsrlb/shared/config"
)

// Options size and place the data plane. Zero values take the defaults of
// shared/config.
type Options struct {
	Interface     string           // NIC to attach to; needed by Attach
	InterfaceMAC  net.HardwareAddr // source MAC of redirected frames; default: Interface's
	PinPath       string           // bpffs directory for maps and link; "" pins nothing
	ConntrackSize uint32
	TCPTimeout    time.Duration
	UDPTimeout    time.Duration
	// TCPClosingTimeout is the idle timeout of TCP entries that are not
	// established: SYN seen, client FIN or RST (at most TCPTimeout).
	TCPClosingTimeout time.Duration
	FragmentSize      uint32 // datagrams whose fragments are followed at once (lb_frags)
	MaglevTableSize   uint32 // prime; bound of every table's size (maglev.TableSize)
	MaxServices       uint32 // service ids
	MaxServiceKeys    uint32 // (vip, proto, port) entries over all services
	MaxBackends       uint32 // backend ids over all services
	ForceClsact       bool   // attach with clsact + cls_bpf even when tcx exists
	// ReplaceIncompatible makes Open discard pinned maps it cannot adopt
	// (other layout, ABI or size) and start with fresh ones, instead of
	// failing with ErrIncompatible. Established flows then fall back to
	// the Maglev table, which keeps each on its backend unless the
	// backend set changed since the flow started.
	ReplaceIncompatible bool
}

// Defaults not in shared/config.
const (
	DefaultMaxServiceKeys = config.MaxServiceKeys
	DefaultMaxBackends    = config.MaxBackends + 1 // id 0 is never used
	// DefaultTCPClosingTimeout is IPVS's tcpfin timeout for direct
	// routing (FIN_WAIT), shortened: a half-closed connection whose
	// client still ACKs data refreshes it.
	DefaultTCPClosingTimeout = 60 * time.Second
	DefaultFragmentSize      = 8192
)

func (o *Options) setDefaults() {
	def := func(v *uint32, d uint32) {
		if *v == 0 {
			*v = d
		}
	}
	def(&o.ConntrackSize, config.DefaultConntrackSize)
	def(&o.MaglevTableSize, config.DefaultMaglevTableSize)
	def(&o.MaxServices, config.MaxServices)
	def(&o.MaxServiceKeys, DefaultMaxServiceKeys)
	def(&o.MaxBackends, DefaultMaxBackends)
	def(&o.FragmentSize, DefaultFragmentSize)
	if o.TCPTimeout == 0 {
		o.TCPTimeout = config.DefaultTCPTimeout
	}
	if o.UDPTimeout == 0 {
		o.UDPTimeout = config.DefaultUDPTimeout
	}
	if o.TCPClosingTimeout == 0 {
		o.TCPClosingTimeout = DefaultTCPClosingTimeout
	}
	o.TCPClosingTimeout = min(o.TCPClosingTimeout, o.TCPTimeout)
}

// Errors callers may test for.
var (
	// ErrIncompatible: the pinned maps were written by another layout,
	// ABI or size and Options.ReplaceIncompatible is false.
	ErrIncompatible = errors.New("pinned data plane incompatible")
	// ErrNoInterface: Attach needs Options.Interface.
	ErrNoInterface = errors.New("no interface configured")
	// ErrCommitted: Apply failed after its commit point, while retiring
	// what the new services no longer use (final backend states, the VIP
	// filter's old bits, conntrack entries of removed services). The new
	// services are in force and cannot be rolled back; the next Apply
	// finishes the job (it also purges the conntrack entries of services
	// removed by an Apply whose purge failed).
	ErrCommitted = errors.New("new services in force, retiring the old ones failed")
)

// Datapath owns the loaded program and its maps.
type Datapath struct {
	opts    Options
	log     *slog.Logger
	objs    bpfObjects
	inner   *ebpf.MapSpec // template of Maglev and round-robin tables
	adopted bool          // maps came from PinPath with state in them
	// replaced: Open found incompatible pinned maps and made fresh ones
	// (Options.ReplaceIncompatible), pinned under next/ (swap.go) until
	// Attach: the program found attached, if any, forwards with the old
	// ones, still pinned, until then.
	replaced bool
	swap     swapState // where the maps are pinned (swap.go)
	// migrated: the verdict counters migrateGlobalStats unpinned, held
	// until the load it ran for is accepted or refused.
	migrated *ebpf.Map
	// cookieFloor is lb_config.last_cookie as found: every cookie handed
	// out from now on is above it (and above every live backend's).
	cookieFloor uint32

	mu    sync.Mutex
	state *state    // what Apply last wrote (or what Open found pinned)
	empty *ebpf.Map // the shared empty table (tables.go), once created
	// held are handles on the tables this process switched into each outer
	// map, by service id (tables.go): reading a table back from the kernel
	// needs CAP_SYS_ADMIN, which the lbd unit does not grant.
	held map[*ebpf.Map]map[uint32]*ebpf.Map
	last ApplyStats // what the last successful Apply wrote
	// Test hooks: faultAt fails Apply after a step; badTable makes the
	// table of that service one the kernel refuses in the batch update.
	faultAt  func(step string) error
	badTable string
	link     link.Link // tcx link, when attached with tcx
	clsact   int       // ifindex, when attached with clsact
	purged   uint64    // conntrack entries deleted by purgeUnserved
	// unpurged are the service keys committed Applies removed whose
	// conntrack entries are not purged yet (a purge failed): the next
	// Apply purges them.
	unpurged map[bpfLbServiceKey]uint32
	// found is lb_cfg as Open found it in an adopted data plane, for
	// RestoreSettings.
	found bpfLbConfig
}

// Open loads the program and creates its maps, or adopts the maps pinned
// under opts.PinPath after checking they are compatible. Forwarding set up
// by a previous lbd continues untouched until Apply and Attach.
func Open(opts Options, log *slog.Logger) (*Datapath, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	opts.setDefaults()
	d := &Datapath{opts: opts, log: log}
	if err := d.load(); err != nil {
		return nil, err
	}
	if err := d.initState(); err != nil {
		d.objs.Close()
		if d.swap == swapNext {
			os.RemoveAll(filepath.Join(d.opts.PinPath, pinNext)) // else the next Open does
		}
		return nil, err
	}
	return d, nil
}

// spec is the program's collection spec sized by the options, its maps
// pinned under dir (PinPath, or PinPath/next for a replacing load).
func (d *Datapath) spec(dir string) (*ebpf.CollectionSpec, error) {
	spec, err := loadBpf()
	if err != nil {
		return nil, fmt.Errorf("load program spec: %w", err)
	}
	o := d.opts
	sizes := map[string]uint32{
		bpfMapLbServices:  o.MaxServiceKeys,
		bpfMapLbBackends:  o.MaxBackends,
		bpfMapLbBeStats:   o.MaxBackends,
		bpfMapLbMaglev:    o.MaxServices,
		bpfMapLbRr:        o.MaxServices,
		bpfMapLbRrNext:    o.MaxServices,
		bpfMapLbSvcStats:  o.MaxServices,
		bpfMapLbConntrack: o.ConntrackSize,
		bpfMapLbCt4:       o.ConntrackSize,
		bpfMapLbFrags:     o.FragmentSize,
	}
	for name, n := range sizes {
		spec.Maps[name].MaxEntries = n
	}
	// The flow cache: LB_FC_SLOTS (the C size) entries for each CPU.
	cpus, err := ebpf.PossibleCPU()
	if err != nil {
		return nil, fmt.Errorf("count possible CPUs: %w", err)
	}
	spec.Maps[bpfMapLbFlowCache].MaxEntries *= uint32(cpus)
	// The template's size is the bound; with BPF_F_INNER_MAP (maps.h) the
	// kernel accepts inner tables of any size.
	for _, name := range []string{bpfMapLbMaglev, bpfMapLbRr} {
		spec.Maps[name].InnerMap.MaxEntries = o.MaglevTableSize + 1
	}
	d.inner = spec.Maps[bpfMapLbMaglev].InnerMap.Copy()
	d.inner.Name = "lb_table"
	// Tables are created by the thousand: without key and value types
	// none loads BTF into the kernel (two thirds of its creation cost).
	d.inner.Key, d.inner.Value = nil, nil
	if o.PinPath != "" {
		for name, m := range spec.Maps {
			// Globals cannot be pinned, nor are the program's own maps.
			if !strings.HasPrefix(name, ".") && !programOwn(name) {
				m.Pinning = ebpf.PinByName
			}
		}
	}
	if err := setRecentSince(spec, dir); err != nil {
		return nil, err
	}
	// Four recent-mark slots per IPv4 conntrack entry (a power of two),
	// two bytes each, 32 to a map value (bpf/lib/common.h): below one
	// written entry per four slots, most SYNs skip the lookup.
	slots := uint32(1) << bits.Len32(max(o.ConntrackSize, 1<<14)*4-1)
	recent := spec.Maps[bpfMapLbCtRecent]
	recent.MaxEntries = slots / (recent.ValueSize / 2)
	if err := spec.Variables[bpfVarLbRecentMask].Set(slots - 1); err != nil {
		return nil, fmt.Errorf("set lb_recent_mask: %w", err)
	}
	return spec, nil
}

// programOwn reports whether map name belongs to its program and is not
// pinned: the flow cache and the recent marks (a new program starts with
// empty ones; no reader has state to find there).
func programOwn(name string) bool { return name == bpfMapLbFlowCache || name == bpfMapLbCtRecent }

// coarseNow is CLOCK_MONOTONIC_COARSE, the program's clock, in ns.
func coarseNow() (uint64, error) {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC_COARSE, &ts); err != nil {
		return 0, fmt.Errorf("read the coarse monotonic clock: %w", err)
	}
	return uint64(ts.Nano()), nil
}

// setRecentSince tells the program when it starts on conntrack entries an
// earlier program wrote (pinned lb_ct4 present): it never marked them in
// lb_ct_recent, so until they have all timed out since, every SYN looks its
// entry up. Fresh maps: 0, the marks cover every entry from the start.
func setRecentSince(spec *ebpf.CollectionSpec, pinPath string) error {
	var since uint64
	if pinPath != "" {
		if _, err := os.Stat(filepath.Join(pinPath, bpfMapLbCt4)); err == nil {
			now, err := coarseNow()
			if err != nil {
				return err
			}
			since = max(now, 1)
		}
	}
	if err := spec.Variables[bpfVarLbRecentSinceNs].Set(since); err != nil {
		return fmt.Errorf("set lb_recent_since_ns: %w", err)
	}
	return nil
}

// load adopts the maps pinned under PinPath or creates them there. When
// they are incompatible and Options.ReplaceIncompatible is set, fresh maps
// are made under PinPath/next instead, leaving the pinned ones as found
// until Attach swaps them (swap.go).
func (d *Datapath) load() error {
	pin := d.opts.PinPath
	if pin == "" {
		return d.loadOnce("")
	}
	if err := os.MkdirAll(pin, 0o700); err != nil {
		return fmt.Errorf("create pin directory: %w", err)
	}
	if err := d.settlePins(); err != nil {
		return err
	}
	before, err := pinsPresent(pin)
	if err != nil {
		return err
	}
	err = d.loadOnce(pin)
	if serr := d.settleGlobalStats(pin, err != nil); serr != nil {
		return errors.Join(err, serr)
	}
	if err != nil {
		// A refused load leaves the pins as found.
		if uerr := d.unpinCreated(pin, before); uerr != nil {
			return errors.Join(err, uerr)
		}
	}
	if !errors.Is(err, ErrIncompatible) || !d.opts.ReplaceIncompatible {
		return err
	}
	d.log.Warn("pinned data plane incompatible, replacing its maps once this lbd's program is attached: "+
		"until then the old program forwards with them; then tracked flows fall back to the Maglev table",
		"pin_path", pin, "fresh_maps", filepath.Join(pin, pinNext), "error", err)
	next := filepath.Join(pin, pinNext)
	if err := os.Mkdir(next, 0o700); err != nil {
		return fmt.Errorf("create %s for the fresh maps: %w", next, err)
	}
	d.replaced, d.swap = true, swapNext
	if err := d.loadOnce(next); err != nil {
		d.swap = swapNone
		return errors.Join(err, os.RemoveAll(next))
	}
	return nil
}

// loadOnce loads the program with its maps pinned under dir ("" pins
// nothing).
func (d *Datapath) loadOnce(dir string) error {
	spec, err := d.spec(dir)
	if err != nil {
		return err
	}
	if err := d.migrateGlobalStats(spec, dir); err != nil {
		return err
	}
	var objs bpfObjects
	err = spec.LoadAndAssign(&objs, &ebpf.CollectionOptions{Maps: ebpf.MapOptions{PinPath: dir}})
	if errors.Is(err, ebpf.ErrMapIncompatible) {
		return fmt.Errorf("adopt maps pinned in %s: %w: %w", d.opts.PinPath, ErrIncompatible, err)
	}
	var verr *ebpf.VerifierError
	if errors.As(err, &verr) {
		return fmt.Errorf("load program: %w\n%+v", err, verr)
	}
	if err != nil {
		return fmt.Errorf("load program: %w", err)
	}
	d.objs = objs
	if err := d.checkConfig(); err != nil {
		objs.Close()
		return err
	}
	return nil
}

// checkConfig compares the pinned lb_cfg (if any) with what this build
// expects, then writes the current settings.
func (d *Datapath) checkConfig() error {
	var cur bpfLbConfig
	if err := d.objs.LbCfg.Lookup(uint32(0), &cur); err != nil {
		return fmt.Errorf("read data plane config: %w", err)
	}
	if cur.Abi != 0 {
		// Before the checks: maps that replace incompatible ones still
		// hand out cookies above the old ones.
		d.cookieFloor = cur.LastCookie
		if cur.Abi != uint32(bpfLbAbiLB_ABI_VERSION) {
			return fmt.Errorf("adopt maps pinned in %s: %w: written by ABI %d, this lbd speaks %d",
				d.opts.PinPath, ErrIncompatible, cur.Abi, bpfLbAbiLB_ABI_VERSION)
		}
		if cur.TableSize != d.opts.MaglevTableSize {
			return fmt.Errorf("adopt maps pinned in %s: %w: table size %d, configured %d",
				d.opts.PinPath, ErrIncompatible, cur.TableSize, d.opts.MaglevTableSize)
		}
		// Only maps that passed the checks are adopted: after a refusal
		// load may retry with fresh maps on this same Datapath.
		d.adopted, d.found = true, cur
	}
	mac, err := d.interfaceMAC()
	if err != nil {
		return err
	}
	cfg := bpfLbConfig{
		TcpTimeoutNs:        uint64(d.opts.TCPTimeout),
		UdpTimeoutNs:        uint64(d.opts.UDPTimeout),
		TcpClosingTimeoutNs: uint64(d.opts.TCPClosingTimeout),
		TableSize:           d.opts.MaglevTableSize,
		Abi:                 uint32(bpfLbAbiLB_ABI_VERSION),
		LastCookie:          d.cookieFloor,
		// Moves on, never back: a running program's cached copies
		// made under an older generation stay invalid.
		CtGen: cur.CtGen + 1,
	}
	copy(cfg.IfMac[:], mac)
	if err := d.objs.LbCfg.Put(uint32(0), &cfg); err != nil {
		return fmt.Errorf("write data plane config: %w", err)
	}
	return nil
}

func (d *Datapath) interfaceMAC() (net.HardwareAddr, error) {
	if d.opts.InterfaceMAC != nil {
		if len(d.opts.InterfaceMAC) != 6 {
			return nil, fmt.Errorf("check interface MAC %s: not an Ethernet address", d.opts.InterfaceMAC)
		}
		return d.opts.InterfaceMAC, nil
	}
	if d.opts.Interface == "" {
		return make(net.HardwareAddr, 6), nil
	}
	ifi, err := net.InterfaceByName(d.opts.Interface)
	if err != nil {
		return nil, fmt.Errorf("find interface %s: %w", d.opts.Interface, err)
	}
	if len(ifi.HardwareAddr) != 6 {
		return nil, fmt.Errorf("find interface %s: no Ethernet address", d.opts.Interface)
	}
	return ifi.HardwareAddr, nil
}

// RestoreSettings puts back what Open changed in an adopted data plane's
// settings (lb_cfg): the conntrack timeouts and the interface MAC as it
// found them, for a start that fails to leave the data plane as found.
// The conntrack generation stays moved on (never back: caches made under
// an older one stay invalid) and the cookie floor at its highest. Nothing
// to do for a data plane Open created.
func (d *Datapath) RestoreSettings() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.adopted {
		return nil
	}
	var cur bpfLbConfig
	if err := d.objs.LbCfg.Lookup(uint32(0), &cur); err != nil {
		return fmt.Errorf("read data plane config: %w", err)
	}
	cfg := d.found
	cfg.CtGen, cfg.LastCookie = cur.CtGen, max(cur.LastCookie, d.found.LastCookie)
	if err := d.objs.LbCfg.Put(uint32(0), &cfg); err != nil {
		return fmt.Errorf("restore data plane config: %w", err)
	}
	return nil
}

// Adopted reports whether Open found pinned state written by a previous
// lbd and adopted it. Maps Open replaced (Replaced) are not adopted: they
// start empty.
func (d *Datapath) Adopted() bool { return d.adopted }

// Replaced reports whether Open found incompatible pinned maps and made
// fresh ones (Options.ReplaceIncompatible), which Attach puts in their
// place.
func (d *Datapath) Replaced() bool { return d.replaced }

// Close releases this process's handles. Pinned maps and a pinned link
// stay, so forwarding continues; without a pin path, closing detaches.
func (d *Datapath) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	var errs []error
	if d.link != nil {
		errs = append(errs, d.link.Close())
		d.link = nil
	}
	if d.empty != nil {
		errs = append(errs, d.empty.Close())
		d.empty = nil
	}
	for _, tables := range d.held {
		for _, m := range tables {
			m.Close()
		}
	}
	d.held = nil
	return errors.Join(append(errs, d.objs.Close())...)
}

// Remove detaches the program, deletes every pin (a replacing start's
// next/ and swapping/ too) and closes the Datapath.
func (d *Datapath) Remove() error {
	errs := []error{d.Detach()}
	if d.opts.PinPath != "" {
		errs = append(errs, unpinMaps(d.opts.PinPath))
		for _, dir := range []string{pinNext, pinSwapping} {
			if err := os.RemoveAll(filepath.Join(d.opts.PinPath, dir)); err != nil {
				errs = append(errs, fmt.Errorf("remove %s: %w", dir, err))
			}
		}
		if err := os.RemoveAll(d.opts.PinPath); err != nil {
			errs = append(errs, fmt.Errorf("remove pin directory: %w", err))
		}
	}
	errs = append(errs, d.Close())
	return errors.Join(errs...)
}

// Unpin deletes the pins of this Open's maps and closes the Datapath,
// leaving the link (or cls_bpf filter) and its pins alone: for a start
// that fails before its Attach on a pin path where an earlier program is
// attached with maps this Open did not adopt. Replaced: this Open's maps
// are under next/, which goes; the earlier program's stay pinned as
// found, so `lbd status` reads them and the next start finds them.
// Otherwise (no maps were pinned, yet a program was attached) the fresh
// maps are unpinned and the next start begins afresh.
func (d *Datapath) Unpin() error {
	var errs []error
	switch {
	case d.opts.PinPath == "":
	case d.swap != swapNone:
		d.abortSwap()
		for _, dir := range []string{pinNext, pinSwapping} {
			if err := os.RemoveAll(filepath.Join(d.opts.PinPath, dir)); err != nil {
				errs = append(errs, fmt.Errorf("remove the fresh maps: %w", err))
			}
		}
		d.swap = swapNone
	default:
		errs = append(errs, unpinMaps(d.opts.PinPath))
	}
	return errors.Join(append(errs, d.Close())...)
}

// migrateGlobalStats unpins a lb_global_stats with fewer entries than
// this build has reasons (written before a reason was added, e.g.
// drop_check_reply): it holds only counters, so a new one starting at zero
// is the whole migration, while conntrack and every other map are adopted.
func (d *Datapath) migrateGlobalStats(spec *ebpf.CollectionSpec, dir string) error {
	if dir == "" {
		return nil
	}
	path := filepath.Join(dir, bpfMapLbGlobalStats)
	m, err := ebpf.LoadPinnedMap(path, &ebpf.LoadPinOptions{ReadOnly: true})
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("open pinned map %s: %w", path, err)
	}
	old, want := m.MaxEntries(), spec.Maps[bpfMapLbGlobalStats].MaxEntries
	if old >= want {
		m.Close()
		return nil
	}
	d.log.Info("pinned verdict counters have fewer reasons than this lbd: replacing them (they restart at zero)",
		"map", path, "reasons", old, "want", want)
	if err := os.Remove(path); err != nil {
		m.Close()
		return fmt.Errorf("unpin map %s: %w", path, err)
	}
	d.migrated = m // pinned again if the load is refused (load)
	return nil
}

// settleGlobalStats ends migrateGlobalStats: a refused load pins the old
// counters again in place of the ones it made (the program forwarding with
// them counts on; lbd status reads them), an accepted one drops them.
func (d *Datapath) settleGlobalStats(dir string, refused bool) error {
	m := d.migrated
	if m == nil {
		return nil
	}
	d.migrated = nil
	defer m.Close()
	if !refused {
		return nil
	}
	path := filepath.Join(dir, bpfMapLbGlobalStats)
	// m was loaded from path: Unpin deletes what is pinned there now (the
	// refused load's counters) and makes Pin pin m anew.
	if err := m.Unpin(); err != nil {
		return fmt.Errorf("unpin the verdict counters of the refused load: %w", err)
	}
	if err := m.Pin(path); err != nil {
		return fmt.Errorf("pin the old verdict counters again at %s: %w", path, err)
	}
	return nil
}

// unpinMaps removes the map pins under dir, leaving the link pin: a
// running program keeps its maps (the kernel holds references) until the
// link is updated to a program using new ones.
func unpinMaps(dir string) error {
	spec, err := loadBpf()
	if err != nil {
		return fmt.Errorf("load program spec: %w", err)
	}
	for name := range spec.Maps {
		if strings.HasPrefix(name, ".") {
			continue // .rodata and friends are never pinned
		}
		err := os.Remove(filepath.Join(dir, name))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("unpin map %s: %w", name, err)
		}
	}
	return nil
}

// Program is the loaded program, for tests and benchmarks (BPF_PROG_TEST_RUN).
func (d *Datapath) Program() *ebpf.Program { return d.objs.DsrlbIngress }
