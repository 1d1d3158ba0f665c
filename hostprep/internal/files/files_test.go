package files

import (
	"os"
	"path/filepath"
	"testing"
)

func TestWriteReadRemove(t *testing.T) {
	root := t.TempDir()
	fs := FS{Root: root}
	if _, ok, err := fs.Read("/etc/x/y.conf"); ok || err != nil {
		t.Fatalf("missing file: %v %v", ok, err)
	}
	if err := fs.Write("/etc/x/y.conf", []byte("one\n")); err != nil {
		t.Fatal(err)
	}
	full := filepath.Join(root, "etc/x/y.conf")
	st, err := os.Stat(full)
	if err != nil || st.Mode().Perm() != Mode {
		t.Fatalf("stat %v, %v", st, err)
	}
	if err := fs.Write("/etc/x/y.conf", []byte("two\n")); err != nil {
		t.Fatal(err)
	}
	if b, ok, err := fs.Read("/etc/x/y.conf"); string(b) != "two\n" || !ok || err != nil {
		t.Fatalf("read %q %v %v", b, ok, err)
	}
	ents, _ := os.ReadDir(filepath.Dir(full))
	if len(ents) != 1 {
		t.Errorf("temporary files left: %v", ents)
	}
	if err := fs.Remove("/etc/x/y.conf"); err != nil {
		t.Fatal(err)
	}
	if err := fs.Remove("/etc/x/y.conf"); err != nil {
		t.Errorf("removing a missing file: %v", err)
	}
}

func TestPath(t *testing.T) {
	if got := (FS{}).Path("/etc/a"); got != "/etc/a" {
		t.Error(got)
	}
	if got := (FS{Root: "/mnt/img"}).Path("/etc/a"); got != "/mnt/img/etc/a" {
		t.Error(got)
	}
}

func TestWriteFailureKeepsOldFile(t *testing.T) {
	root := t.TempDir()
	fs := FS{Root: root}
	if err := fs.Write("/a/f", []byte("old")); err != nil {
		t.Fatal(err)
	}
	// A directory where the file should be makes the rename fail.
	if err := fs.Write("/a/f/g", []byte("x")); err == nil {
		t.Fatal("write under a file succeeded")
	}
	if b, _, _ := fs.Read("/a/f"); string(b) != "old" {
		t.Errorf("old file changed: %q", b)
	}
}
