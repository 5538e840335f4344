// Package logsource turns a firewall log into a stream of lines: a log
// file followed across rotation, /dev/kmsg, journalctl -k, or standard
// input.
package logsource

import (
	"context"
	"time"
)

// Position says where a line ended in a file, so a restarted daemon
// resumes without loss or replay. Offset is the byte just past the line.
type Position struct {
	Path   string `json:"path,omitempty"`
	Inode  uint64 `json:"inode,omitempty"`
	Offset int64  `json:"offset,omitempty"`
}

// Line is one complete line of the log.
type Line struct {
	Text     []byte // without the newline; valid only during emit
	Received time.Time
	Pos      Position // zero for sources that are not files
}

// Source delivers lines until its context ends.
type Source interface {
	// Run blocks, calling emit from a single goroutine for every line.
	Run(ctx context.Context, emit func(Line)) error
	String() string
}
