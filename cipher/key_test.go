package cipher

import (
	"crypto/pbkdf2"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

func seqSecret() [SecretSize]byte {
	var s [SecretSize]byte
	for i := range s {
		s[i] = byte(i)
	}
	return s
}

const seqSecretB64 = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="

func TestParseKey(t *testing.T) {
	want := seqSecret()
	tests := []struct {
		name    string
		in      string
		wantErr string // substring; "" means success
	}{
		{"plain line", seqSecretB64, ""},
		{"trailing newline", seqSecretB64 + "\n", ""},
		{"crlf and surrounding blanks", "  \t" + seqSecretB64 + "\r\n\n", ""},
		{"empty", "", "empty"},
		{"only white space", " \n\t\n", "empty"},
		{"white space inside", seqSecretB64[:20] + " " + seqSecretB64[20:], "single base64 line"},
		{"two lines", seqSecretB64 + "\n" + seqSecretB64, "single base64 line"},
		{"missing padding", strings.TrimRight(seqSecretB64, "="), "not standard base64"},
		{"url-safe alphabet", seqSecretB64[:10] + "_" + seqSecretB64[11:], "offset 10"},
		{"bad character", "!" + seqSecretB64[1:], "offset 0"},
		{"31 bytes", base64.StdEncoding.EncodeToString(make([]byte, 31)), "holds 31 bytes, want 32"},
		{"33 bytes", base64.StdEncoding.EncodeToString(make([]byte, 33)), "holds 33 bytes, want 32"},
		{"64 bytes", base64.StdEncoding.EncodeToString(make([]byte, 64)), "88 base64 characters"},
		{"non-canonical padding bits", seqSecretB64[:42] + "h=", "not standard base64"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseKey([]byte(tt.in))
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("ParseKey: %v", err)
				}
				if got != want {
					t.Fatalf("ParseKey = %x, want %x", got, want)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("ParseKey error = %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestLoadKeyFile(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.key")
	if err := os.WriteFile(good, []byte(seqSecretB64+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.key")
	if err := os.WriteFile(bad, []byte("c2VjcmV0\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(dir, "big.key")
	if err := os.WriteFile(big, make([]byte, maxKeyFileSize+1), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Run("good file", func(t *testing.T) {
		s, err := LoadKeyFile(good)
		if err != nil || s != seqSecret() {
			t.Fatalf("LoadKeyFile = %x, %v", s, err)
		}
	})
	for _, tt := range []struct{ name, path, want string }{
		{"missing file names path", filepath.Join(dir, "nope"), "nope"},
		{"directory", dir, "is a directory"},
		{"malformed names path and length", bad, bad + ": key file holds 6 bytes, want 32"},
		{"too large", big, "larger than 4096 bytes"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := LoadKeyFile(tt.path)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("LoadKeyFile(%s) error = %v, want %q", tt.path, err, tt.want)
			}
		})
	}
	t.Run("endless device is bounded", func(t *testing.T) {
		if runtime.GOOS == "windows" {
			t.Skip("no /dev/zero on Windows")
		}
		if _, err := LoadKeyFile("/dev/zero"); err == nil || !strings.Contains(err.Error(), "larger than 4096 bytes") {
			t.Fatalf("LoadKeyFile(/dev/zero) = %v", err)
		}
	})
	t.Run("missing file is fs.ErrNotExist", func(t *testing.T) {
		if _, err := LoadKeyFile(filepath.Join(dir, "nope")); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("error %v is not fs.ErrNotExist", err)
		}
	})
}

func TestPassphraseSecretMatchesStdlibPBKDF2(t *testing.T) {
	for _, p := range []string{"Grüße, Knöcheł " + strings.Repeat("long", 20)} {
		t.Run(p[:min(len(p), 12)], func(t *testing.T) {
			want, err := pbkdf2.Key(sha256.New, p, []byte("knock/v1"), 200000, 32)
			if err != nil {
				t.Fatal(err)
			}
			got := PassphraseSecret([]byte(p))
			if string(got[:]) != string(want) {
				t.Fatalf("PassphraseSecret(%q) = %x, want %x", p, got, want)
			}
		})
	}
}

func TestParsePassphrase(t *testing.T) {
	tests := []struct {
		name, in, want, wantErr string
	}{
		{"no newline", "hunter2", "hunter2", ""},
		{"lf", "hunter2\n", "hunter2", ""},
		{"crlf", "hunter2\r\n", "hunter2", ""},
		{"spaces kept", " two words \n", " two words ", ""},
		{"trailing blank lines", "pw\n\n \n", "pw", ""},
		{"empty", "", "", "empty passphrase"},
		{"empty line", "\nsecond\n", "", "single line"},
		{"two lines", "one\ntwo\n", "", "single line"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParsePassphrase([]byte(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || string(got) != tt.want {
				t.Fatalf("ParsePassphrase = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestLoadPassphraseFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pass")
	if err := os.WriteFile(path, []byte("correct horse battery staple\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := LoadPassphraseFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// The static block key of vector 9 is this passphrase's secret.
	if want := "3fd42a02e54b921b033b2bc6fa3c0112c35350fa2e693b4cd52e09e0dcffb72d"; hex.EncodeToString(got[:]) != want {
		t.Fatalf("LoadPassphraseFile = %x, want %s", got, want)
	}
}

func TestKeyGen(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "new.key")
	if err := KeyGen(path); err != nil {
		t.Fatalf("KeyGen: %v", err)
	}
	s1, err := LoadKeyFile(path)
	if err != nil {
		t.Fatalf("generated file does not load: %v", err)
	}
	if s1 == ([SecretSize]byte{}) {
		t.Fatal("generated secret is all zero")
	}
	if runtime.GOOS != "windows" {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Fatalf("mode = %04o, want 0600", fi.Mode().Perm())
		}
		if err := CheckKeyFilePerm(path); err != nil {
			t.Fatalf("generated file fails CheckKeyFilePerm: %v", err)
		}
	}
	t.Run("refuses to overwrite", func(t *testing.T) {
		err := KeyGen(path)
		if !errors.Is(err, fs.ErrExist) || !strings.Contains(err.Error(), "refusing to overwrite") {
			t.Fatalf("KeyGen on existing file: %v", err)
		}
		s2, _ := LoadKeyFile(path)
		if s2 != s1 {
			t.Fatal("existing key file was changed")
		}
	})
	t.Run("two keys differ", func(t *testing.T) {
		other := filepath.Join(dir, "other.key")
		if err := KeyGen(other); err != nil {
			t.Fatal(err)
		}
		s2, _ := LoadKeyFile(other)
		if s2 == s1 {
			t.Fatal("two generated keys are equal")
		}
	})
	t.Run("missing directory", func(t *testing.T) {
		if err := KeyGen(filepath.Join(dir, "no", "such", "dir.key")); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("KeyGen into missing dir: %v", err)
		}
	})
}

func TestCheckKeyFilePerm(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("permission bits do not apply on Windows")
	}
	dir := t.TempDir()
	for _, tt := range []struct {
		name     string
		mode     fs.FileMode
		insecure bool
	}{
		{"owner only 0600", 0o600, false},
		{"owner read only 0400", 0o400, false},
		{"group readable 0640", 0o640, true},
		{"world readable 0604", 0o604, true},
		{"group writable 0620", 0o620, true},
		{"0644", 0o644, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(dir, tt.name)
			if err := os.WriteFile(p, []byte(seqSecretB64), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(p, tt.mode); err != nil {
				t.Fatal(err)
			}
			err := CheckKeyFilePerm(p)
			var ie *InsecureKeyFileError
			if got := errors.As(err, &ie); got != tt.insecure {
				t.Fatalf("CheckKeyFilePerm(%04o) = %v, want insecure=%v", tt.mode, err, tt.insecure)
			}
			if tt.insecure && !strings.Contains(err.Error(), "chmod 600") {
				t.Fatalf("error lacks the fix: %v", err)
			}
		})
	}
	t.Run("directory", func(t *testing.T) {
		if err := CheckKeyFilePerm(dir); err == nil || !strings.Contains(err.Error(), "not a regular file") {
			t.Fatalf("CheckKeyFilePerm(dir) = %v", err)
		}
	})
	t.Run("missing", func(t *testing.T) {
		if err := CheckKeyFilePerm(filepath.Join(dir, "missing")); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("CheckKeyFilePerm(missing) = %v", err)
		}
	})
}

func TestMode(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want Mode
		ok   bool
	}{
		{"timed", Timed, true},
		{"static", Static, true},
		{"Timed", 0, false},
		{"", 0, false},
	} {
		t.Run("parse "+tt.in, func(t *testing.T) {
			var m Mode
			err := m.UnmarshalText([]byte(tt.in))
			if (err == nil) != tt.ok || (tt.ok && m != tt.want) {
				t.Fatalf("UnmarshalText(%q) = %v, %v", tt.in, m, err)
			}
			if tt.ok {
				b, err := m.MarshalText()
				if err != nil || string(b) != tt.in {
					t.Fatalf("MarshalText = %q, %v", b, err)
				}
			}
		})
	}
	if _, err := Mode(7).MarshalText(); err == nil {
		t.Fatal("MarshalText of invalid mode succeeded")
	}
	if Timed != 0 {
		t.Fatal("Timed must be the zero Mode (the default)")
	}
}

func TestBlockKey(t *testing.T) {
	s := seqSecret()
	t.Run("static is the secret", func(t *testing.T) {
		if BlockKey(&s, Static, 12345) != s {
			t.Fatal("static block key differs from secret")
		}
	})
	t.Run("timed windows differ", func(t *testing.T) {
		a, b := BlockKey(&s, Timed, 1), BlockKey(&s, Timed, 2)
		if a == b || a == s {
			t.Fatal("timed block keys must differ per window and from the secret")
		}
	})
}

// FuzzParseKey: the key file parser never panics, and whatever it
// accepts is canonical base64 of the secret it returns.
func FuzzParseKey(f *testing.F) {
	f.Add([]byte(seqSecretB64 + "\n"))
	f.Add([]byte("  " + seqSecretB64 + "\r\n"))
	f.Add([]byte(strings.TrimRight(seqSecretB64, "=")))
	f.Add([]byte(""))
	f.Add([]byte("====\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := ParseKey(data)
		if err != nil {
			if strings.Contains(err.Error(), string(data)) && len(strings.TrimSpace(string(data))) > 8 {
				t.Fatalf("error %q echoes the key file contents", err)
			}
			return
		}
		if got := base64.StdEncoding.EncodeToString(s[:]); got != strings.TrimSpace(string(data)) {
			t.Fatalf("accepted %q, which is not the canonical encoding %q", data, got)
		}
	})
}
