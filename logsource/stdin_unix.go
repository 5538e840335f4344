//go:build unix

package logsource

import (
	"os"

	"golang.org/x/sys/unix"
)

// NewStdin returns a Reader on standard input for `--source stdin`. When
// standard input is a pipe or a socket it is read through a non-blocking
// duplicate, so Run returns as soon as ctx ends instead of at the next
// line; nothing else in the process should read os.Stdin then. A
// terminal or a regular file is read as it is.
func NewStdin(opts ReaderOptions) *Reader {
	return NewReaderOptions(pollable(os.Stdin), "stdin", opts)
}

// pollable returns a non-blocking duplicate of f when f is a pipe or a
// socket (the O_NONBLOCK flag is shared with f's other descriptors), else
// f itself.
func pollable(f *os.File) *os.File {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return f
	}
	if m := st.Mode & unix.S_IFMT; m != unix.S_IFIFO && m != unix.S_IFSOCK {
		return f
	}
	fd, err := unix.FcntlInt(f.Fd(), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return f
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return f
	}
	return os.NewFile(uintptr(fd), f.Name())
}
