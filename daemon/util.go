package daemon

import (
	"bytes"
	"io"
	"os"
)

func bytesReader(b []byte) io.Reader { return bytes.NewReader(b) }

func renameAside(path, aside string) error { return os.Rename(path, aside) }
