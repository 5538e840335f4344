package cipher

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
)

// Mode selects how the block key is derived from a key's secret
// (docs/PROTOCOL.md §2).
type Mode uint8

const (
	// Timed derives a fresh block key for every 30-second window; a sniffed
	// sequence is useless outside its window. The default.
	Timed Mode = iota
	// Static uses the secret itself as the block key: no clock needed, but
	// a sniffed sequence stays valid (the daemon's replay horizon limits it).
	Static
)

// String returns "timed" or "static".
func (m Mode) String() string {
	switch m {
	case Timed:
		return "timed"
	case Static:
		return "static"
	}
	return fmt.Sprintf("mode(%d)", uint8(m))
}

// ParseMode parses "timed" or "static".
func ParseMode(s string) (Mode, error) {
	switch s {
	case "timed":
		return Timed, nil
	case "static":
		return Static, nil
	}
	return 0, fmt.Errorf("invalid mode %q (want \"timed\" or \"static\")", s)
}

// MarshalText implements encoding.TextMarshaler.
func (m Mode) MarshalText() ([]byte, error) {
	if m != Timed && m != Static {
		return nil, fmt.Errorf("invalid key mode %d", uint8(m))
	}
	return []byte(m.String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler, so TOML and JSON
// configuration can say mode = "timed" or "static".
func (m *Mode) UnmarshalText(b []byte) error {
	v, err := ParseMode(string(b))
	if err != nil {
		return err
	}
	*m = v
	return nil
}

// SecretSize is the size of a key's secret S in bytes.
const SecretSize = 32

// Key is one configured key: a name for logs (never the secret), the secret
// S and the mode.
type Key struct {
	Name   string
	Secret [SecretSize]byte
	Mode   Mode
}

// Passphrase derivation parameters (docs/PROTOCOL.md §2).
const (
	PassphraseSalt       = "knock/v1"
	PassphraseIterations = 200000
)

// PassphraseSecret derives a secret from a passphrase with
// PBKDF2-HMAC-SHA256 (RFC 8018), salt "knock/v1", 200000 iterations,
// 32 bytes. It takes about 0.1 s on purpose.
func PassphraseSecret(passphrase []byte) [SecretSize]byte {
	// One PBKDF2 block is exactly one SHA-256 output, so T1 is the secret.
	mac := hmac.New(sha256.New, passphrase)
	mac.Write([]byte(PassphraseSalt))
	mac.Write([]byte{0, 0, 0, 1}) // INT(1), the block index
	var u, t [SecretSize]byte
	mac.Sum(u[:0])
	t = u
	for i := 1; i < PassphraseIterations; i++ {
		mac.Reset()
		mac.Write(u[:])
		mac.Sum(u[:0])
		for j := range t {
			t[j] ^= u[j]
		}
	}
	return t
}

// maxKeyFileSize bounds what LoadKeyFile and LoadPassphraseFile read: a key
// file is 45 bytes, so anything much larger is the wrong file (or a device).
const maxKeyFileSize = 4096

// ParseKey decodes the contents of a key file: standard base64 with padding
// of exactly 32 bytes on one line. Surrounding white space is ignored.
// Errors never include the file's contents.
func ParseKey(data []byte) ([SecretSize]byte, error) {
	var s [SecretSize]byte
	text := bytes.TrimSpace(data)
	if len(text) == 0 {
		return s, errors.New("key file is empty")
	}
	if bytes.ContainsAny(text, " \t\r\n\v\f") {
		return s, errors.New("key file must hold a single base64 line (found white space inside the key)")
	}
	enc := base64.StdEncoding.Strict()
	if n := enc.DecodedLen(len(text)); n > SecretSize+3 {
		return s, fmt.Errorf("key file holds %d base64 characters, want 44 (32 bytes)", len(text))
	}
	buf := make([]byte, SecretSize+3)
	n, err := enc.Decode(buf, text)
	if err != nil {
		var ce base64.CorruptInputError
		if errors.As(err, &ce) {
			return s, fmt.Errorf("key file is not standard base64 (bad character or padding at offset %d)", int64(ce))
		}
		return s, fmt.Errorf("key file is not standard base64: %v", err)
	}
	if n != SecretSize {
		return s, fmt.Errorf("key file holds %d bytes, want %d", n, SecretSize)
	}
	copy(s[:], buf)
	clear(buf)
	return s, nil
}

// LoadKeyFile reads a key file (see ParseKey). It does not check the file's
// permissions; callers that hold keys for others (the daemon) call
// CheckKeyFilePerm as well.
func LoadKeyFile(path string) ([SecretSize]byte, error) {
	data, err := readSmall(path)
	if err != nil {
		return [SecretSize]byte{}, err
	}
	defer clear(data)
	s, err := ParseKey(data)
	if err != nil {
		return s, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}

// ParsePassphrase extracts a passphrase from a passphrase file's contents:
// the first line without its line ending ("\n" or "\r\n"). Anything after
// that line other than white space is an error (it is probably not a
// passphrase file), and so is an empty passphrase. Other bytes, including
// leading and trailing spaces, are part of the passphrase.
func ParsePassphrase(data []byte) ([]byte, error) {
	line, rest, _ := bytes.Cut(data, []byte("\n"))
	line = bytes.TrimSuffix(line, []byte("\r"))
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, errors.New("passphrase file must hold a single line")
	}
	if len(line) == 0 {
		return nil, errors.New("passphrase file holds an empty passphrase")
	}
	return line, nil
}

// LoadPassphraseFile reads a passphrase file (see ParsePassphrase) and
// derives its secret with PassphraseSecret.
func LoadPassphraseFile(path string) ([SecretSize]byte, error) {
	data, err := readSmall(path)
	if err != nil {
		return [SecretSize]byte{}, err
	}
	defer clear(data)
	p, err := ParsePassphrase(data)
	if err != nil {
		return [SecretSize]byte{}, fmt.Errorf("%s: %w", path, err)
	}
	return PassphraseSecret(p), nil
}

func readSmall(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err // *fs.PathError names the path and the reason
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.IsDir() {
		return nil, fmt.Errorf("%s: is a directory, not a key file", path)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxKeyFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(data) > maxKeyFileSize {
		clear(data)
		return nil, fmt.Errorf("%s: larger than %d bytes, not a key file", path, maxKeyFileSize)
	}
	return data, nil
}

// InsecureKeyFileError reports a key file that others than its owner may
// read or write.
type InsecureKeyFileError struct {
	Path string
	Mode fs.FileMode
}

func (e *InsecureKeyFileError) Error() string {
	return fmt.Sprintf("key file %s has mode %04o: group and others must have no access (chmod 600 %s)",
		e.Path, e.Mode.Perm(), e.Path)
}

// CheckKeyFilePerm returns an *InsecureKeyFileError when the file at path
// (after symbolic links) grants any permission to group or others, and an
// error when it is not a regular file or cannot be examined. On Windows,
// where Unix permission bits do not apply, it only checks that the file
// is a regular file.
func CheckKeyFilePerm(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("key file %s is not a regular file", path)
	}
	if permBitsApply && fi.Mode().Perm()&0o077 != 0 {
		return &InsecureKeyFileError{Path: path, Mode: fi.Mode()}
	}
	return nil
}

// KeyGen writes a new random key file at path: 32 bytes from crypto/rand,
// standard base64 and a newline, created with O_EXCL and mode 0600. It never
// overwrites an existing file (the error then matches fs.ErrExist).
func KeyGen(path string) error {
	var s [SecretSize]byte
	if _, err := rand.Read(s[:]); err != nil {
		return fmt.Errorf("random key: %w", err)
	}
	line := make([]byte, base64.StdEncoding.EncodedLen(SecretSize)+1)
	base64.StdEncoding.Encode(line, s[:])
	line[len(line)-1] = '\n'
	clear(s[:])
	defer clear(line)

	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%s already exists; refusing to overwrite a key file: %w", path, fs.ErrExist)
		}
		return err
	}
	_, werr := f.Write(line)
	if werr == nil {
		werr = f.Sync()
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		os.Remove(path)
		return fmt.Errorf("write %s: %w", path, werr)
	}
	return nil
}

// blockKeyInfo is the HMAC message prefix of the timed block key.
const blockKeyInfo = "knock/v1"

// BlockKey returns the Blowfish key for secret s in mode m and window w
// (docs/PROTOCOL.md §2): HMAC-SHA256(S, "knock/v1" || uint64be(w)) in timed
// mode, S itself in static mode (w is ignored).
func BlockKey(s *[SecretSize]byte, m Mode, w uint64) [SecretSize]byte {
	if m == Static {
		return *s
	}
	var msg [len(blockKeyInfo) + 8]byte
	copy(msg[:], blockKeyInfo)
	binary.BigEndian.PutUint64(msg[len(blockKeyInfo):], w)
	mac := hmac.New(sha256.New, s[:])
	mac.Write(msg[:])
	var k [SecretSize]byte
	mac.Sum(k[:0])
	return k
}
