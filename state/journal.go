package state

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
)

// Journal is an append-only file of records next to the state file, for
// news that must be durable before the daemon acts on it but should not
// cost a rewrite of the whole state (the replay entry of an accepted
// knock, before the firewall rule is added): one write of one line,
// durable when Append returns (the file is opened O_DSYNC).
//
// A record is one line: the CRC-32C of the payload as 8 hexadecimal
// digits, a space, the payload (a JSON value, which never holds a raw
// newline), a newline. A crash can leave only the last record torn (a
// line without its newline, or a CRC that does not match); reading skips
// it, and OpenJournal cuts it off so the next record starts on a line of
// its own.
//
// The file is opened for each append and closed again (a few
// microseconds beside the disk write): a daemon holding no writable file
// there does not stop an administrator from remounting the state
// directory read-only.
//
// Compaction: the state file absorbs the journal. Take Mark, then the
// state snapshot (which must already hold every record appended before
// the mark), write the state file, then Compact(mark): records appended
// after the mark are kept. A crash between the two steps leaves records
// that are both in the state file and in the journal; loading applies
// the state file and then the journal, so such duplicates must be
// harmless (a replay entry added twice is one entry).
//
// A Journal is safe for concurrent use.
type Journal[T any] struct {
	path string

	mu     sync.Mutex
	size   int64 // bytes of whole records in the file
	closed bool
	buf    []byte
}

// MaxJournalRecord bounds one record; a longer line is not a record.
const MaxJournalRecord = 1 << 20

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// JournalInfo tells what reading a journal found besides its records.
type JournalInfo struct {
	// Records is the number of valid records read.
	Records int
	// Torn is true when the file ended in a partial or damaged record
	// (a crash during the last append); it was ignored.
	Torn bool
	// Damaged counts records before the last one that failed their check
	// (bit rot, someone editing the file); they were skipped.
	Damaged int
	// Size is the length of the file up to the end of its last complete
	// line.
	Size int64
}

// ReadJournal reads the records of the journal at path. A missing file
// holds no records and is not an error.
// A journal larger than MaxSize is refused (it cannot have grown so big
// between two writes of the state file).
func ReadJournal[T any](path string) ([]T, JournalInfo, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, JournalInfo{}, nil
	}
	if err != nil {
		return nil, JournalInfo{}, fmt.Errorf("state: journal: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxSize+1))
	if err != nil {
		return nil, JournalInfo{}, fmt.Errorf("state: journal: %w", err)
	}
	if len(data) > MaxSize {
		return nil, JournalInfo{}, fmt.Errorf("state: journal %s: larger than %d bytes", path, MaxSize)
	}
	recs, info := parseJournal[T](data)
	return recs, info, nil
}

// parseJournal reads every record of data; it never fails and never
// panics: what is not a valid record is counted and skipped.
func parseJournal[T any](data []byte) ([]T, JournalInfo) {
	var (
		out  []T
		info JournalInfo
	)
	for off := 0; off < len(data); {
		nl := bytes.IndexByte(data[off:], '\n')
		if nl < 0 {
			info.Torn = true // no newline: the last append was cut short
			break
		}
		line := data[off : off+nl]
		off += nl + 1
		info.Size = int64(off)
		v, ok := decodeRecord[T](line)
		if !ok {
			if off == len(data) {
				info.Torn = true
			} else {
				info.Damaged++
			}
			continue
		}
		out = append(out, v)
	}
	info.Records = len(out)
	return out, info
}

func decodeRecord[T any](line []byte) (T, bool) {
	var v T
	if len(line) < 10 || len(line) > MaxJournalRecord || line[8] != ' ' {
		return v, false
	}
	var sum [4]byte
	if _, err := hex.Decode(sum[:], line[:8]); err != nil {
		return v, false
	}
	payload := line[9:]
	if crc32.Checksum(payload, crcTable) != uint32(sum[0])<<24|uint32(sum[1])<<16|uint32(sum[2])<<8|uint32(sum[3]) {
		return v, false
	}
	if err := json.Unmarshal(payload, &v); err != nil {
		return v, false
	}
	return v, true
}

// appendRecord appends v's record to buf.
func appendRecord(buf []byte, v any) ([]byte, error) {
	payload, err := json.Marshal(v)
	if err != nil {
		return buf, err
	}
	if len(payload) > MaxJournalRecord-9 {
		return buf, fmt.Errorf("record of %d bytes, larger than %d", len(payload), MaxJournalRecord-9)
	}
	buf = fmt.Appendf(buf, "%08x ", crc32.Checksum(payload, crcTable))
	buf = append(buf, payload...)
	return append(buf, '\n'), nil
}

// OpenJournal reads the journal at path (creating it, mode 0600, when it
// does not exist), cuts off a torn last record and makes the journal
// ready for appending. It returns the records it read, for the caller to
// apply after the state file, and what it found.
func OpenJournal[T any](path string) (*Journal[T], []T, JournalInfo, error) {
	recs, info, err := ReadJournal[T](path)
	if err != nil {
		return nil, nil, info, err
	}
	f, created, err := openAppend(path)
	if err != nil {
		return nil, nil, info, fmt.Errorf("state: journal: %w", err)
	}
	defer f.Close()
	fail := func(err error) (*Journal[T], []T, JournalInfo, error) {
		return nil, nil, info, fmt.Errorf("state: journal %s: %w", path, err)
	}
	st, err := f.Stat()
	if err != nil {
		return fail(err)
	}
	if st.Size() != info.Size {
		// A torn tail (or a file that grew since it was read: nobody
		// else writes it). Cut it so the next record starts a line.
		if err := f.Truncate(info.Size); err != nil {
			return fail(err)
		}
		if err := f.Sync(); err != nil {
			return fail(err)
		}
	}
	if created {
		if err := syncDir(filepath.Dir(path)); err != nil {
			return fail(err)
		}
	}
	return &Journal[T]{path: path, size: info.Size}, recs, info, nil
}

// openAppend opens path for durable appends, creating it (mode 0600)
// when missing; created tells whether it did. Anything but a regular
// file is refused.
func openAppend(path string) (f *os.File, created bool, err error) {
	f, err = os.OpenFile(path, os.O_WRONLY|os.O_APPEND|oDSync, 0)
	if errors.Is(err, fs.ErrNotExist) {
		f, err = os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE|os.O_EXCL|oDSync, 0o600)
		created = err == nil
	}
	if err != nil {
		return nil, false, err
	}
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		f.Close()
		if err == nil {
			err = fmt.Errorf("%s: not a regular file", path)
		}
		return nil, false, err
	}
	return f, created, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync directory: %w", err)
	}
	return nil
}

