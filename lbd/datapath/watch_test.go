package datapath

import (
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/cilium/ebpf/link"
)

// TestDetachNoticedAndRepaired: a tcx link detached behind the daemon's
// back is reported by CheckAttached and by a Reader, Reattach restores
// forwarding, and both report it attached again.
func TestDetachNoticedAndRepaired(t *testing.T) {
	tp := newTopo(t)
	c := tp.listen(t, 5000)
	pin := testPinPath(t)
	d := tp.openIn(t, Options{PinPath: pin, MaglevTableSize: 251, ConntrackSize: 4096})
	t.Cleanup(func() { inNetns(tp.lb, d.Remove) })
	check := func(wantErr bool, what string) {
		t.Helper()
		var cerr, rerr error
		err := inNetns(tp.lb, func() error {
			cerr = d.CheckAttached()
			r, err := OpenReadOnly(pin)
			if err != nil {
				return err
			}
			defer r.Close()
			rerr = r.Attachment(tp.lbIface)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		for who, e := range map[string]error{"CheckAttached": cerr, "Reader.Attachment": rerr} {
			if wantErr != errors.Is(e, ErrNotAttached) {
				t.Errorf("%s: %s: %v, want not attached = %v", what, who, e, wantErr)
			}
		}
	}
	check(false, "after Attach")
	l, err := link.LoadPinnedLink(filepath.Join(pin, pinLink), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Detach(); err != nil {
		t.Fatal(err)
	}
	l.Close()
	check(true, "link detached")
	tp.expectForwarded(t, c, false, "link detached")
	if err := inNetns(tp.lb, d.Reattach); err != nil {
		t.Fatalf("reattach: %v", err)
	}
	check(false, "after Reattach")
	tp.expectForwarded(t, c, true, "after Reattach")
}

// TestAttachedFound: Attached tells a data plane Open found attached
// (tcx link or cls_bpf filter left by an earlier lbd) from one found
// detached, before this Datapath attaches anything.
func TestAttachedFound(t *testing.T) {
	for _, clsact := range []bool{false, true} {
		t.Run(map[bool]string{false: "tcx", true: "clsact"}[clsact], func(t *testing.T) {
			tp := newTopo(t)
			opts := Options{PinPath: testPinPath(t), MaglevTableSize: 251, ConntrackSize: 4096, ForceClsact: clsact, Interface: tp.lbIface}
			attached := func(what string, want bool) {
				t.Helper()
				var got bool
				err := inNetns(tp.lb, func() error {
					d, err := Open(opts, nil)
					if err != nil {
						return err
					}
					defer d.Close()
					got, err = d.Attached()
					return err
				})
				if err != nil || got != want {
					t.Fatalf("%s: Attached = %v, %v; want %v", what, got, err, want)
				}
			}
			attached("nothing pinned", false)
			d := tp.openIn(t, opts)
			t.Cleanup(func() { inNetns(tp.lb, d.Remove) })
			attached("attached by an earlier lbd", true)
			if err := inNetns(tp.lb, d.Detach); err != nil {
				t.Fatal(err)
			}
			attached("detached, maps still pinned", false)
		})
	}
}

// TestRestoreSettings: a second Open with other timeouts rewrites the
// adopted lb_cfg; RestoreSettings puts the first ones back and keeps the
// conntrack generation moved on.
func TestRestoreSettings(t *testing.T) {
	pin := testPinPath(t)
	first := mustOpen(t, Options{PinPath: pin, TCPTimeout: 10 * time.Minute, UDPTimeout: 30 * time.Second})
	found := readCfg(t, first)
	first.Close()
	second := mustOpen(t, Options{PinPath: pin, TCPTimeout: 20 * time.Minute, UDPTimeout: time.Minute})
	if got := readCfg(t, second); !second.Adopted() || got.TcpTimeoutNs != uint64(20*time.Minute) || got.CtGen <= found.CtGen {
		t.Fatalf("adopting Open wrote %+v (adopted %v): want its own timeouts and a newer generation than %d", got, second.Adopted(), found.CtGen)
	}
	if err := second.RestoreSettings(); err != nil {
		t.Fatal(err)
	}
	got := readCfg(t, second)
	want := found
	want.CtGen = got.CtGen
	if got != want || got.CtGen <= found.CtGen {
		t.Errorf("lb_cfg after RestoreSettings %+v, want as found %+v with the generation moved on", got, found)
	}
}

func readCfg(t *testing.T, d *Datapath) bpfLbConfig {
	t.Helper()
	var cfg bpfLbConfig
	if err := d.objs.LbCfg.Lookup(uint32(0), &cfg); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestReplacedNotAdopted: maps replaced for incompatible ones are fresh,
// not adopted, although Open first read the old lb_cfg. The old program
// stays attached (Attached reports it) and forwards with its old maps
// until Attach; RestoreSettings leaves the new maps' settings alone
// (writing the old table size back would make them incompatible to this
// very configuration); Unpin leaves that old program forwarding with its
// maps still pinned (TestReplacingOpenKeepsPins has the details), so the
// next Open finds them incompatible again and replaces them.
func TestReplacedNotAdopted(t *testing.T) {
	tp := newTopo(t)
	c := tp.listen(t, 5000)
	pin := testPinPath(t)
	old := tp.openIn(t, Options{PinPath: pin, MaglevTableSize: 251, ConntrackSize: 4096})
	old.Close()
	opts := Options{PinPath: pin, MaglevTableSize: 1009, ConntrackSize: 4096, Interface: tp.lbIface, ReplaceIncompatible: true}
	var d *Datapath
	if err := inNetns(tp.lb, func() (err error) { d, err = Open(opts, nil); return err }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { inNetns(tp.lb, d.Remove) })
	if d.Adopted() || !d.Replaced() {
		t.Fatalf("replaced maps: Adopted %v, Replaced %v; want false, true", d.Adopted(), d.Replaced())
	}
	var attached bool
	if err := inNetns(tp.lb, func() (err error) { attached, err = d.Attached(); return err }); err != nil || !attached {
		t.Fatalf("Attached = %v, %v; want the old program found attached", attached, err)
	}
	tp.expectForwarded(t, c, true, "old program, replaced maps not yet attached")
	if err := d.RestoreSettings(); err != nil {
		t.Fatal(err)
	}
	if cfg := readCfg(t, d); cfg.TableSize != 1009 {
		t.Fatalf("RestoreSettings on replaced maps wrote table size %d, want this Open's 1009", cfg.TableSize)
	}
	if err := d.Unpin(); err != nil {
		t.Fatal(err)
	}
	tp.expectForwarded(t, c, true, "after Unpin: the old program with its maps")
	opts.ReplaceIncompatible = false
	if err := inNetns(tp.lb, func() (err error) { d, err = Open(opts, nil); return err }); !errors.Is(err, ErrIncompatible) {
		t.Fatalf("Open after Unpin = %v, want ErrIncompatible: the old maps still pinned", err)
	}
	opts.ReplaceIncompatible = true
	d = tp.openIn(t, opts)
	if d.Adopted() || !d.Replaced() {
		t.Fatalf("replacing again: Adopted %v, Replaced %v; want false, true", d.Adopted(), d.Replaced())
	}
	tp.expectForwarded(t, c, true, "the next start, attached")
}

// TestAttachCleanupFailureIsAttached: once the program is attached, a
// failure of what Attach does after (removing a clsact-era filter for tcx,
// pinning the program for clsact) is not returned: the daemon would undo
// the start as one whose program never forwarded, while it forwards.
func TestAttachCleanupFailureIsAttached(t *testing.T) {
	for _, clsact := range []bool{false, true} {
		t.Run(map[bool]string{false: "tcx", true: "clsact"}[clsact], func(t *testing.T) {
			tp := newTopo(t)
			opts := Options{PinPath: testPinPath(t), MaglevTableSize: 251, ConntrackSize: 4096, ForceClsact: clsact, Interface: tp.lbIface}
			var faulted []string
			err := inNetns(tp.lb, func() error {
				d, err := Open(opts, nil)
				if err != nil {
					return err
				}
				defer d.Remove()
				d.faultAt = func(step string) error {
					faulted = append(faulted, step)
					return fmt.Errorf("injected at %s", step)
				}
				if err := d.Attach(); err != nil {
					return fmt.Errorf("Attach = %w; want nil once the program is attached", err)
				}
				if up, err := d.Attached(); err != nil || !up {
					return fmt.Errorf("Attached = %v, %v after Attach; want true", up, err)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if len(faulted) != 1 || faulted[0] != "attach cleanup" {
				t.Fatalf("faults injected at %q; want once, at attach cleanup", faulted)
			}
		})
	}
}
