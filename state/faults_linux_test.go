package state

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"

	"github.com/knockdaemon/knock/internal/netnstest"
	"golang.org/x/sys/unix"
)

// fsImmutableFL is FS_IMMUTABLE_FL from <linux/fs.h>.
const fsImmutableFL = 0x00000010

// setImmutable sets or clears the immutable flag (chattr +i) on a
// directory: then nothing can be created in it, not even by root.
func setImmutable(t *testing.T, dir string, on bool) {
	t.Helper()
	f, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	flags, err := unix.IoctlGetUint32(int(f.Fd()), unix.FS_IOC_GETFLAGS)
	if err != nil {
		netnstest.Unavailable(t, "file flags not supported on %s: %v", dir, err)
	}
	if on {
		flags |= fsImmutableFL
	} else {
		flags &^= fsImmutableFL
	}
	if err := unix.IoctlSetPointerInt(int(f.Fd()), unix.FS_IOC_SETFLAGS, int(flags)); err != nil {
		netnstest.Unavailable(t, "cannot set the immutable flag on %s: %v", dir, err)
	}
}

// immutableDir returns a directory that the test can make read-only for
// root too; it is made writable again on cleanup.
func immutableDir(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		netnstest.Unavailable(t, "needs root to set the immutable flag")
	}
	dir := filepath.Join(t.TempDir(), "lib")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { setImmutable(t, dir, false) })
	return dir
}

func TestSaveIntoReadOnlyDirectoryKeepsPreviousFile(t *testing.T) {
	dir := immutableDir(t)
	path := filepath.Join(dir, "state.json")
	old := sample()
	if err := Save(path, old); err != nil {
		t.Fatal(err)
	}
	setImmutable(t, dir, true)
	next := sample()
	next.Position.Offset = 7
	err := Save(path, next)
	if !errors.Is(err, syscall.EPERM) || !strings.Contains(err.Error(), path) {
		t.Fatalf("Save into an immutable directory: err = %v, want EPERM naming %s", err, path)
	}
	var got daemonState
	if err := Load(path, &got); err != nil || !reflect.DeepEqual(got, old) {
		t.Fatalf("previous file after a failed Save: %+v, %v; want %+v", got, err, old)
	}
	setImmutable(t, dir, false)
	if err := Save(path, next); err != nil {
		t.Fatalf("Save once the directory is writable again: %v", err)
	}
	if err := Load(path, &got); err != nil || !reflect.DeepEqual(got, next) {
		t.Fatalf("Load = %+v, %v; want %+v", got, err, next)
	}
	assertNoTemps(t, path)
}

// mountTmpfs mounts a tmpfs of size (for example "16k": a few pages, so
// that a write can really run out of space) for the test and unmounts it
// on cleanup.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		netnstest.Unavailable(t, "needs root to mount a tmpfs")
	}
	dir := t.TempDir()
	if err := unix.Mount("knocktest", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "size="+size+",mode=0700"); err != nil {
		netnstest.Unavailable(t, "cannot mount a tmpfs: %v", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

func TestSaveOnAFullDiskKeepsPreviousFile(t *testing.T) {
	dir := mountTmpfs(t, "16k")
	path := filepath.Join(dir, "state.json")
	old := sample()
	if err := Save(path, old); err != nil {
		t.Fatal(err)
	}
	big := sample()
	big.Replay = map[string]string{}
	for i := range 2000 { // about 60 KiB of JSON, more than the 16 KiB file system
		big.Replay[fmt.Sprintf("alice/%08x", i)] = "2026-11-21T06:00:00Z"
	}
	err := Save(path, big)
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Save on a full disk: err = %v, want ENOSPC", err)
	}
	var got daemonState
	if err := Load(path, &got); err != nil || !reflect.DeepEqual(got, old) {
		t.Fatalf("previous file after ENOSPC: %+v, %v; want %+v", got, err, old)
	}
	assertNoTemps(t, path) // the temp file is removed, so its space is free again
	next := sample()
	next.Position.Offset = 99
	if err := Save(path, next); err != nil {
		t.Fatalf("a small Save after ENOSPC: %v", err)
	}
	if err := Load(path, &got); err != nil || !reflect.DeepEqual(got, next) {
		t.Fatalf("Load = %+v, %v; want %+v", got, err, next)
	}
}