// Path returns the journal's file.
func (j *Journal[T]) Path() string { return j.path }

// Append writes v as one record; it is on disk when Append returns nil.
// After a failed append (disk full, read-only file system) the file is
// cut back to the last whole record, so a partial write cannot merge
// with the next record.
func (j *Journal[T]) Append(v T) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closed {
		return fmt.Errorf("state: journal %s: closed", j.path)
	}
	var err error
	j.buf, err = appendRecord(j.buf[:0], v)
	if err != nil {
		return fmt.Errorf("state: journal %s: %w", j.path, err)
	}
	f, created, err := openAppend(j.path)
	if err != nil {
		return fmt.Errorf("state: journal %s: append: %w", j.path, err)
	}
	if created {
		// Someone removed the file: it starts again from nothing.
		j.size = 0
	}
	n, err := f.Write(j.buf)
	if err != nil {
		if n > 0 {
			_ = f.Truncate(j.size)
		}
		f.Close()
		return fmt.Errorf("state: journal %s: append: %w", j.path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("state: journal %s: append: %w", j.path, err)
	}
	if created {
		if err := syncDir(filepath.Dir(j.path)); err != nil {
			return fmt.Errorf("state: journal %s: append: %w", j.path, err)
		}
	}
	j.size += int64(n)
	return nil
}

// Mark returns the journal's current end, for Compact.
func (j *Journal[T]) Mark() int64 {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.size
}

// Compact removes the records before mark (from Mark), once the state
// file holds them. When nothing was appended since the mark the file is
// truncated to zero; otherwise the newer records are written to a new
// file that replaces the journal atomically.
func (j *Journal[T]) Compact(mark int64) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closed {
		return fmt.Errorf("state: journal %s: closed", j.path)
	}
	if mark <= 0 {
		return nil
	}
	if mark > j.size {
		return fmt.Errorf("state: journal %s: mark %d beyond the end %d", j.path, mark, j.size)
	}
	if mark == j.size {
		f, err := os.OpenFile(j.path, os.O_WRONLY, 0)
		if err == nil {
			err = f.Truncate(0)
			if err == nil {
				err = f.Sync()
			}
			f.Close()
		}
		if err != nil {
			return fmt.Errorf("state: journal %s: truncate: %w", j.path, err)
		}
		j.size = 0
		return nil
	}
	// Keep the tail: copy it into a new file and rename it into place.
	tail := make([]byte, j.size-mark)
	if err := readAt(j.path, tail, mark); err != nil {
		return fmt.Errorf("state: journal %s: compact: %w", j.path, err)
	}
	tmp := j.path + ".compact"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|oDSync, 0o600)
	if err != nil {
		return fmt.Errorf("state: journal %s: compact: %w", j.path, err)
	}
	_, err = f.Write(tail)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, j.path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("state: journal %s: compact: %w", j.path, err)
	}
	j.size = int64(len(tail))
	if err := syncDir(filepath.Dir(j.path)); err != nil {
		return fmt.Errorf("state: journal %s: compact: %w", j.path, err)
	}
	return nil
}

func readAt(path string, p []byte, off int64) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = f.ReadAt(p, off)
	return err
}

// Close makes later Appends fail. Records already appended stay.
func (j *Journal[T]) Close() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.closed = true
	return nil
}
