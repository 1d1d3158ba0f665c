package datapath

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/cilium/ebpf"
)

// pinRetired names a map pin an older build had and this one lacks.
const pinRetired = "lb_retired"

// pinnedIDs are the ids of the maps pinned directly under dir, by name
// (directories, the link and the program pin left out).
func pinnedIDs(t *testing.T, dir string) map[string]ebpf.MapID {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]ebpf.MapID{}
	for _, e := range entries {
		if e.IsDir() || e.Name() == pinLink || e.Name() == pinProgram {
			continue
		}
		m, err := ebpf.LoadPinnedMap(filepath.Join(dir, e.Name()), &ebpf.LoadPinOptions{ReadOnly: true})
		if err != nil {
			t.Fatalf("open pinned map %s: %v", e.Name(), err)
		}
		info, err := m.Info()
		m.Close()
		if err != nil {
			t.Fatalf("read map %s: %v", e.Name(), err)
		}
		ids[e.Name()], _ = info.ID()
	}
	return ids
}

// objIDs are the ids of the pinned maps d holds, by name.
func objIDs(t *testing.T, d *Datapath) map[string]ebpf.MapID {
	t.Helper()
	ids := map[string]ebpf.MapID{}
	v := reflect.ValueOf(&d.objs.bpfMaps).Elem()
	for i := range v.NumField() {
		name := v.Type().Field(i).Tag.Get("ebpf")
		if programOwn(name) {
			continue
		}
		info, err := v.Field(i).Interface().(*ebpf.Map).Info()
		if err != nil {
			t.Fatalf("read map %s: %v", name, err)
		}
		ids[name], _ = info.ID()
	}
	return ids
}

// requireNoSwapDirs fails when next/ or swapping/ is left under pin.
func requireNoSwapDirs(t *testing.T, pin, what string) {
	t.Helper()
	for _, dir := range []string{pinNext, pinSwapping} {
		if _, err := os.Lstat(filepath.Join(pin, dir)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s: %s left under %s (%v)", what, dir, pin, err)
		}
	}
}

func requireIDs(t *testing.T, dir string, want map[string]ebpf.MapID, what string) {
	t.Helper()
	if got := pinnedIDs(t, dir); !maps.Equal(got, want) {
		t.Errorf("%s: maps pinned under %s %v, want %v", what, dir, got, want)
	}
}

// oldPlane pins and attaches a data plane of table size 251 that this
// test's replacing Open (1009) finds incompatible. odd: it lacks lb_frags
// (an older build's set) and has a pin this build lacks.
func oldPlane(t *testing.T, tp *topo, pin string, odd bool) map[string]ebpf.MapID {
	t.Helper()
	tp.openIn(t, Options{PinPath: pin, MaglevTableSize: 251, ConntrackSize: 4096}).Close()
	if odd {
		if err := os.Remove(filepath.Join(pin, bpfMapLbFrags)); err != nil {
			t.Fatal(err)
		}
		m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 4, MaxEntries: 1})
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		if err := m.Pin(filepath.Join(pin, pinRetired)); err != nil {
			t.Fatal(err)
		}
	}
	return pinnedIDs(t, pin)
}

func replacing(tp *topo, pin string) Options {
	return Options{PinPath: pin, MaglevTableSize: 1009, ConntrackSize: 4096, Interface: tp.lbIface, ReplaceIncompatible: true}
}

func openReplacing(t *testing.T, tp *topo, pin string) *Datapath {
	t.Helper()
	var d *Datapath
	if err := inNetns(tp.lb, func() (err error) { d, err = Open(replacing(tp, pin), nil); return err }); err != nil {
		t.Fatal(err)
	}
	if !d.Replaced() || d.Adopted() {
		t.Fatalf("Replaced %v, Adopted %v; want true, false", d.Replaced(), d.Adopted())
	}
	return d
}

