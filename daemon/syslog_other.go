//go:build windows || plan9

package daemon

import "io"

func openSyslog(io.Writer) (syslogSender, error) { return nil, errNoSyslog }
