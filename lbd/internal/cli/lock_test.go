package cli

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dsrlb/dsrlb/internal/nettest"
)

// TestPinLockOneOwner: the lock is exclusive while held, says who holds
// it, and is free again once released (as when lbd exits).
func TestPinLockOneOwner(t *testing.T) {
	pin := filepath.Join(t.TempDir(), "pins")
	if err := preparePinDir(pin); err != nil {
		t.Fatal(err)
	}
	if held, _ := lockHolder(pin); held {
		t.Fatal("fresh pin directory reported locked")
	}
	first, err := lockPinDir(pin)
	if err != nil {
		t.Fatal(err)
	}
	if held, _ := lockHolder(pin); !held {
		t.Error("held lock not seen by lockHolder")
	}
	_, err = lockPinDir(pin)
	var ar *alreadyRunning
	if !errors.As(err, &ar) || !strings.HasPrefix(err.Error(), "lbd is already running (pid") {
		t.Fatalf("second lock: %v, want lbd is already running", err)
	}
	first.release()
	again, err := lockPinDir(pin)
	if err != nil {
		t.Fatalf("lock after release: %v", err)
	}
	again.release()
}

// TestPinDirOwnership: created 0700; a directory of another user is
// refused; our own with wider permissions is tightened.
func TestPinDirOwnership(t *testing.T) {
	pin := filepath.Join(t.TempDir(), "pins")
	if err := preparePinDir(pin); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(pin); fi.Mode().Perm() != 0o700 {
		t.Errorf("pin directory created %04o, want 0700", fi.Mode().Perm())
	}
	os.Chmod(pin, 0o777)
	if err := preparePinDir(pin); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(pin); fi.Mode().Perm() != 0o700 {
		t.Errorf("own pin directory left %04o, want 0700", fi.Mode().Perm())
	}
	nettest.RequireRoot(t, "chown to another user")
	if err := os.Chown(pin, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	err := preparePinDir(pin)
	if err == nil || !strings.Contains(err.Error(), "owned by uid 65534") {
		t.Errorf("pin directory of another user: %v, want a refusal naming uid 65534", err)
	}
}
