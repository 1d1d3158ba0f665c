// Package state is hostprep's memory of what it changed on a host, so that
// `hostprep remove` undoes exactly that and no more: the addresses it added,
// the sysctl values it found before its first change to them, the files it
// replaced (with their earlier content) and whether it brought lo up.
package state

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
)

// DefaultPath is where the state is kept (under --root, if given).
const DefaultPath = "/var/lib/dsrlb/hostprep-state.json"

// version of the file layout; a newer file is refused rather than misread.
const version = 1

// State is what hostprep changed on this host.
type State struct {
	Version int `json:"version"`
	// Addresses hostprep added to lo (absent before it ran).
	Addresses []netip.Prefix `json:"addresses,omitempty"`
	// Sysctls maps each key hostprep changed to the value it had before
	// hostprep's first change.
	Sysctls map[string]string `json:"sysctls,omitempty"`
	// Files maps each file hostprep wrote to its content before the first
	// write; nil means the file did not exist.
	Files map[string]*string `json:"files,omitempty"`
	// LoopbackUp is true when hostprep brought lo up (new namespaces start
	// with lo down).
	LoopbackUp bool `json:"loopback_up,omitempty"`
}

// Empty reports whether hostprep has nothing recorded.
func (s *State) Empty() bool {
	return len(s.Addresses) == 0 && len(s.Sysctls) == 0 && len(s.Files) == 0 && !s.LoopbackUp
}

// HasAddress reports whether hostprep added p.
func (s *State) HasAddress(p netip.Prefix) bool { return slices.Contains(s.Addresses, p) }

// AddAddress records that hostprep added p.
func (s *State) AddAddress(p netip.Prefix) {
	if !s.HasAddress(p) {
		s.Addresses = append(s.Addresses, p)
		slices.SortFunc(s.Addresses, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) })
	}
}

// DropAddress forgets p.
func (s *State) DropAddress(p netip.Prefix) {
	s.Addresses = slices.DeleteFunc(s.Addresses, func(q netip.Prefix) bool { return q == p })
}

// RecordSysctl keeps the value key had before hostprep's first change.
func (s *State) RecordSysctl(key, before string) {
	if _, ok := s.Sysctls[key]; !ok {
		s.Sysctls[key] = before
	}
}

// RecordFile keeps the content path had before hostprep's first write;
// exists false records that there was no file.
func (s *State) RecordFile(path string, before []byte, exists bool) {
	if _, ok := s.Files[path]; ok {
		return
	}
	if !exists {
		s.Files[path] = nil
		return
	}
	c := string(before)
	s.Files[path] = &c
}

// New returns an empty state.
func New() *State {
	return &State{Version: version, Sysctls: map[string]string{}, Files: map[string]*string{}}
}

// Decode parses a state file; empty data is an empty state.
func Decode(path string, data []byte) (*State, error) {
	s := New()
	if len(bytes.TrimSpace(data)) == 0 {
		return s, nil
	}
	if err := json.Unmarshal(data, s); err != nil {
		return nil, fmt.Errorf("read state %s: %w (if hostprep's changes were undone by hand, delete the file)", path, err)
	}
	if s.Version != version {
		return nil, fmt.Errorf("read state %s: layout version %d, this hostprep knows %d: use the hostprep that wrote it", path, s.Version, version)
	}
	if s.Sysctls == nil {
		s.Sysctls = map[string]string{}
	}
	if s.Files == nil {
		s.Files = map[string]*string{}
	}
	return s, nil
}

// Encode renders the state deterministically (sorted map keys, no
// timestamps), so an unchanged state is an unchanged file.
func (s *State) Encode() []byte {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		panic(fmt.Sprintf("encode state: %v", err)) // only plain types: cannot happen
	}
	return append(b, '\n')
}
