// Package state keeps the daemon's state file: active grants, the replay
// cache and the log position, as JSON that survives a crash at any moment.
//
// Save never leaves a half-written file under the target name: it writes a
// temporary file in the same directory, fsyncs it, renames it over the target
// and fsyncs the directory (the classic sequence; rename(2) is atomic within
// one file system). A crash before the rename leaves the previous file intact
// and at worst a stray ".NAME.tmp-*" file, which Load ignores and
// RemoveStaleTemps cleans.
//
// Writer coalesces frequent updates (the log position moves on every line)
// into at most one write per interval, and writes at once when asked to.
package state

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// MaxSize is the largest state file Load accepts. The replay cache is the
// only part that grows, and it is bounded far below this; a larger file is
// treated as corrupt rather than read into memory.
const MaxSize = 64 << 20

// ErrNotFound reports that the state file does not exist (a first start).
// Errors returned by Load for a missing file match both ErrNotFound and
// fs.ErrNotExist with errors.Is.
var ErrNotFound = errors.New("state file not found")

// CorruptError reports a state file whose content cannot be trusted.
type CorruptError struct {
	Path   string
	Line   int // 1-based position of the problem, 0 when unknown
	Column int
	Err    error
}

func (e *CorruptError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("state file %s is corrupt at line %d, column %d: %v", e.Path, e.Line, e.Column, e.Err)
	}
	return fmt.Sprintf("state file %s is corrupt: %v", e.Path, e.Err)
}

func (e *CorruptError) Unwrap() error { return e.Err }

// VersionError reports a state file written by a newer (or unknown) version
// of the daemon.
type VersionError struct {
	Path      string
	Version   int // the version in the file; 0 when missing
	Supported int // the newest version this build reads
}

func (e *VersionError) Error() string {
	if e.Version < 1 {
		return fmt.Sprintf("state file %s has no valid version (found %d, want 1..%d)", e.Path, e.Version, e.Supported)
	}
	return fmt.Sprintf("state file %s has version %d, newer than this knockdaemon reads (%d): upgrade knockdaemon or move the file away", e.Path, e.Version, e.Supported)
}

// Save writes v as JSON to path atomically with mode 0600: temp file in the
// same directory, fsync, rename over path, fsync the directory. On error the
// previous content of path is untouched and the temp file is removed.
func Save(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("state: encode %s: %w", path, err)
	}
	return writeFile(path, append(data, '\n'))
}

func tempPrefix(path string) string { return "." + filepath.Base(path) + ".tmp-" }

func writeFile(path string, data []byte) error {
	if err := WriteFileAtomic(path, data, 0o600, nil); err != nil {
		return fmt.Errorf("state: save %s: %w", path, err)
	}
	return nil
}

// WriteFileAtomic replaces path with data so that a crash at any moment
// leaves either the old or the new content, never a mix: a temporary file
// in the same directory is given mode perm (exactly, whatever the umask),
// passed to prepare when that is not nil (to copy an owner, say), written,
// fsynced, renamed over path, and the directory is fsynced so the rename
// itself is durable. On an error before the rename the temporary file is
// removed and path is untouched; an error syncing the directory means the
// new content is in place but may not survive a crash, so callers that act
// on the write (a one-time sequence spent, a grant recorded) must treat it
// as a failure.
func WriteFileAtomic(path string, data []byte, perm fs.FileMode, prepare func(*os.File) error) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, tempPrefix(path)+"*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err = f.Chmod(perm); err != nil {
		return err
	}
	if prepare != nil {
		if err = prepare(f); err != nil {
			return err
		}
	}
	if _, err = f.Write(data); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp, path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err = d.Sync(); err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}

// Load reads the JSON state file at path into v. A missing file gives an
// error matching ErrNotFound; content that is not exactly one JSON value of
// v's shape (syntax error, wrong type, unknown field, trailing data, larger
// than MaxSize) gives a *CorruptError naming the file and position.
func Load(path string, v any) error {
	data, err := readFile(path)
	if err != nil {
		return err
	}
	return parse(path, data, v)
}

// LoadVersioned is Load for a state struct with a top-level integer field
// "version": it refuses a file whose version is missing, below 1 or above
// supported with a *VersionError before decoding the rest, so a file from a
// newer daemon is reported as such rather than as corrupt.
func LoadVersioned(path string, v any, supported int) error {
	data, err := readFile(path)
	if err != nil {
		return err
	}
	return parseVersioned(path, data, v, supported)
}

func parse(path string, data []byte, v any) error {
	if err := decode(data, v); err != nil {
		return corrupt(path, data, err)
	}
	return nil
}

func parseVersioned(path string, data []byte, v any, supported int) error {
	var head struct {
		Version *int `json:"version"`
	}
	if err := json.Unmarshal(data, &head); err != nil {
		return corrupt(path, data, err)
	}
	if head.Version == nil || *head.Version < 1 || *head.Version > supported {
		ver := 0
		if head.Version != nil {
			ver = *head.Version
		}
		return &VersionError{Path: path, Version: ver, Supported: supported}
	}
	return parse(path, data, v)
}

func readFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("state: %w: %w", ErrNotFound, err)
		}
		return nil, fmt.Errorf("state: %w", err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() && fi.Size() > MaxSize {
		return nil, &CorruptError{Path: path, Err: fmt.Errorf("%d bytes, larger than %d bytes", fi.Size(), MaxSize)}
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxSize+1))
	if err != nil {
		return nil, fmt.Errorf("state: read %s: %w", path, err)
	}
	if len(data) > MaxSize {
		return nil, &CorruptError{Path: path, Err: fmt.Errorf("larger than %d bytes", MaxSize)}
	}
	return data, nil
}

// decode is strict: unknown fields and anything after the value are errors.
func decode(data []byte, v any) error {
	if len(bytes.TrimSpace(data)) == 0 {
		return errors.New("empty file")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("trailing data after the JSON value")
	}
	return nil
}

func corrupt(path string, data []byte, err error) error {
	ce := &CorruptError{Path: path, Err: err}
	var off int64 = -1
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		off = se.Offset
	case errors.As(err, &te):
		off = te.Offset
	}
	if off >= 0 && off <= int64(len(data)) {
		before := data[:off]
		ce.Line = bytes.Count(before, []byte{'\n'}) + 1
		ce.Column = int(off) - (bytes.LastIndexByte(before, '\n') + 1) + 1
	}
	return ce
}

// RemoveStaleTemps removes temporary files that an interrupted Save left
// next to path. Call it once at start, before any Save to path runs.
func RemoveStaleTemps(path string) error {
	dir := filepath.Dir(path)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("state: %w", err)
	}
	prefix := tempPrefix(path)
	var errs []error
	for _, e := range entries {
		if e.Type().IsRegular() && strings.HasPrefix(e.Name(), prefix) {
			if err := os.Remove(filepath.Join(dir, e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, err)
			}
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("state: remove stale temp files: %w", errors.Join(errs...))
	}
	return nil
}
