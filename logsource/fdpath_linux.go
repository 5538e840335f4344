package logsource

import (
	"os"
	"strconv"
)

// fdPath names the open file f through /proc/self/fd (proc(5)): opening
// and stat'ing it reach f's inode whatever its name is now (renamed,
// unlinked), and never another file while f stays open.
func fdPath(f *os.File) string {
	return "/proc/self/fd/" + strconv.FormatUint(uint64(f.Fd()), 10)
}
