package logsource

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// openKmsg opens the device non-blocking (so the runtime poller can
// interrupt a read when ctx ends) positioned after the newest record.
func openKmsg(path string) (*os.File, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		err = &fs.PathError{Op: "open", Path: path, Err: err}
		if errors.Is(err, fs.ErrPermission) {
			err = fmt.Errorf("%w (hint: reading the kernel log needs root or CAP_SYSLOG when kernel.dmesg_restrict=1)", err)
		}
		return nil, err
	}
	if _, err := unix.Seek(fd, 0, unix.SEEK_END); err != nil {
		unix.Close(fd)
		return nil, &fs.PathError{Op: "seek", Path: path, Err: err}
	}
	return os.NewFile(uintptr(fd), path), nil
}

// kmsgUsable reports why the device cannot be read, or nil.
func kmsgUsable(path string) error {
	f, err := openKmsg(path)
	if err != nil {
		return err
	}
	return f.Close()
}

// Run reads records until ctx ends (returning nil). It fails at once when
// the device cannot be opened.
func (k *Kmsg) Run(ctx context.Context, emit func(Line)) error {
	f, err := openKmsg(k.path)
	if err != nil {
		return fmt.Errorf("logsource: %w", err)
	}
	defer f.Close()
	if err := f.SetReadDeadline(time.Time{}); err != nil {
		return fmt.Errorf("logsource: %s cannot be polled: %w", k.path, err)
	}
	stop := context.AfterFunc(ctx, func() { _ = f.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	k.rdy.set()
	return k.readRecords(ctx, f, emit)
}

// DefaultLogFiles are where syslog daemons put kernel messages: Debian's
// rsyslog (kern.log), Red Hat's (messages).
var DefaultLogFiles = []string{"/var/log/kern.log", "/var/log/messages"}
