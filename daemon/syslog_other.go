//go:build windows || plan9

package daemon

import "io"

func openSyslog() (io.WriteCloser, error) { return nil, errNoSyslog }
