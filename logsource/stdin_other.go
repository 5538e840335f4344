//go:build !unix

package logsource

import "os"

// NewStdin returns a Reader on standard input.
func NewStdin(opts ReaderOptions) *Reader {
	return NewReaderOptions(os.Stdin, "stdin", opts)
}
