package door

import (
	"os"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
)

// The [[door]] example of docs/DOORS.md is valid, so the documentation
// cannot drift from the schema.
func TestDocsExample(t *testing.T) {
	data, err := os.ReadFile("../docs/DOORS.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(data), "```toml\n")
	block, _, ok2 := strings.Cut(rest, "```")
	if !ok || !ok2 {
		t.Fatal("docs/DOORS.md has no ```toml block")
	}
	var doc struct {
		Door []Config `toml:"door"`
	}
	md, err := toml.Decode(block, &doc)
	if err != nil {
		t.Fatalf("the example is not TOML: %v", err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		t.Fatalf("the example has keys the schema does not know: %v", und)
	}
	var doors []*Door
	for i := range doc.Door {
		d, err := doc.Door[i].Compile()
		if err != nil {
			t.Fatalf("door %d of the example: %v", i, err)
		}
		doors = append(doors, d)
	}
	if len(doors) != 3 {
		t.Fatalf("%d doors in the example, want 3", len(doors))
	}
	if err := CheckSet(doors); err != nil {
		t.Fatal(err)
	}
}
