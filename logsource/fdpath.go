package logsource

import "os"

// pinnedOr returns p when it names the very file f is open on (the same
// device and inode, as /proc/self/fd/N and /dev/fd/N do where the system
// provides them), otherwise f's own name. A tail started on the name
// follows whatever file the name holds, so the File source is exact across
// rotation only where the descriptor path works (Linux; the BSDs with
// fdescfs mounted on /dev/fd); elsewhere it still follows the log, by name.
func pinnedOr(f *os.File, p string) string {
	want, err := f.Stat()
	if err != nil {
		return f.Name()
	}
	got, err := os.Stat(p)
	if err != nil || !os.SameFile(want, got) {
		return f.Name()
	}
	return p
}
