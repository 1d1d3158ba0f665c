// Package files reads and writes hostprep's files under a root directory,
// like `systemctl --root`: the path /etc/x is DIR/etc/x. Writes are atomic
// (temp file, fsync, rename, fsync of the directory), so a crash or a full
// disk leaves the old file or the new one, never half of either.
package files

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Mode of every file hostprep writes: configuration, readable by all.
const Mode = 0o644

// FS is the file system under Root ("" or "/" = the real one).
type FS struct{ Root string }

// Path is where the absolute path p lives under the root.
func (f FS) Path(p string) string {
	if f.Root == "" {
		return p
	}
	return filepath.Join(f.Root, p)
}

// Read returns p's content; exists is false when p does not exist.
func (f FS) Read(p string) (data []byte, exists bool, err error) {
	data, err = os.ReadFile(f.Path(p))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("read %s: %w", f.Path(p), err)
	}
	return data, true, nil
}

// Write replaces p's content atomically, creating parent directories.
func (f FS) Write(p string, data []byte) error {
	full := f.Path(p)
	dir := filepath.Dir(full)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create directory %s: %w", dir, err)
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(full)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", full, err)
	}
	defer os.Remove(tmp.Name()) // after a successful rename this is a no-op
	if err := writeSync(tmp, data); err != nil {
		return fmt.Errorf("write %s: %w", full, err)
	}
	if err := os.Rename(tmp.Name(), full); err != nil {
		return fmt.Errorf("write %s: %w", full, err)
	}
	return syncDir(dir)
}

func writeSync(tmp *os.File, data []byte) error {
	_, err := tmp.Write(data)
	if err == nil {
		err = tmp.Chmod(Mode) // CreateTemp makes 0600
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	return err
}

// syncDir makes a rename or removal in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}

// Remove deletes p; a missing file is not an error.
func (f FS) Remove(p string) error {
	full := f.Path(p)
	err := os.Remove(full)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("remove %s: %w", full, err)
	}
	return syncDir(filepath.Dir(full))
}
