package datapath

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/cilium/ebpf"
)

// A replacing Open (Options.ReplaceIncompatible) never touches the maps
// pinned under Options.PinPath before its own program forwards: the
// earlier program keeps forwarding with them, `lbd status` keeps reading
// them, and a start that fails or dies before its Attach leaves them as
// found. The fresh maps are pinned under pinNext instead; Attach renames
// that to pinSwapping just before the attach syscall and, once the program
// is attached, moves each pin over the live one (rename replaces a bpffs
// pin atomically). bpffs refuses names containing a dot, hence plain ones.
const (
	pinNext     = "next"     // fresh maps of a replacing Open, until its Attach
	pinSwapping = "swapping" // the same, from just before the attach syscall until moved in place
)

// swapState says where this Datapath's maps are pinned.
type swapState uint8

const (
	swapNone  swapState = iota // under PinPath (or nowhere)
	swapNext                   // under PinPath/next: a replacing Open, before its Attach
	swapBegun                  // under PinPath/swapping: Attach is attaching
)

// settlePins finishes or discards what a start that died left under the
// pin path, before Open reads it. swapping/: that start had decided to
// attach, so its program forwards with those maps, and they are moved in
// place. The residual window: had it died between the rename and the
// attach syscall itself, the earlier program still forwards with the old
// maps, which this unpins (the kernel keeps them for that program); this
// Open then adopts the dead start's programmed maps and its Attach puts
// its program on them, as before this design for any replacing start.
// next/: that start died before attaching; the old plane is intact and
// next/ is removed.
func (d *Datapath) settlePins() error {
	pin := d.opts.PinPath
	if exists(filepath.Join(pin, pinSwapping)) {
		d.log.Warn("an earlier start died while attaching its replacing program: moving its maps in place",
			"pin_path", pin, "dir", pinSwapping)
		if err := moveSwapped(pin); err != nil {
			return fmt.Errorf("settle %s: %w; its program forwards with those maps: move its pins into %s by hand (mv, over the old ones) and start again",
				filepath.Join(pin, pinSwapping), err, pin)
		}
	}
	if exists(filepath.Join(pin, pinNext)) {
		d.log.Warn("an earlier start died before attaching its replacing program: removing its maps, the pinned ones stay",
			"pin_path", pin, "dir", pinNext)
		if err := os.RemoveAll(filepath.Join(pin, pinNext)); err != nil {
			return fmt.Errorf("remove %s: %w; delete it by hand and start again", filepath.Join(pin, pinNext), err)
		}
	}
	return nil
}

// beginSwap runs just before the attach syscall of a replacing start:
// from here a crash leaves swapping/, which the next Open moves in place.
// Idempotent (the tcx attempt and the clsact fallback both call it).
func (d *Datapath) beginSwap() error {
	if d.swap != swapNext {
		return nil
	}
	if err := os.Rename(filepath.Join(d.opts.PinPath, pinNext), filepath.Join(d.opts.PinPath, pinSwapping)); err != nil {
		return fmt.Errorf("prepare to swap in the fresh maps: %w", err)
	}
	d.swap = swapBegun
	return d.fault("swap begun") // test hook: the attach syscall failing
}

// abortSwap undoes beginSwap after a failed attach: the earlier program
// still forwards with the live maps, so swapping/ must not be moved over
// them by the next Open. When it cannot go back to next/, it is deleted.
func (d *Datapath) abortSwap() {
	if d.swap != swapBegun {
		return
	}
	swapping := filepath.Join(d.opts.PinPath, pinSwapping)
	if err := os.Rename(swapping, filepath.Join(d.opts.PinPath, pinNext)); err != nil {
		d.log.Warn("attach failed and the fresh maps cannot go back to next/: deleting them", "dir", swapping, "err", err)
		if err := os.RemoveAll(swapping); err != nil {
			d.log.Error("attach failed and the fresh maps are left in "+swapping+": delete it (rm -r) before lbd starts again, "+
				"or the next start moves them over the maps that still forward", "err", err)
		}
	}
	// Not live, wherever they are: Unpin must leave the pins under the
	// pin path, which the earlier program forwards with.
	d.swap = swapNext
}

