package logsource

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// watcher wakes the File source when something happens in the log's
// directory to a name that starts with the log's base name (the log, its
// rotated siblings). It is only a wake-up: every decision is taken from
// stat and read results, so a lost or coalesced event costs at most one
// poll interval. onEvent, when set, runs in the goroutine reading the
// events before C is signalled: the File source looks at its path there,
// without waiting for another goroutine to be scheduled.
//
// The events are waited for in poll(2), not through the Go runtime's
// network poller: the poller is consulted only by a scheduler with nothing
// else to run (or by sysmon after 10 ms), so while the source's goroutines
// keep both Ps busy handing lines over, a change notice could wait that
// long; a thread woken from poll(2) queues its goroutine at once, and a
// busy P takes it within a few dozen goroutine switches.
type watcher struct {
	fd      int // inotify, non-blocking
	wake    int // eventfd: close ends the wait
	dir     string
	base    []byte
	onEvent func()
	C       chan struct{}
	done    chan struct{}
}

const watchMask = unix.IN_MODIFY | unix.IN_ATTRIB | unix.IN_CLOSE_WRITE | unix.IN_CREATE |
	unix.IN_DELETE | unix.IN_MOVED_FROM | unix.IN_MOVED_TO | unix.IN_DELETE_SELF | unix.IN_MOVE_SELF

func newWatcher(dir, base string, onEvent func()) (*watcher, error) {
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("inotify_init1", err)
	}
	if _, err := unix.InotifyAddWatch(fd, dir, watchMask); err != nil {
		unix.Close(fd)
		return nil, os.NewSyscallError("inotify_add_watch "+dir, err)
	}
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(fd)
		return nil, os.NewSyscallError("eventfd", err)
	}
	w := &watcher{
		fd:      fd,
		wake:    efd,
		dir:     dir,
		base:    []byte(base),
		onEvent: onEvent,
		C:       make(chan struct{}, 1),
		done:    make(chan struct{}),
	}
	go w.loop()
	return w, nil
}

func (w *watcher) loop() {
	defer close(w.done)
	buf := make([]byte, 16<<10)
	fds := []unix.PollFd{{Fd: int32(w.fd), Events: unix.POLLIN}, {Fd: int32(w.wake), Events: unix.POLLIN}}
	for {
		fds[0].Revents, fds[1].Revents = 0, 0
		if _, err := unix.Poll(fds, -1); err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return
		}
		if fds[1].Revents != 0 {
			return // closing
		}
		if fds[0].Revents&(unix.POLLERR|unix.POLLHUP|unix.POLLNVAL) != 0 {
			return
		}
		n, err := unix.Read(w.fd, buf)
		if err != nil {
			if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
				continue
			}
			return
		}
		if w.relevant(buf[:n]) {
			if w.onEvent != nil {
				w.onEvent()
			}
			select {
			case w.C <- struct{}{}:
			default:
			}
		}
	}
}

// relevant parses struct inotify_event records (inotify(7)).
func (w *watcher) relevant(b []byte) bool {
	for len(b) >= unix.SizeofInotifyEvent {
		mask := binary.NativeEndian.Uint32(b[4:8])
		end := unix.SizeofInotifyEvent + int(binary.NativeEndian.Uint32(b[12:16]))
		if end > len(b) {
			return true
		}
		name := bytes.TrimRight(b[unix.SizeofInotifyEvent:end], "\x00")
		if mask&(unix.IN_Q_OVERFLOW|unix.IN_IGNORED|unix.IN_DELETE_SELF|unix.IN_MOVE_SELF) != 0 ||
			len(name) == 0 || bytes.HasPrefix(name, w.base) {
			return true
		}
		b = b[end:]
	}
	return false
}

// refresh re-adds the watch, for a directory that was removed and made
// again; on a live watch it changes nothing.
func (w *watcher) refresh() { _, _ = unix.InotifyAddWatch(w.fd, w.dir, watchMask) }

// close ends the loop (the eventfd wakes its poll) and then closes the
// descriptors, which the loop no longer uses.
func (w *watcher) close() {
	var one [8]byte
	binary.NativeEndian.PutUint64(one[:], 1)
	_, _ = unix.Write(w.wake, one[:])
	<-w.done
	unix.Close(w.fd)
	unix.Close(w.wake)
}
