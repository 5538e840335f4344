//go:build !unix

package logsource

import "os"

// fileID is not available here: rotation by rename cannot be told from
// appending, so the File source is for Unix systems.
func fileID(fi os.FileInfo) (dev, ino uint64) { return 0, 0 }
