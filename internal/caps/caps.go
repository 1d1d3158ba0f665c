// Package caps reads the calling process's effective capabilities, for
// the privilege checks of lbd and hostprep (one parser of CapEff).
package caps

import (
	"bufio"
	"errors"
	"os"
	"strconv"
	"strings"
)

// Effective returns the CapEff mask of /proc/self/status: bit N set means
// capability N (linux/capability.h) is in effect.
func Effective() (uint64, error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "CapEff:"); ok {
			return strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		}
	}
	return 0, errors.New("read /proc/self/status: no CapEff line")
}
