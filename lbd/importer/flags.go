package importer

import (
	"fmt"
	"strings"
)

// ParseAlohaFlags reads the --vip and --server values of `lbd import aloha`:
// --vip ADDR[:PORT] (every director without a VIP) or DIRECTOR=ADDR[:PORT];
// --server NAME=ADDR[:PORT] or DIRECTOR/NAME=ADDR[:PORT].
func ParseAlohaFlags(vips, servers []string) (AlohaFlags, error) {
	f := AlohaFlags{VIPs: map[string]string{}, Servers: map[string]string{}}
	for _, v := range vips {
		name, addr, ok := strings.Cut(v, "=")
		if !ok {
			name, addr = "", v
		}
		if _, _, ok := splitAddrPort(addr); !ok {
			return f, &FlagError{Msg: fmt.Sprintf("--vip %s: %q is not an address such as 192.0.2.10 or 192.0.2.10:443", v, addr)}
		}
		if _, dup := f.VIPs[name]; dup {
			return f, &FlagError{Msg: fmt.Sprintf("--vip %s: given twice for the same director", v)}
		}
		f.VIPs[name] = addr
	}
	for _, v := range servers {
		name, addr, ok := strings.Cut(v, "=")
		if !ok || name == "" {
			return f, &FlagError{Msg: fmt.Sprintf("--server %s: write NAME=ADDR[:PORT], e.g. exchange1=192.0.2.11:443", v)}
		}
		if _, _, ok := splitAddrPort(addr); !ok {
			return f, &FlagError{Msg: fmt.Sprintf("--server %s: %q is not an address such as 192.0.2.11 or 192.0.2.11:443", v, addr)}
		}
		if _, dup := f.Servers[name]; dup {
			return f, &FlagError{Msg: fmt.Sprintf("--server %s: given twice for the same server", v)}
		}
		f.Servers[name] = addr
	}
	return f, nil
}
