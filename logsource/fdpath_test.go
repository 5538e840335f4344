package logsource

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

func TestPinnedOr(t *testing.T) {
	dir := t.TempDir()
	name := filepath.Join(dir, "kern.log")
	other := filepath.Join(dir, "other.log")
	for _, p := range []string{name, other} {
		if err := os.WriteFile(p, []byte("x\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// A path to the same inode under another name: a hard link stands in
	// for /dev/fd/N on a system that has it.
	link := filepath.Join(dir, "link")
	if err := os.Link(name, link); err != nil {
		t.Fatal(err)
	}
	fd := "/dev/fd/" + strconv.FormatUint(uint64(f.Fd()), 10)
	cases := []struct {
		name, p, want string
	}{
		{"same inode", link, link},
		{"missing descriptor path", filepath.Join(dir, "fd", "7"), name},
		{"another file", other, name},
	}
	if _, err := os.Stat(fd); err == nil {
		cases = append(cases, struct{ name, p, want string }{"this system's /dev/fd", fd, fd})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := pinnedOr(f, tc.p); got != tc.want {
				t.Errorf("pinnedOr(%s) = %s, want %s", tc.p, got, tc.want)
			}
		})
	}
}
