package state

import (
	"encoding/json"
	"errors"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// daemonState has the shape the daemon keeps: a version, grants, a replay
// cache and a log position.
type daemonState struct {
	Version  int               `json:"version"`
	Grants   []testGrant       `json:"grants"`
	Replay   map[string]string `json:"replay,omitempty"`
	Position struct {
		Path   string `json:"path"`
		Inode  uint64 `json:"inode"`
		Offset int64  `json:"offset"`
	} `json:"position"`
}

type testGrant struct {
	Addr    netip.Addr `json:"addr"`
	Proto   string     `json:"proto"`
	Port    uint16     `json:"port"`
	Expires time.Time  `json:"expires"`
}

func sample() daemonState {
	s := daemonState{Version: 1, Replay: map[string]string{"alice/ab12": "2026-11-21T06:00:00Z"}}
	s.Grants = []testGrant{
		{Addr: netip.MustParseAddr("198.18.0.2"), Proto: "tcp", Port: 22, Expires: time.Date(2026, 11, 21, 7, 0, 0, 0, time.UTC)},
		{Addr: netip.MustParseAddr("fd00:6b6e::2"), Proto: "udp", Port: 51820},
	}
	s.Position.Path = "/var/log/kern.log"
	s.Position.Inode = 42
	s.Position.Offset = 1 << 40
	return s
}

func TestSaveLoadRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		in   daemonState
	}{
		{"empty state", daemonState{Version: 1, Grants: []testGrant{}}},
		{"grants replay and position", sample()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "state.json")
			if err := Save(path, tc.in); err != nil {
				t.Fatal(err)
			}
			var out daemonState
			if err := Load(path, &out); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(out, tc.in) {
				t.Fatalf("loaded %+v, saved %+v", out, tc.in)
			}
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != 0o600 {
				t.Fatalf("mode %v, want 0600", fi.Mode().Perm())
			}
			assertNoTemps(t, path)
		})
	}
}

func TestSaveReplacesAPermissiveFileWithMode0600(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	if err := os.WriteFile(path, []byte(`{"version":1}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Save(path, sample()); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v after Save over a 0644 file, want 0600", fi.Mode().Perm())
	}
}

func TestLoadMissingIsNotFound(t *testing.T) {
	var s daemonState
	err := Load(filepath.Join(t.TempDir(), "absent.json"), &s)
	if !errors.Is(err, ErrNotFound) || !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("err = %v, want ErrNotFound and fs.ErrNotExist", err)
	}
	var ce *CorruptError
	if errors.As(err, &ce) {
		t.Fatalf("a missing file reported as corrupt: %v", err)
	}
}

func TestLoadCorrupt(t *testing.T) {
	tests := []struct {
		name     string
		content  string
		line     int // 0: no position expected
		contains string
	}{
		{"empty file", "", 0, "empty file"},
		{"only white space", " \n\t\n", 0, "empty file"},
		{"syntax error on line 3", "{\n  \"version\": 1,\n  \"grants\": [,]\n}", 3, "invalid character"},
		{"truncated mid write", `{"version": 1, "grants": [{"addr": "198.18`, 0, "unexpected EOF"},
		{"wrong type", "{\n\"version\": \"one\"}", 2, "cannot unmarshal"},
		{"unknown field", `{"version": 1, "grantz": []}`, 0, "unknown field"},
		{"trailing data", `{"version": 1} {"version": 2}`, 0, "trailing data"},
		{"bad address", `{"version": 1, "grants": [{"addr": "300.1.1.1"}]}`, 0, "300.1.1.1"},
		{"binary garbage", "\x00\xff\xfe garbage", 1, "invalid character"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "state.json")
			if err := os.WriteFile(path, []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
			var s daemonState
			err := Load(path, &s)
			var ce *CorruptError
			if !errors.As(err, &ce) {
				t.Fatalf("err = %v, want *CorruptError", err)
			}
			if errors.Is(err, ErrNotFound) {
				t.Fatalf("corrupt file reported as not found: %v", err)
			}
			msg := err.Error()
			if !strings.Contains(msg, path) || !strings.Contains(msg, "corrupt") || !strings.Contains(msg, tc.contains) {
				t.Fatalf("message %q should name the file, say corrupt and contain %q", msg, tc.contains)
			}
			if tc.line != 0 && ce.Line != tc.line {
				t.Fatalf("line = %d, want %d (%v)", ce.Line, tc.line, err)
			}
		})
	}
}

func TestLoadRefusesOversizedFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(MaxSize + 1); err != nil { // sparse: costs no disk
		t.Fatal(err)
	}
	f.Close()
	var s daemonState
	var ce *CorruptError
	if err := Load(path, &s); !errors.As(err, &ce) || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("err = %v, want a CorruptError about the size", err)
	}
}

func TestLoadVersioned(t *testing.T) {
	tests := []struct {
		name    string
		content string
		wantVer int // the version the error names; -1: no error
	}{
		{"current version", `{"version": 2, "grants": []}`, -1},
		{"older version accepted", `{"version": 1, "grants": []}`, -1},
		{"newer version refused", `{"version": 3, "grants": [], "future": true}`, 3},
		{"missing version", `{"grants": []}`, 0},
		{"zero version", `{"version": 0}`, 0},
		{"negative version", `{"version": -4}`, -4},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "state.json")
			if err := os.WriteFile(path, []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
			var s daemonState
			err := LoadVersioned(path, &s, 2)
			if tc.wantVer == -1 {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var ve *VersionError
			if !errors.As(err, &ve) {
				t.Fatalf("err = %v, want *VersionError", err)
			}
			if ve.Version != tc.wantVer || ve.Supported != 2 || !strings.Contains(err.Error(), path) {
				t.Fatalf("err = %v (%+v), want version %d of %s", err, ve, tc.wantVer, path)
			}
		})
	}
	t.Run("corrupt before the version is read", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "state.json")
		os.WriteFile(path, []byte(`{"version": 1,`), 0o600)
		var s daemonState
		var ce *CorruptError
		if err := LoadVersioned(path, &s, 1); !errors.As(err, &ce) {
			t.Fatalf("err = %v, want *CorruptError", err)
		}
	})
	t.Run("missing file", func(t *testing.T) {
		var s daemonState
		if err := LoadVersioned(filepath.Join(t.TempDir(), "x"), &s, 1); !errors.Is(err, ErrNotFound) {
			t.Fatalf("err = %v, want ErrNotFound", err)
		}
	})
}

