package logsource

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// openKmsg opens the device non-blocking (so the runtime poller can
// interrupt a read when ctx ends) positioned after the newest record, or
// at the oldest record still in the ring buffer when fromOldest is set.
func openKmsg(path string, fromOldest bool) (int, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		err = &fs.PathError{Op: "open", Path: path, Err: err}
		if errors.Is(err, fs.ErrPermission) {
			err = fmt.Errorf("%w (hint: reading the kernel log needs root or CAP_SYSLOG when kernel.dmesg_restrict=1)", err)
		}
		return -1, err
	}
	whence := unix.SEEK_END
	if fromOldest {
		whence = unix.SEEK_SET
	}
	if _, err := unix.Seek(fd, 0, whence); err != nil {
		unix.Close(fd)
		return -1, &fs.PathError{Op: "seek", Path: path, Err: err}
	}
	return fd, nil
}

// kmsgUsable reports why the device cannot be read, or nil.
func kmsgUsable(path string) error {
	fd, err := openKmsg(path, false)
	if err != nil {
		return err
	}
	return unix.Close(fd)
}

// monotonicMicros reads CLOCK_MONOTONIC, the clock /dev/kmsg time stamps
// follow (give or take drift), in microseconds.
func monotonicMicros() (int64, bool) {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0, false
	}
	return ts.Nano() / 1e3, true
}

// readBootID returns the running boot's id, or "" when it cannot be read
// (then no position is kept and no resume is made).
func readBootID(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	id := strings.TrimSpace(string(b))
	if len(id) == 0 || len(id) > 64 {
		return ""
	}
	return id
}

// rawFD reads a non-blocking descriptor directly: EAGAIN says the ring
// buffer has no newer record.
type rawFD int

func (fd rawFD) Read(p []byte) (int, error) {
	for {
		n, err := unix.Read(int(fd), p)
		if err == unix.EINTR {
			continue
		}
		if n < 0 {
			n = 0
		}
		return n, err
	}
}

// skipToNewest reads fd (non-blocking, at the oldest record) to its end
// and returns the newest record's sequence number; ok is false when the
// end was not reached in a bounded number of reads or a read failed.
func skipToNewest(fd int) (seq uint64, ok bool) {
	buf := make([]byte, kmsgBufSize)
	for range 1 << 20 {
		n, err := unix.Read(fd, buf)
		switch {
		case err == unix.EAGAIN:
			return seq, ok
		case err == unix.EINTR || err == unix.EPIPE:
			continue
		case err != nil || n <= 0:
			return 0, false
		}
		if _, s, good := kmsgRecord(buf[:n]); good {
			seq, ok = s, true
		}
	}
	return 0, false
}

// Run reads records until ctx ends (returning nil). It fails at once when
// the device cannot be opened.
func (k *Kmsg) Run(ctx context.Context, emit func(Line)) error {
	k.boot = readBootID(k.bootPath)
	if k.boot == "" {
		k.log.Warn("cannot read the boot id: the kernel log position is not kept across restarts", "path", k.bootPath)
	}
	resume := k.boot != "" && k.pos.Boot == k.boot
	// Without a resume the ring buffer is read through once (when the
	// boot is known) to learn the newest record: that is where a daemon
	// restarted before any new record arrives resumes.
	fd, err := openKmsg(k.path, k.boot != "")
	if err != nil {
		return fmt.Errorf("logsource: %w", err)
	}
	var mono int64
	if resume {
		var ok bool
		if mono, ok = k.mono(); !ok {
			// Records could not be dated: start at the newest one.
			k.log.Warn("cannot read CLOCK_MONOTONIC: the kernel log is not resumed", "path", k.path)
			resume = false
		}
	}
	if !resume && k.boot != "" {
		k.pos = Position{}
		if seq, ok := skipToNewest(fd); ok {
			k.pos = Position{Boot: k.boot, Seq: seq}
		} else if _, err := unix.Seek(fd, 0, unix.SEEK_END); err != nil {
			unix.Close(fd)
			return fmt.Errorf("logsource: seek %s: %w", k.path, err)
		}
	}
	if resume {
		k.startBacklog(mono, k.now())
		err := k.readRecords(ctx, rawFD(fd), emit)
		k.endBacklog()
		if err != nil || ctx.Err() != nil {
			unix.Close(fd)
			return err
		}
	}
	f := os.NewFile(uintptr(fd), k.path)
	defer f.Close()
	if err := f.SetReadDeadline(time.Time{}); err != nil {
		return fmt.Errorf("logsource: %s cannot be polled: %w", k.path, err)
	}
	stop := context.AfterFunc(ctx, func() { _ = f.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	k.setStart(k.pos)
	k.rdy.set()
	return k.readRecords(ctx, f, emit)
}

// DefaultLogFiles are where syslog daemons put kernel messages: Debian's
// rsyslog (kern.log), Red Hat's (messages).
var DefaultLogFiles = []string{"/var/log/kern.log", "/var/log/messages"}
