package testbin

import (
	"os"
	"strings"
	"testing"
)

func TestBuildMakesRunnableWorldReadablePrograms(t *testing.T) {
	dir := t.TempDir()
	paths, err := Build(dir, false, "github.com/knockdaemon/knock/e2e/listener")
	if err != nil {
		t.Fatal(err)
	}
	p := paths["github.com/knockdaemon/knock/e2e/listener"]
	if !strings.HasSuffix(p, "/listener") {
		t.Fatalf("path %q, want it named after the package", p)
	}
	for _, f := range []string{dir, p} {
		st, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm()&0o005 != 0o005 {
			t.Errorf("%s mode %v: others cannot read and execute it", f, st.Mode())
		}
	}
	if _, err := Build(t.TempDir(), false, "github.com/knockdaemon/knock/no/such/package"); err == nil {
		t.Fatal("building a missing package succeeded")
	}
}