// A crash between writing the temp file and the rename leaves the previous
// file under the target name and a stray temp file next to it.
func TestCrashMidWriteKeepsPreviousFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	old := sample()
	if err := Save(path, old); err != nil {
		t.Fatal(err)
	}
	stray := filepath.Join(filepath.Dir(path), tempPrefix(path)+"1234567")
	if err := os.WriteFile(stray, []byte(`{"version": 1, "grants": [{"addr": "19`), 0o600); err != nil {
		t.Fatal(err)
	}
	var got daemonState
	if err := Load(path, &got); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, old) {
		t.Fatalf("after a crashed write Load gave %+v, want the previous %+v", got, old)
	}
	unrelated := filepath.Join(filepath.Dir(path), "other.json")
	os.WriteFile(unrelated, nil, 0o600)
	if err := RemoveStaleTemps(path); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stray); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("stray temp file still there: %v", err)
	}
	for _, keep := range []string{path, unrelated} {
		if _, err := os.Stat(keep); err != nil {
			t.Fatalf("RemoveStaleTemps removed %s: %v", keep, err)
		}
	}
	next := sample()
	next.Position.Offset++
	if err := Save(path, next); err != nil {
		t.Fatal(err)
	}
	if err := Load(path, &got); err != nil || !reflect.DeepEqual(got, next) {
		t.Fatalf("after cleanup Load = %+v, %v; want %+v", got, err, next)
	}
}

func TestSaveFailures(t *testing.T) {
	t.Run("parent is a file", func(t *testing.T) {
		dir := t.TempDir()
		blocker := filepath.Join(dir, "lib")
		os.WriteFile(blocker, nil, 0o600)
		path := filepath.Join(blocker, "state.json")
		err := Save(path, sample())
		if err == nil || !strings.Contains(err.Error(), path) {
			t.Fatalf("err = %v, want an error naming %s", err, path)
		}
		// The directory appears: the next Save works.
		os.Remove(blocker)
		os.Mkdir(blocker, 0o700)
		if err := Save(path, sample()); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("value cannot be encoded", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "state.json")
		Save(path, sample())
		if err := Save(path, map[string]any{"c": make(chan int)}); err == nil {
			t.Fatal("Save of a channel succeeded")
		}
		var got daemonState
		if err := Load(path, &got); err != nil || !reflect.DeepEqual(got, sample()) {
			t.Fatalf("previous file damaged: %+v, %v", got, err)
		}
		assertNoTemps(t, path)
	})
}

func assertNoTemps(t *testing.T, path string) {
	t.Helper()
	matches, err := filepath.Glob(filepath.Join(filepath.Dir(path), tempPrefix(path)+"*"))
	if err != nil {
		t.Fatal(err)
	}
	if len(matches) > 0 {
		t.Fatalf("temp files left behind: %v", matches)
	}
}

// FuzzLoad feeds arbitrary bytes to what Load and LoadVersioned do after
// reading the file: no input may panic, every failure must be a
// *CorruptError or *VersionError, and whatever loads must encode and load
// again.
func FuzzLoad(f *testing.F) {
	seed := `{"version":1,"grants":[{"addr":"198.18.0.2","proto":"tcp","port":22,"expires":"2026-11-21T07:00:00Z"}],"replay":{"a":"b"},"position":{"path":"/x","inode":1,"offset":2}}`
	for _, s := range []string{seed, "", "{", "null", `{"version":1e400}`, `{"version":2}`, `{"version":"1"}`,
		`{"grants":[{"addr":"::ffff:1.2.3.4%eth0"}]}`, `[]`, `{"version":1}{}`, "{\"version\":1,\n\"grants\":[{\"port\":70000}]}"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var s daemonState
		err := parse("fuzz.json", data, &s)
		var ce *CorruptError
		if err != nil && (!errors.As(err, &ce) || err.Error() == "") {
			t.Fatalf("parse error %T %v, want a *CorruptError", err, err)
		}
		var sv daemonState
		verr := parseVersioned("fuzz.json", data, &sv, 1)
		var ve *VersionError
		if verr != nil && !errors.As(verr, &ce) && !errors.As(verr, &ve) {
			t.Fatalf("versioned parse error %T %v", verr, verr)
		}
		if err != nil {
			return
		}
		// Whatever loads must encode and load again (what Save and
		// Load do, without the disk).
		out, err := json.Marshal(s)
		if err != nil {
			t.Fatalf("encoding a loaded state: %v", err)
		}
		var back daemonState
		if err := parse("again.json", out, &back); err != nil {
			t.Fatalf("loading %s again: %v", out, err)
		}
	})
}