// TestReplacingOpenKeepsPins: a replacing Open leaves the old plane's pins
// as found (the same maps by id, none added, even for a set lacking a map
// of this build), puts its fresh maps under next/, and lbd status keeps
// reading the old plane; Unpin (a start failing before its Attach) removes
// next/ only, and the old program forwards throughout.
func TestReplacingOpenKeepsPins(t *testing.T) {
	for _, odd := range []bool{false, true} {
		t.Run(map[bool]string{false: "same set", true: "lacking lb_frags, extra pin"}[odd], func(t *testing.T) {
			tp := newTopo(t)
			c := tp.listen(t, 5000)
			pin := testPinPath(t)
			found := oldPlane(t, tp, pin, odd)
			d := openReplacing(t, tp, pin)
			requireIDs(t, pin, found, "after the replacing Open")
			fresh := objIDs(t, d)
			requireIDs(t, filepath.Join(pin, pinNext), fresh, "the fresh maps")
			for n, id := range fresh {
				if found[n] == id {
					t.Errorf("fresh map %s is the old one (id %d)", n, id)
				}
			}
			if !odd {
				requireReadsOld(t, pin, len(tp.services()))
			}
			tp.expectForwarded(t, c, true, "old program while the replacing start runs")
			if err := d.Unpin(); err != nil {
				t.Fatal(err)
			}
			requireIDs(t, pin, found, "after Unpin")
			requireNoSwapDirs(t, pin, "after Unpin")
			tp.expectForwarded(t, c, true, "old program after Unpin")
			if !odd {
				requireReadsOld(t, pin, len(tp.services()))
			}
			// The next start finds the old plane again.
			opts := replacing(tp, pin)
			opts.ReplaceIncompatible = false
			if _, err := Open(opts, nil); !errors.Is(err, ErrIncompatible) {
				t.Fatalf("Open after Unpin = %v, want ErrIncompatible (the old plane pinned)", err)
			}
			requireIDs(t, pin, found, "after a refused Open")
		})
	}
}

// requireReadsOld: a read-only reader (lbd status) reads the old plane.
func requireReadsOld(t *testing.T, pin string, services int) {
	t.Helper()
	r, err := OpenReadOnly(pin)
	if err != nil {
		t.Fatalf("read-only open: %v", err)
	}
	defer r.Close()
	if st, err := r.Stats(); err != nil || len(st.Services) != services {
		t.Fatalf("read-only Stats: %d services, %v; want the old %d", len(st.Services), err, services)
	}
}

// TestReplacingAttachSwapsPins: once the replacing program is attached,
// the pin path is exactly this build's plane: the fresh maps (by id) at
// the live names, a map the old set lacked added, one this build lacks
// gone, no next/ or swapping/; the attached program forwards with them
// and a reader reads what Apply wrote. Both attach modes.
func TestReplacingAttachSwapsPins(t *testing.T) {
	for _, clsact := range []bool{false, true} {
		for _, odd := range []bool{false, true} {
			name := fmt.Sprintf("%s/%s", map[bool]string{false: "tcx", true: "clsact"}[clsact],
				map[bool]string{false: "same set", true: "lacking lb_frags, extra pin"}[odd])
			t.Run(name, func(t *testing.T) {
				tp := newTopo(t)
				c := tp.listen(t, 5000)
				pin := testPinPath(t)
				old := Options{PinPath: pin, MaglevTableSize: 251, ConntrackSize: 4096, ForceClsact: clsact}
				tp.openIn(t, old).Close()
				if odd {
					makeOdd(t, pin)
				}
				opts := replacing(tp, pin)
				opts.ForceClsact = clsact
				var d *Datapath
				svcs := tp.services()[:1] // the old plane has two: a reader must see the new one
				err := inNetns(tp.lb, func() (err error) {
					if d, err = Open(opts, nil); err != nil {
						return err
					}
					if err := d.Apply(svcs); err != nil {
						return err
					}
					return d.Attach()
				})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { inNetns(tp.lb, d.Remove) })
				fresh := objIDs(t, d)
				requireIDs(t, pin, fresh, "after Attach")
				requireNoSwapDirs(t, pin, "after Attach")
				if _, ok := fresh[bpfMapLbFrags]; !ok {
					t.Fatal("this build pins no lb_frags: the test's old set lacks nothing")
				}
				tp.expectForwarded(t, c, true, "the replacing program")
				requireReadsOld(t, pin, len(svcs))
				// The next start adopts them.
				opts.ReplaceIncompatible = false
				var d2 *Datapath
				if err := inNetns(tp.lb, func() (err error) { d2, err = Open(opts, nil); return err }); err != nil {
					t.Fatalf("Open after the swap: %v", err)
				}
				defer d2.Close()
				if !d2.Adopted() || d2.Replaced() {
					t.Fatalf("after the swap: Adopted %v, Replaced %v; want true, false", d2.Adopted(), d2.Replaced())
				}
			})
		}
	}
}

