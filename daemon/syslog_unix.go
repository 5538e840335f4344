//go:build !windows && !plan9

package daemon

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// syslogPaths are where a local syslog daemon listens (as log/syslog
// looks: Linux, macOS, the BSDs).
var syslogPaths = []string{"/dev/log", "/var/run/syslog", "/var/run/log"}

const (
	// syslogWriteTimeout bounds how long one record may wait for a
	// syslog daemon that does not read (stopped, or its queue full).
	syslogWriteTimeout = 200 * time.Millisecond
	// syslogRetry is how long records go to the fallback after syslog
	// failed before a new connection is tried.
	syslogRetry = time.Second
)

// syslogFacility is LOG_DAEMON (RFC 5424 section 6.2.1: facility 3).
const syslogFacility = 3 << 3

// syslogWriter sends records to the local syslog daemon, one datagram per
// record in the local form log/syslog and logger(1) write,
// "<PRI>Mmm dd hh:mm:ss TAG[PID]: MESSAGE" (RFC 3164 without the host
// name), facility daemon, the severity given per record.
//
// It never holds the daemon up for long and never drops a record
// silently: a write waits at most syslogWriteTimeout; when syslog cannot
// take a record (no socket, the daemon stopped, restarting or not
// reading) the record goes to the fallback (the daemon's stderr) and so do
// the following ones until a new connection, tried at most once per
// syslogRetry, takes one. Each switch is noted on the fallback. A
// connection that went stale because the syslog daemon restarted is
// replaced at once.
type syslogWriter struct {
	mu       sync.Mutex
	paths    []string
	tag      string
	pid      int
	fallback io.Writer
	now      func() time.Time

	conn    net.Conn
	stream  bool      // conn is a stream socket: records end with a newline
	down    bool      // records go to the fallback
	retryAt time.Time // while down: no new connection before this
	buf     []byte
}

// newSyslogWriter connects to the first of paths that answers; when none
// does it notes that on fallback and starts in fallback mode.
func newSyslogWriter(paths []string, tag string, fallback io.Writer) *syslogWriter {
	w := &syslogWriter{paths: paths, tag: tag, pid: os.Getpid(), fallback: fallback, now: time.Now}
	if err := w.dial(); err != nil {
		w.fail(w.now(), err)
	}
	return w
}

func (w *syslogWriter) dial() error {
	var errs []string
	for _, p := range w.paths {
		for _, network := range []string{"unixgram", "unix"} {
			c, err := net.Dial(network, p)
			if err == nil {
				w.conn, w.stream = c, network == "unix"
				return nil
			}
			if network == "unixgram" {
				errs = append(errs, err.Error())
			}
		}
	}
	return fmt.Errorf("no syslog daemon answers (%s)", strings.Join(errs, "; "))
}

// fail switches to the fallback until syslogRetry has passed.
func (w *syslogWriter) fail(now time.Time, err error) {
	if w.conn != nil {
		w.conn.Close()
		w.conn = nil
	}
	w.retryAt = now.Add(syslogRetry)
	if !w.down {
		w.down = true
		fmt.Fprintf(w.fallback, "%s: log output syslog: %v: logging here until syslog takes records again "+
			"(hint: start the syslog daemon, or set log_output = \"stderr\")\n", w.tag, err)
	}
}

// send writes one record of severity sev (0..7); msg is one formatted
// line, its trailing newline optional.
func (w *syslogWriter) send(sev int, msg []byte) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for len(msg) > 0 && msg[len(msg)-1] == '\n' {
		msg = msg[:len(msg)-1]
	}
	now := w.now()
	if w.conn == nil && !now.Before(w.retryAt) {
		if err := w.dial(); err != nil {
			w.fail(now, err)
		}
	}
	if w.conn != nil {
		err := w.write(now, sev, msg)
		var ne net.Error
		if err != nil && !(errors.As(err, &ne) && ne.Timeout()) {
			// The syslog daemon restarted (a stale datagram socket
			// gets ECONNREFUSED): connect again and retry once.
			w.conn.Close()
			w.conn = nil
			if err = w.dial(); err == nil {
				err = w.write(now, sev, msg)
			}
		}
		if err == nil {
			if w.down {
				w.down = false
				fmt.Fprintf(w.fallback, "%s: log output syslog: syslog takes records again\n", w.tag)
			}
			return
		}
		w.fail(now, err)
	}
	w.buf = append(append(w.buf[:0], msg...), '\n')
	_, _ = w.fallback.Write(w.buf)
}

func (w *syslogWriter) write(now time.Time, sev int, msg []byte) error {
	b := append(w.buf[:0], '<')
	b = strconv.AppendInt(b, int64(syslogFacility|sev), 10)
	b = append(b, '>')
	b = now.AppendFormat(b, time.Stamp)
	b = append(b, ' ')
	b = append(b, w.tag...)
	b = append(b, '[')
	b = strconv.AppendInt(b, int64(w.pid), 10)
	b = append(b, "]: "...)
	b = append(b, msg...)
	if w.stream {
		b = append(b, '\n')
	}
	w.buf = b
	_ = w.conn.SetWriteDeadline(time.Now().Add(syslogWriteTimeout))
	_, err := w.conn.Write(b)
	return err
}

// Close releases the connection.
func (w *syslogWriter) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.conn == nil {
		return nil
	}
	err := w.conn.Close()
	w.conn = nil
	return err
}

func openSyslog(fallback io.Writer) (syslogSender, error) {
	return newSyslogWriter(syslogPaths, "knockdaemon", fallback), nil
}
