//go:build !windows && !plan9

package daemon

import (
	"io"
	"log/syslog"
)

func openSyslog() (io.WriteCloser, error) {
	return syslog.New(syslog.LOG_DAEMON|syslog.LOG_INFO, "knockdaemon")
}
