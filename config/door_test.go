package config

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

const doorsOnly = `[[door]]
name             = "openSSH"
sequence         = "7000,8000,9000"
sequence_timeout = "10s"
tcp_flags        = "syn,!ack"
open             = { ports = ["22"], proto = "tcp" }
cmd_timeout      = "30s"

[[door]]
name     = "closeSSH"
sequence = "9000,8000,7000"
close    = { ports = ["22"] }
`

func TestDoors(t *testing.T) {
	c, err := Parse("d.toml", []byte(doorsOnly))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Doors) != 2 || len(c.Users) != 0 {
		t.Fatalf("doors %d users %d", len(c.Doors), len(c.Users))
	}
	d := c.Doors[0]
	if d.Name != "openSSH" || len(d.Sequence) != 3 || d.Timeout != 10*time.Second || d.CmdTimeout != 30*time.Second {
		t.Errorf("door = %+v", d)
	}
	if c.DoorLines[1] != 9 {
		t.Errorf("second door at line %d, want 9", c.DoorLines[1])
	}

	bad := []struct {
		name string
		doc  string
		line int
		want string
	}{
		{"unknown door key", doorsOnly + "sequense = \"1,2\"\n", 13, `unknown key "door.sequense"`},
		{"bad sequence names its line", "[[door]]\nname = \"x\"\nsequence = \"7000,70000\"\nopen = { ports = [\"22\"] }\ncmd_timeout = \"5s\"\n", 3, "door \"x\": sequence"},
		{"unknown key inside an inline table", "[[door]]\nname = \"x\"\nsequence = \"7000,8000\"\n\nopen = { port = [\"22\"] }\ncmd_timeout = \"5s\"\n", 5, `unknown key "door.open.port"`},
		{"wrong type in a door", "[[door]]\nname = \"x\"\nsequence = 7000\n", 3, "door.sequence"},
		{"door knock inside the knock range", "[[door]]\nname = \"x\"\nsequence = \"7000,800:udp\"\nclose = { ports = [\"22\"] }\n", 3, `door "x": knock 800:udp is inside the knock ports 745-1000`},
		{"door knock inside a moved knock range", "[knock]\nbase = 7000\n[[door]]\nname = \"x\"\nsequence = \"9000,7255\"\nclose = { ports = [\"22\"] }\n", 5, `knock 7255 is inside the knock ports 7000-7255`},
		{"same sequence twice", doorsOnly + "[[door]]\nname = \"again\"\nsequence = \"7000,8000,9000\"\nclose = { ports = [\"22\"] }\n", 0, "same sequence"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("d.toml", []byte(tc.doc))
			if err == nil {
				t.Fatal("accepted")
			}
			prefix := "d.toml: "
			if tc.line > 0 {
				prefix = "d.toml:" + strconv.Itoa(tc.line) + ": "
			}
			found := false
			for _, l := range strings.Split(err.Error(), "\n") {
				found = found || strings.HasPrefix(l, prefix) && strings.Contains(l, tc.want)
			}
			if !found {
				t.Errorf("err = %q, want a line starting %q with %q", err, prefix, tc.want)
			}
		})
	}
}