// TestReplacingAttachFails: an attach failing after the rename to
// swapping/ puts the fresh maps back under next/ (the next Open must not
// move them over the maps that still forward); Unpin then leaves the old
// plane as found.
func TestReplacingAttachFails(t *testing.T) {
	tp := newTopo(t)
	c := tp.listen(t, 5000)
	pin := testPinPath(t)
	found := oldPlane(t, tp, pin, false)
	d := openReplacing(t, tp, pin)
	fresh := objIDs(t, d)
	failAttach(t, tp, d, func() error { return nil })
	requireIDs(t, pin, found, "after the failed Attach")
	requireIDs(t, filepath.Join(pin, pinNext), fresh, "fresh maps after the failed Attach")
	if _, err := os.Lstat(filepath.Join(pin, pinSwapping)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("swapping/ after the failed Attach: %v, want none", err)
	}
	tp.expectForwarded(t, c, true, "old program after the failed Attach")
	requireUnpinKeeps(t, d, found)
}

// failAttach makes d's attach syscall fail (the "swap begun" hook), after
// before ran, and requires Attach to fail.
func failAttach(t *testing.T, tp *topo, d *Datapath, before func() error) {
	t.Helper()
	d.faultAt = func(step string) error {
		if step != "swap begun" {
			return nil
		}
		if err := before(); err != nil {
			return err
		}
		return errors.New("injected attach failure")
	}
	if err := inNetns(tp.lb, d.Attach); err == nil {
		t.Fatal("Attach succeeded despite the injected failure")
	}
}

// requireUnpinKeeps unpins d (a start failing before its Attach) and
// requires the pin path to hold the maps of found, nothing set aside.
func requireUnpinKeeps(t *testing.T, d *Datapath, found map[string]ebpf.MapID) {
	t.Helper()
	if err := d.Unpin(); err != nil {
		t.Fatal(err)
	}
	requireIDs(t, d.opts.PinPath, found, "after Unpin")
	requireNoSwapDirs(t, d.opts.PinPath, "after Unpin")
}

// TestReplacingAttachFailsStuck: an attach that fails and whose fresh maps
// cannot go back to next/ (here a next/ that is not empty) still leaves
// the live pins to Unpin: they are the earlier program's, which forwards.
func TestReplacingAttachFailsStuck(t *testing.T) {
	tp := newTopo(t)
	pin := testPinPath(t)
	found := oldPlane(t, tp, pin, false)
	d := openReplacing(t, tp, pin)
	failAttach(t, tp, d, func() error { return os.MkdirAll(filepath.Join(pin, pinNext, "stuck"), 0o700) })
	requireUnpinKeeps(t, d, found)
}

// TestSettleNext: a replacing start killed before its Attach leaves next/:
// the next Open removes it and adopts the old plane, still intact.
func TestSettleNext(t *testing.T) {
	pin := testPinPath(t)
	old := Options{PinPath: pin, MaglevTableSize: 251}
	mustOpen(t, old).Close()
	found := pinnedIDs(t, pin)
	d := mustOpen(t, Options{PinPath: pin, MaglevTableSize: 1009, ReplaceIncompatible: true})
	d.Close() // killed: next/ stays
	if _, err := os.Lstat(filepath.Join(pin, pinNext)); err != nil {
		t.Fatalf("next/ after the replacing Open: %v", err)
	}
	requireSettled(t, old, found, "next/")
}

