// Package fakehost is an in-memory host for unprivileged tests (addresses,
// sysctls, files) and a fault injector that makes a chosen operation of a
// real or fake host fail, to test rollback.
package fakehost

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"slices"
	"strings"
	"sync"

	"github.com/dsrlb/dsrlb/hostprep/internal/netops"
	"github.com/dsrlb/dsrlb/hostprep/internal/sysctl"
)

// Net is an in-memory address table.
type Net struct {
	mu    sync.Mutex
	Table []netops.Addr
	LoUp  bool
}

// Addrs lists the addresses.
func (n *Net) Addrs() ([]netops.Addr, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.Table), nil
}

// LoopbackUp reports lo's state.
func (n *Net) LoopbackUp() (bool, error) { return n.LoUp, nil }

// SetLoopbackUp sets lo's state.
func (n *Net) SetLoopbackUp(up bool) error { n.LoUp = up; return nil }

// AddAddr adds a, refusing a duplicate as the kernel does (EEXIST).
func (n *Net) AddAddr(a netops.Addr) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if slices.ContainsFunc(n.Table, func(b netops.Addr) bool { return b.Link == a.Link && b.Prefix == a.Prefix }) {
		return fmt.Errorf("add %s: file exists", a)
	}
	n.Table = append(n.Table, a)
	return nil
}

// DelAddr deletes a, failing when absent as the kernel does.
func (n *Net) DelAddr(a netops.Addr) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	i := slices.IndexFunc(n.Table, func(b netops.Addr) bool { return b.Link == a.Link && b.Prefix == a.Prefix })
	if i < 0 {
		return fmt.Errorf("delete %s: cannot assign requested address", a)
	}
	n.Table = slices.Delete(n.Table, i, i+1)
	return nil
}

// Sysctls is an in-memory sysctl table keyed by Key.String().
type Sysctls struct{ Values map[string]string }

// Get returns a value; a missing key is fs.ErrNotExist, as in /proc/sys.
func (s *Sysctls) Get(k sysctl.Key) (string, error) {
	v, ok := s.Values[k.String()]
	if !ok {
		return "", fmt.Errorf("read sysctl %s: %w", k, fs.ErrNotExist)
	}
	return v, nil
}

// Set sets a value of an existing key.
func (s *Sysctls) Set(k sysctl.Key, v string) error {
	if _, ok := s.Values[k.String()]; !ok {
		return fmt.Errorf("set sysctl %s: %w", k, fs.ErrNotExist)
	}
	s.Values[k.String()] = v
	return nil
}

// Interfaces lists the interfaces that have keys.
func (s *Sysctls) Interfaces() ([]string, error) {
	set := map[string]bool{}
	for name := range s.Values {
		if k, err := sysctl.ParseKey(name); err == nil && k.Iface != sysctl.All && k.Iface != sysctl.Default {
			set[k.Iface] = true
		}
	}
	return slices.Sorted(maps.Keys(set)), nil
}

// NewSysctls returns a table with all, default and ifaces, every ARP
// value 0.
func NewSysctls(ifaces ...string) *Sysctls {
	s := &Sysctls{Values: map[string]string{}}
	for _, i := range append([]string{sysctl.All, sysctl.Default}, ifaces...) {
		s.Values[sysctl.Conf(i, "arp_ignore").String()] = "0"
		s.Values[sysctl.Conf(i, "arp_announce").String()] = "0"
	}
	return s
}

// Files is an in-memory file system.
type Files struct{ Data map[string][]byte }

// Read returns a file's content.
func (f *Files) Read(p string) ([]byte, bool, error) {
	d, ok := f.Data[p]
	return slices.Clone(d), ok, nil
}

// Write stores a file.
func (f *Files) Write(p string, d []byte) error {
	if f.Data == nil {
		f.Data = map[string][]byte{}
	}
	f.Data[p] = slices.Clone(d)
	return nil
}

// Remove deletes a file.
func (f *Files) Remove(p string) error { delete(f.Data, p); return nil }

// ErrInjected is the error a Fault returns.
var ErrInjected = errors.New("injected failure")

// Fault makes the operation named Op fail when its argument contains Match
// (e.g. Op "AddAddr", Match "2001:db8::10"). Ops: AddAddr, DelAddr,
// SetLoopbackUp, Set (sysctl), Write, Remove.
type Fault struct {
	Op, Match string
	Hits      int // how often it failed
}

func (f *Fault) check(op string, arg fmt.Stringer) error {
	if f != nil && f.Op == op && strings.Contains(arg.String(), f.Match) {
		f.Hits++
		return fmt.Errorf("%s %s: %w", op, arg, ErrInjected)
	}
	return nil
}

type str string

func (s str) String() string { return string(s) }

// NetAPI is reconcile.Net (repeated to keep this package free of reconcile).
type NetAPI interface {
	Addrs() ([]netops.Addr, error)
	LoopbackUp() (bool, error)
	SetLoopbackUp(up bool) error
	AddAddr(netops.Addr) error
	DelAddr(netops.Addr) error
}

// SysctlAPI is reconcile.Sysctls.
type SysctlAPI interface {
	Get(sysctl.Key) (string, error)
	Set(sysctl.Key, string) error
	Interfaces() ([]string, error)
}

// FilesAPI is reconcile.Files.
type FilesAPI interface {
	Read(path string) ([]byte, bool, error)
	Write(path string, data []byte) error
	Remove(path string) error
}

// FaultyNet wraps a Net with a Fault.
type FaultyNet struct {
	NetAPI
	F *Fault
}

// AddAddr fails when the fault says so.
func (n FaultyNet) AddAddr(a netops.Addr) error {
	if err := n.F.check("AddAddr", a); err != nil {
		return err
	}
	return n.NetAPI.AddAddr(a)
}

// DelAddr fails when the fault says so.
func (n FaultyNet) DelAddr(a netops.Addr) error {
	if err := n.F.check("DelAddr", a); err != nil {
		return err
	}
	return n.NetAPI.DelAddr(a)
}

// SetLoopbackUp fails when the fault says so.
func (n FaultyNet) SetLoopbackUp(up bool) error {
	if err := n.F.check("SetLoopbackUp", str(fmt.Sprint(up))); err != nil {
		return err
	}
	return n.NetAPI.SetLoopbackUp(up)
}

// FaultySysctls wraps Sysctls with a Fault.
type FaultySysctls struct {
	SysctlAPI
	F *Fault
}

// Set fails when the fault says so.
func (s FaultySysctls) Set(k sysctl.Key, v string) error {
	if err := s.F.check("Set", str(k.String()+"="+v)); err != nil {
		return err
	}
	return s.SysctlAPI.Set(k, v)
}

// FaultyFiles wraps Files with a Fault.
type FaultyFiles struct {
	FilesAPI
	F *Fault
}

// Write fails when the fault says so.
func (f FaultyFiles) Write(p string, d []byte) error {
	if err := f.F.check("Write", str(p)); err != nil {
		return err
	}
	return f.FilesAPI.Write(p, d)
}

// Remove fails when the fault says so.
func (f FaultyFiles) Remove(p string) error {
	if err := f.F.check("Remove", str(p)); err != nil {
		return err
	}
	return f.FilesAPI.Remove(p)
}
