// Package sysctl reads and writes the IPv4 per-interface ("conf") sysctls
// hostprep manages, in the network namespace of the calling thread.
//
// Values go through github.com/lorenzosaino/go-sysctl, except for interfaces
// whose name contains a '.' (VLANs such as eth0.100): go-sysctl turns every
// '.' of a key into '/', so "net.ipv4.conf.eth0.100.arp_ignore" would become
// .../eth0/100/arp_ignore. Those keys are read and written as files under
// /proc/sys directly, which is what go-sysctl does for the others.
package sysctl

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	gosysctl "github.com/lorenzosaino/go-sysctl"
)

// Special interface names of net.ipv4.conf.
const (
	All     = "all"     // applies to every interface (for arp_*, as max(all, interface))
	Default = "default" // copied into interfaces created later
)

// Key names net.ipv4.conf.<Iface>.<Param>.
type Key struct {
	Iface string // "all", "default" or an interface name
	Param string // e.g. "arp_ignore"
}

// Conf returns the key net.ipv4.conf.<iface>.<param>.
func Conf(iface, param string) Key { return Key{Iface: iface, Param: param} }

// String is the key as sysctl(8) and sysctl.d(5) write it: dotted, or with
// '/' separators when the interface name itself contains a '.'.
func (k Key) String() string {
	if k.dotted() {
		return "net/ipv4/conf/" + k.Iface + "/" + k.Param
	}
	return "net.ipv4.conf." + k.Iface + "." + k.Param
}

func (k Key) dotted() bool { return strings.Contains(k.Iface, ".") }

// ParseKey parses the String form of a key (as stored in the state file).
func ParseKey(s string) (Key, error) {
	if rest, ok := strings.CutPrefix(s, "net/ipv4/conf/"); ok {
		iface, param, ok := strings.Cut(rest, "/")
		if ok && iface != "" && param != "" && !strings.Contains(param, "/") {
			return Key{iface, param}, nil
		}
	} else if rest, ok := strings.CutPrefix(s, "net.ipv4.conf."); ok {
		if i := strings.LastIndexByte(rest, '.'); i > 0 && i < len(rest)-1 {
			return Key{rest[:i], rest[i+1:]}, nil
		}
	}
	return Key{}, fmt.Errorf("parse sysctl key %q: want net.ipv4.conf.IFACE.PARAM", s)
}

// Kernel accesses the live sysctls under a procfs sys directory.
type Kernel struct {
	dir    string // normally /proc/sys
	client *gosysctl.Client
}

// NewKernel returns a Kernel for dir ("" means /proc/sys).
func NewKernel(dir string) (*Kernel, error) {
	if dir == "" {
		dir = "/proc/sys"
	}
	c, err := gosysctl.NewClient(dir)
	if err != nil {
		return nil, fmt.Errorf("open sysctls under %s: %w (is /proc mounted?)", dir, err)
	}
	return &Kernel{dir: dir, client: c}, nil
}

func (k *Kernel) path(key Key) string {
	return filepath.Join(k.dir, "net", "ipv4", "conf", key.Iface, key.Param)
}

// Get returns the value of key, without surrounding white space.
func (k *Kernel) Get(key Key) (string, error) {
	var v string
	var err error
	if key.dotted() {
		var b []byte
		b, err = os.ReadFile(k.path(key))
		v = strings.TrimSpace(string(b))
	} else {
		v, err = k.client.Get(key.String())
	}
	if err != nil {
		return "", fmt.Errorf("read sysctl %s: %w", key, err)
	}
	return v, nil
}

// Set writes value to key.
func (k *Kernel) Set(key Key, value string) error {
	var err error
	if key.dotted() {
		err = os.WriteFile(k.path(key), []byte(value), 0o644)
	} else {
		err = k.client.Set(key.String(), value)
	}
	if err != nil {
		return fmt.Errorf("set sysctl %s=%s: %w", key, value, err)
	}
	return nil
}

// Interfaces lists the interfaces that have IPv4 conf sysctls, sorted,
// without "all" and "default".
func (k *Kernel) Interfaces() ([]string, error) {
	ents, err := os.ReadDir(filepath.Join(k.dir, "net", "ipv4", "conf"))
	if err != nil {
		return nil, fmt.Errorf("list interfaces in %s/net/ipv4/conf: %w", k.dir, err)
	}
	var out []string
	for _, e := range ents {
		if n := e.Name(); n != All && n != Default {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out, nil
}
