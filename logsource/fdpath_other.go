//go:build !linux

package logsource

import (
	"os"
	"strconv"
)

// fdPath names the open file f through /dev/fd (fdescfs on the BSDs,
// built in on macOS): opening it reaches f's inode whatever its name is
// now. Where /dev/fd holds only 0, 1 and 2 (FreeBSD without fdescfs
// mounted) it falls back to f's name; see pinnedOr.
func fdPath(f *os.File) string {
	return pinnedOr(f, "/dev/fd/"+strconv.FormatUint(uint64(f.Fd()), 10))
}