// requireSettled opens opts (the pin path a killed start left what to
// settle in) and requires that it adopts the maps of ids, and that nothing
// stays set aside.
func requireSettled(t *testing.T, opts Options, ids map[string]ebpf.MapID, left string) {
	t.Helper()
	d := mustOpen(t, opts)
	defer d.Close()
	if !d.Adopted() {
		t.Fatalf("no plane adopted after settling %s", left)
	}
	requireIDs(t, opts.PinPath, ids, "after settling "+left)
	requireNoSwapDirs(t, opts.PinPath, "after settling "+left)
}

// TestSettleSwapping: a replacing start killed once it decided to attach
// leaves swapping/: its program forwards with those maps, so the next
// Open moves them in place (a retired pin goes, a missing one arrives)
// and adopts them.
func TestSettleSwapping(t *testing.T) {
	pin := testPinPath(t)
	mustOpen(t, Options{PinPath: pin, MaglevTableSize: 251}).Close()
	makeOdd(t, pin)
	opts := Options{PinPath: pin, MaglevTableSize: 1009, ReplaceIncompatible: true}
	d := mustOpen(t, opts)
	fresh := objIDs(t, d)
	if err := d.beginSwap(); err != nil {
		t.Fatal(err)
	}
	d.Close() // killed between the rename and the moves
	opts.ReplaceIncompatible = false
	requireSettled(t, opts, fresh, "swapping/")
}

// TestRemoveSwapDirs: lbd detach (Remove) after a replacing start left
// both next/ and swapping/ removes the whole pin path.
func TestRemoveSwapDirs(t *testing.T) {
	pin := testPinPath(t)
	mustOpen(t, Options{PinPath: pin, MaglevTableSize: 251}).Close()
	d := mustOpen(t, Options{PinPath: pin, MaglevTableSize: 1009, ReplaceIncompatible: true})
	if err := os.Mkdir(filepath.Join(pin, pinSwapping), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := d.objs.LbCfg.Pin(filepath.Join(pin, pinSwapping, bpfMapLbCfg)); err != nil {
		t.Fatal(err)
	}
	if err := d.Remove(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(pin); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("pin path after Remove: %v, want none", err)
	}
}

// TestReplacingKeepsOldCounters: verdict counters with fewer reasons are
// replaced by Open's first try (migrateGlobalStats) before it finds the
// rest incompatible: that refused try pins the old counters again, so the
// old plane stays as found, counters included (same map ids), through
// the replacing Open and its Unpin.
func TestReplacingKeepsOldCounters(t *testing.T) {
	pin := testPinPath(t)
	mustOpen(t, Options{PinPath: pin, MaglevTableSize: 251}).Close()
	pinOldGlobalStats(t, pin, uint32(numReasons-1))
	found := pinnedIDs(t, pin)
	opts := Options{PinPath: pin, MaglevTableSize: 1009}
	if _, err := Open(opts, nil); !errors.Is(err, ErrIncompatible) {
		t.Fatalf("Open = %v, want ErrIncompatible", err)
	}
	requireIDs(t, pin, found, "after a refused Open")
	opts.ReplaceIncompatible = true
	d := mustOpen(t, opts)
	if !d.Replaced() {
		t.Fatal("Open did not replace the incompatible maps")
	}
	requireIDs(t, pin, found, "after the replacing Open")
	if err := d.Unpin(); err != nil {
		t.Fatal(err)
	}
	requireIDs(t, pin, found, "after Unpin")
	requireNoSwapDirs(t, pin, "after Unpin")
}

// makeOdd makes the plane pinned at pin one of another build: lb_frags
// missing, and a map pinned as pinRetired that this build does not have.
func makeOdd(t *testing.T, pin string) {
	t.Helper()
	if err := os.Remove(filepath.Join(pin, bpfMapLbFrags)); err != nil {
		t.Fatal(err)
	}
	m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 4, MaxEntries: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if err := m.Pin(filepath.Join(pin, pinRetired)); err != nil {
		t.Fatal(err)
	}
}
