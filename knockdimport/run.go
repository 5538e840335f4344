package knockdimport

import (
	"fmt"
	"io"
)

// Run is `knockdaemon import-knockd FILE`: it converts the knockd.conf at
// path, writes the TOML to stdout and one line per warning to stderr
// ("warning: FILE:LINE: [door] ..."), and returns the number of doors
// that could not be converted. An error means nothing was written to
// stdout (the file is unreadable or malformed; the error names the line).
func Run(path string, stdout, stderr io.Writer) (refused int, err error) {
	f, err := Load(path)
	if err != nil {
		return 0, err
	}
	r := Convert(f)
	if _, err := stdout.Write(r.TOML); err != nil {
		return 0, err
	}
	for _, w := range r.Warnings {
		fmt.Fprintf(stderr, "warning: %s\n", w)
	}
	fmt.Fprintf(stderr, "%d door(s) converted, %d left commented out\n", r.Doors, r.Refused)
	return r.Refused, nil
}
