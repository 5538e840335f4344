package cipher

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

type vector struct {
	Name       string    `json:"name"`
	Key        string    `json:"key"`
	Passphrase string    `json:"passphrase"`
	Mode       string    `json:"mode"`
	Unix       int64     `json:"unix"`
	Allow      string    `json:"allow"`
	Port       uint16    `json:"port"`
	Time       uint8     `json:"time"`
	Base       uint16    `json:"base"`
	Window     *int64    `json:"window"`
	BlockKey   string    `json:"block_key"`
	Plaintext  string    `json:"plaintext"`
	Block      string    `json:"block"`
	Ports      [8]uint16 `json:"ports"`
}

// secret caches passphrase derivations: they are slow on purpose.
var secretCache = map[string][SecretSize]byte{}

func (v *vector) secret(t testing.TB) [SecretSize]byte {
	t.Helper()
	if v.Key != "" {
		s, err := ParseKey([]byte(v.Key))
		if err != nil {
			t.Fatalf("vector %q: %v", v.Name, err)
		}
		return s
	}
	if s, ok := secretCache[v.Passphrase]; ok {
		return s
	}
	s := PassphraseSecret([]byte(v.Passphrase))
	secretCache[v.Passphrase] = s
	return s
}

func (v *vector) key(t testing.TB) Key {
	m, err := ParseMode(v.Mode)
	if err != nil {
		t.Fatalf("vector %q: %v", v.Name, err)
	}
	return Key{Name: v.Name, Secret: v.secret(t), Mode: m}
}

func (v *vector) request(t testing.TB) Request {
	a, err := netip.ParseAddr(v.Allow)
	if err != nil {
		t.Fatalf("vector %q: %v", v.Name, err)
	}
	return Request{Allow: a, Port: v.Port, Time: v.Time}
}

func loadVectors(t testing.TB) []vector {
	t.Helper()
	data, err := os.ReadFile("testdata/vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Comment string   `json:"comment"`
		Vectors []vector `json:"vectors"`
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		t.Fatalf("testdata/vectors.json: %v", err)
	}
	if len(f.Vectors) < 8 {
		t.Fatalf("only %d vectors, want at least 8", len(f.Vectors))
	}
	return f.Vectors
}

// TestVectors checks every vector in testdata/vectors.json against the
// code: the intermediate values, the knock ports, and that the Decoder
// finds the request again at the vector's time.
func TestVectors(t *testing.T) {
	for i, v := range loadVectors(t) {
		t.Run(fmt.Sprintf("%d %s", i+1, v.Name), func(t *testing.T) {
			k := v.key(t)
			r := v.request(t)
			now := time.Unix(v.Unix, 0)
			var w int64
			if k.Mode == Timed {
				w = WindowOf(now)
				if v.Window == nil || *v.Window != w {
					t.Fatalf("window: vector says %v, code says %d", v.Window, w)
				}
			} else if v.Window != nil {
				t.Fatalf("static vector has a window")
			}
			bk := BlockKey(&k.Secret, k.Mode, uint64(w))
			if got := hex.EncodeToString(bk[:]); got != v.BlockKey {
				t.Fatalf("block key = %s, want %s", got, v.BlockKey)
			}
			p, err := Plaintext(r)
			if err != nil {
				t.Fatal(err)
			}
			if got := hex.EncodeToString(p[:]); got != v.Plaintext {
				t.Fatalf("plaintext = %s, want %s", got, v.Plaintext)
			}
			c, err := Seal(k, r, now)
			if err != nil {
				t.Fatal(err)
			}
			if got := hex.EncodeToString(c[:]); got != v.Block {
				t.Fatalf("block = %s, want %s", got, v.Block)
			}
			ports, err := Encode(k, r, now, v.Base)
			if err != nil {
				t.Fatal(err)
			}
			if ports != v.Ports {
				t.Fatalf("ports = %v, want %v", ports, v.Ports)
			}

			block, err := BlockFromPorts(v.Ports, v.Base)
			if err != nil {
				t.Fatal(err)
			}
			d := NewDecoder([]Key{k}, DefaultMaxSkew)
			var got []Match
			d.Decode(block, now, func(m Match) bool { got = append(got, m); return true })
			if len(got) != 1 {
				t.Fatalf("decoder offered %d matches, want 1", len(got))
			}
			if got[0].Request.Port != r.Port || got[0].Request.Time != r.Time || got[0].Request.Allow != r.Allow.Unmap() {
				t.Fatalf("decoded %v, want %v", got[0].Request, r)
			}
		})
	}
}

// TestVectorsMarkdown checks that docs/PROTOCOL.md shows exactly the
// vectors of testdata/vectors.json, so the documentation cannot drift.
func TestVectorsMarkdown(t *testing.T) {
	vs := loadVectors(t)
	doc, err := os.ReadFile("../docs/PROTOCOL.md")
	if err != nil {
		t.Fatal(err)
	}
	rows := mdTable(t, doc, "vectors")
	inter := mdTable(t, doc, "intermediate")
	if len(rows) != len(vs) || len(inter) != len(vs) {
		t.Fatalf("docs/PROTOCOL.md has %d vector rows and %d intermediate rows; vectors.json has %d",
			len(rows), len(inter), len(vs))
	}
	for i, v := range vs {
		t.Run(fmt.Sprintf("%d %s", i+1, v.Name), func(t *testing.T) {
			secret := "key `" + v.Key + "`"
			if v.Key == "" {
				secret = "passphrase `" + v.Passphrase + "`"
			}
			ports := make([]string, len(v.Ports))
			for j, p := range v.Ports {
				ports[j] = strconv.Itoa(int(p))
			}
			want := []string{strconv.Itoa(i + 1), secret, v.Mode, strconv.FormatInt(v.Unix, 10), v.Allow,
				strconv.Itoa(int(v.Port)), strconv.Itoa(int(v.Time)), strconv.Itoa(int(v.Base)), strings.Join(ports, " ")}
			if !equalCells(rows[i], want) {
				t.Errorf("vector row\n got %q\nwant %q", rows[i], want)
			}
			win := "—"
			if v.Window != nil {
				win = strconv.FormatInt(*v.Window, 10)
			}
			want = []string{strconv.Itoa(i + 1), win, "`" + v.BlockKey + "`", "`" + v.Plaintext + "`", "`" + v.Block + "`"}
			if !equalCells(inter[i], want) {
				t.Errorf("intermediate row\n got %q\nwant %q", inter[i], want)
			}
		})
	}
}

func equalCells(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// mdTable returns the body rows of the table between
// <!-- name:begin --> and <!-- name:end -->, as trimmed cells.
func mdTable(t *testing.T, doc []byte, name string) [][]string {
	t.Helper()
	begin, end := "<!-- "+name+":begin -->", "<!-- "+name+":end -->"
	_, rest, ok := bytes.Cut(doc, []byte(begin))
	if !ok {
		t.Fatalf("docs/PROTOCOL.md: no %s", begin)
	}
	body, _, ok := bytes.Cut(rest, []byte(end))
	if !ok {
		t.Fatalf("docs/PROTOCOL.md: no %s", end)
	}
	var rows [][]string
	sc := bufio.NewScanner(bytes.NewReader(body))
	n := 0
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		if !strings.HasPrefix(line, "|") || !strings.HasSuffix(line, "|") {
			t.Fatalf("docs/PROTOCOL.md %s table: not a table row: %q", name, line)
		}
		n++
		if n <= 2 { // header and separator
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		rows = append(rows, cells)
	}
	return rows
}
