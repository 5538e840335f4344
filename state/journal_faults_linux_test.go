package state

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// A full disk and a read-only file system are reported by Append, with
// the path; the journal holds only whole records afterwards and works
// again once there is room.
func TestJournalFullAndReadOnly(t *testing.T) {
	dir := mountTmpfs(t, "64k")
	path := filepath.Join(dir, "replay.journal")
	j, _, _ := openJ(t, path)
	appendAll(t, j, recN(0), recN(1))

	// Fill the file system.
	filler := filepath.Join(dir, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 4096)
	for range 64 {
		if _, err := f.Write(chunk); err != nil {
			break
		}
	}
	f.Close()
	var full error
	for i := range 200 { // the journal's last page may still have room
		if full = j.Append(recN(2 + i%20)); full != nil {
			break
		}
	}
	if !errors.Is(full, syscall.ENOSPC) || !strings.Contains(full.Error(), path) {
		t.Fatalf("Append on a full file system = %v, want ENOSPC naming %s", full, path)
	}
	got, info, err := ReadJournal[rec](path)
	if err != nil || info.Torn || info.Damaged != 0 || len(got) < 2 || !reflect.DeepEqual(got[:2], []rec{recN(0), recN(1)}) {
		t.Fatalf("journal after ENOSPC: %d records, %+v, %v", len(got), info, err)
	}
	n := len(got)
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	appendAll(t, j, recN(25))
	if got, _, _ := ReadJournal[rec](path); len(got) != n+1 || got[n] != recN(25) {
		t.Fatalf("append once there is room: %d records, want %d", len(got), n+1)
	}

	// The state directory remounted read-only while the journal is in
	// use (the Journal holds no writable file, so the remount is
	// possible): Append, Compact and OpenJournal report EROFS, the
	// records can still be read, and appends work again once it is
	// writable.
	if err := unix.Mount("", dir, "", unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
		t.Fatalf("remount read-only with the journal in use: %v", err)
	}
	if err := j.Append(recN(26)); !errors.Is(err, syscall.EROFS) || !strings.Contains(err.Error(), path) {
		t.Fatalf("Append on a read-only file system = %v, want EROFS naming %s", err, path)
	}
	if err := j.Compact(j.Mark()); !errors.Is(err, syscall.EROFS) {
		t.Fatalf("Compact on a read-only file system = %v, want EROFS", err)
	}
	for _, p := range []string{path, filepath.Join(dir, "new.journal")} {
		if _, _, _, err := OpenJournal[rec](p); !errors.Is(err, syscall.EROFS) || !strings.Contains(err.Error(), p) {
			t.Fatalf("OpenJournal(%s) on a read-only file system = %v, want EROFS naming it", p, err)
		}
	}
	if got, _, err := ReadJournal[rec](path); err != nil || len(got) != n+1 {
		t.Fatalf("ReadJournal on a read-only file system: %d records, %v", len(got), err)
	}
	if err := unix.Mount("", dir, "", unix.MS_REMOUNT, "size=64k,mode=0700"); err != nil {
		t.Fatalf("remount read-write: %v", err)
	}
	appendAll(t, j, recN(27))
	if got, info, err := ReadJournal[rec](path); err != nil || len(got) != n+2 || info.Torn {
		t.Fatalf("after the remount: %d records, %+v, %v", len(got), info, err)
	}
}
