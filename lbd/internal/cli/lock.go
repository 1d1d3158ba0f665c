package cli

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/dsrlb/dsrlb/internal/runfiles"
)

// pinLock is an flock on the pin directory: `lbd run` holds it for its
// whole life, so exactly one lbd owns a data plane; `lbd detach` takes it
// for the time it works; `lbd status` only tests it. The kernel drops it
// when the process ends, however it ends, so a killed lbd never leaves a
// stale lock behind (unlike its PID file).
type pinLock struct{ f *os.File }

// alreadyRunning is the refusal of a second `lbd run` (or of detach).
type alreadyRunning struct {
	pin string
	pid int // 0 when the PID file is unreadable
}

func (e *alreadyRunning) Error() string {
	if e.pid > 0 {
		return fmt.Sprintf("lbd is already running (pid %d) on the data plane pinned at %s", e.pid, e.pin)
	}
	return fmt.Sprintf("lbd is already running (pid unknown: %s is missing) on the data plane pinned at %s", pidFile(e.pin), e.pin)
}

// preparePinDir creates the pin directory 0700 when missing and refuses
// one that is not a plain directory owned by lbd's user: /sys/fs/bpf is
// world-writable on some hosts (1777), and a directory another user made
// could hold maps or a link of theirs that lbd would adopt and run.
func preparePinDir(pin string) error {
	if err := os.MkdirAll(pin, 0o700); err != nil {
		return fmt.Errorf("create pin directory %s: %w", pin, err)
	}
	if err := checkPinDir(pin); err != nil {
		return err
	}
	// Ours but open to others (made by hand, or under another umask): the
	// maps hold backend addresses and the link steers traffic.
	if err := os.Chmod(pin, 0o700); err != nil {
		return fmt.Errorf("restrict pin directory %s to 0700: %w", pin, err)
	}
	return nil
}

// checkPinDir is preparePinDir's ownership check alone (a missing
// directory is fine: lbd run creates it).
func checkPinDir(pin string) error {
	fi, err := os.Lstat(pin)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("check pin directory %s: %w", pin, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("pin directory %s is not a directory (%s): remove it or set another balancer.pin_path", pin, fi.Mode().Type())
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if ok && int(st.Uid) != os.Geteuid() {
		return fmt.Errorf("pin directory %s is owned by uid %d, not by lbd's uid %d: another user created it; "+
			"check what it holds, remove it (rm -r %s) or set another balancer.pin_path", pin, st.Uid, os.Geteuid(), pin)
	}
	return nil
}

// lockPinDir takes the exclusive lock on pin, without waiting: a held
// lock returns *alreadyRunning naming the holder's PID.
func lockPinDir(pin string) (*pinLock, error) {
	f, err := os.OpenFile(pin, os.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open pin directory %s to lock it: %w", pin, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, &alreadyRunning{pin: pin, pid: readPID(pidFile(pin))}
		}
		return nil, fmt.Errorf("lock pin directory %s: %w", pin, err)
	}
	return &pinLock{f: f}, nil
}

func (l *pinLock) release() {
	if l != nil {
		l.f.Close()
	}
}

// lockHolder tells whether an lbd holds the lock on pin and its PID (0 if
// unknown); a missing pin directory is not locked. It takes a shared lock
// for an instant, which never disturbs a running lbd.
func lockHolder(pin string) (bool, int) {
	f, err := os.OpenFile(pin, os.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return false, 0
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_SH|unix.LOCK_NB); errors.Is(err, unix.EWOULDBLOCK) {
		return true, readPID(pidFile(pin))
	}
	return false, 0
}

func readPID(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return 0
	}
	return pid
}

// seenFile records when an lbd last ran on the pin path (its mtime), for
// `lbd status` to say how old the frozen backend states are.
func seenFile(pinPath string) string { return runfiles.For(pinPath).Seen }

// vipsFile records the VIPs this instance added (one per line), so `lbd
// detach` releases exactly those, also on kernels without IFA_PROTO.
func vipsFile(pinPath string) string { return runfiles.For(pinPath).VIPs }

// reasonsFile is where the daemon records why backends are out of
// rotation (daemon.ReadReasons), for `lbd status`.
func reasonsFile(pinPath string) string {
	return strings.TrimSuffix(pidFile(pinPath), ".pid") + ".reasons"
}

func ensureRunDir() error {
	return os.MkdirAll(filepath.Clean(RunDir), 0o755)
}