// finishSwap runs once the program is attached: its maps go live. A
// failure is logged, not returned (the program forwards either way); the
// next Open finishes the moves.
func (d *Datapath) finishSwap() {
	if d.swap != swapBegun {
		return
	}
	d.swap = swapNone
	if err := moveSwapped(d.opts.PinPath); err != nil {
		d.log.Warn("attached, but not every fresh map is pinned in place yet; the next start finishes it",
			"dir", filepath.Join(d.opts.PinPath, pinSwapping), "err", err)
		return
	}
	d.log.Info("replaced the pinned maps with this program's", "pin_path", d.opts.PinPath)
}

// moveSwapped moves every pin of pin/swapping over the one of the same
// name in pin (or into it), deletes pinned maps of pin that neither
// swapping/ nor this build has (an older layout's), then swapping/: the
// pin path becomes a normal plane of this build.
func moveSwapped(pin string) error {
	swapping := filepath.Join(pin, pinSwapping)
	entries, err := os.ReadDir(swapping)
	if err != nil {
		return fmt.Errorf("list %s: %w", swapping, err)
	}
	keep := []string{pinLink, pinProgram, pinNext, pinSwapping}
	for _, e := range entries {
		if err := os.Rename(filepath.Join(swapping, e.Name()), filepath.Join(pin, e.Name())); err != nil {
			return fmt.Errorf("move pin %s in place: %w", e.Name(), err)
		}
		keep = append(keep, e.Name())
	}
	names, err := pinnedMapNames()
	if err != nil {
		return err
	}
	keep = append(keep, names...)
	live, err := os.ReadDir(pin)
	if err != nil {
		return fmt.Errorf("list %s: %w", pin, err)
	}
	for _, e := range live {
		if slices.Contains(keep, e.Name()) || !isPinnedMap(filepath.Join(pin, e.Name())) {
			continue
		}
		if err := os.Remove(filepath.Join(pin, e.Name())); err != nil {
			return fmt.Errorf("unpin map %s this build does not have: %w", e.Name(), err)
		}
	}
	if err := os.Remove(swapping); err != nil {
		return fmt.Errorf("remove %s: %w", swapping, err)
	}
	return nil
}

// pinnedMapNames are the names of the maps this build pins.
func pinnedMapNames() ([]string, error) {
	spec, err := loadBpf()
	if err != nil {
		return nil, fmt.Errorf("load program spec: %w", err)
	}
	var names []string
	for name := range spec.Maps {
		if !strings.HasPrefix(name, ".") && !programOwn(name) {
			names = append(names, name)
		}
	}
	return names, nil
}

// pinsPresent are the names of this build's maps pinned under dir.
func pinsPresent(dir string) ([]string, error) {
	names, err := pinnedMapNames()
	if err != nil {
		return nil, err
	}
	return slices.DeleteFunc(names, func(n string) bool { return !exists(filepath.Join(dir, n)) }), nil
}

// unpinCreated deletes the map pins under dir that are not in before: the
// ones a refused load created (cilium/ebpf pins a missing map before it
// finds another incompatible), so a refused Open leaves the pins as found.
func (d *Datapath) unpinCreated(dir string, before []string) error {
	now, err := pinsPresent(dir)
	if err != nil {
		return err
	}
	for _, name := range now {
		if slices.Contains(before, name) {
			continue
		}
		if err := os.Remove(filepath.Join(dir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("unpin map %s made by the refused load: %w", name, err)
		}
	}
	return nil
}

func isPinnedMap(path string) bool {
	m, err := ebpf.LoadPinnedMap(path, &ebpf.LoadPinOptions{ReadOnly: true})
	if err != nil {
		return false
	}
	m.Close()
	return true
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}
