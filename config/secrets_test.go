package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/knockdaemon/knock/cipher"
)

func writeFile(t *testing.T, path, data string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // umask
		t.Fatal(err)
	}
}

func TestLoadKeys(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.key")
	if err := cipher.KeyGen(good); err != nil {
		t.Fatal(err)
	}
	pass := filepath.Join(dir, "pass")
	writeFile(t, pass, "correct horse\n", 0o600)
	worldKey := filepath.Join(dir, "world.key")
	data, _ := os.ReadFile(good)
	writeFile(t, worldKey, string(data), 0o644)
	groupPass := filepath.Join(dir, "group.pass")
	writeFile(t, groupPass, "x\n", 0o640)
	short := filepath.Join(dir, "short.key")
	writeFile(t, short, "AAAA\n", 0o600)
	zero := filepath.Join(dir, "zero.key")
	writeFile(t, zero, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n", 0o600)
	emptyPass := filepath.Join(dir, "empty.pass")
	writeFile(t, emptyPass, "\n", 0o600)

	tests := []struct {
		name     string
		user     User
		wantErr  string
		wantHint string
	}{
		{"key file", User{Name: "a", KeyFile: good, Mode: "timed"}, "", ""},
		{"passphrase file", User{Name: "b", PassphraseFile: pass, Mode: "static"}, "", ""},
		{"world-readable key file", User{Name: "c", KeyFile: worldKey, Mode: "timed"}, "mode 0644", "chmod 600 " + worldKey},
		{"group-readable passphrase file", User{Name: "d", PassphraseFile: groupPass, Mode: "timed"}, "passphrase file " + groupPass + " has mode 0640", "chmod 600 " + groupPass},
		{"missing key file", User{Name: "e", KeyFile: filepath.Join(dir, "none"), Mode: "timed"}, "does not exist", "knockdaemon keygen"},
		{"wrong key length", User{Name: "f", KeyFile: short, Mode: "timed"}, "want 32", ""},
		{"all-zero key", User{Name: "g", KeyFile: zero, Mode: "timed"}, "all-zero", "keygen"},
		{"empty passphrase", User{Name: "h", PassphraseFile: emptyPass, Mode: "timed"}, "empty passphrase", ""},
		{"key file is a directory", User{Name: "i", KeyFile: dir, Mode: "timed"}, "not a regular file", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			k, err := tc.user.LoadKey()
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if k.Name != tc.user.Name || k.Secret == ([32]byte{}) || k.Mode.String() != tc.user.Mode {
					t.Errorf("key = %s %v", k.Name, k.Mode)
				}
				return
			}
			var se *SecretError
			if !errors.As(err, &se) {
				t.Fatalf("err = %v, want *SecretError", err)
			}
			if !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), tc.user.Name) {
				t.Errorf("err %q does not contain %q and the user", err, tc.wantErr)
			}
			if !strings.Contains(se.Hint, tc.wantHint) {
				t.Errorf("hint %q does not contain %q", se.Hint, tc.wantHint)
			}
		})
	}

	t.Run("passphrase secret matches cipher", func(t *testing.T) {
		k, err := (&User{Name: "b", PassphraseFile: pass, Mode: "timed"}).LoadKey()
		if err != nil {
			t.Fatal(err)
		}
		if k.Secret != cipher.PassphraseSecret([]byte("correct horse")) {
			t.Error("passphrase secret differs from cipher.PassphraseSecret of the first line")
		}
	})
	t.Run("config reports every bad user", func(t *testing.T) {
		c := &Config{Users: []User{
			{Name: "ok", KeyFile: good, Mode: "timed"},
			{Name: "w", KeyFile: worldKey, Mode: "timed"},
			{Name: "s", KeyFile: short, Mode: "timed"},
		}}
		keys, err := c.LoadKeys()
		if err == nil || keys != nil {
			t.Fatal("accepted")
		}
		if !strings.Contains(err.Error(), `user "w"`) || !strings.Contains(err.Error(), `user "s"`) {
			t.Errorf("err = %v", err)
		}
	})
}
