package config

import (
	"bytes"
	"strings"
)

// keyPos is where one key was written in the file. Index is the position of
// the enclosing array-of-tables element ([[user]] number 0, 1, ...), or -1.
type keyPos struct {
	key   string // dotted, e.g. "knock.base" or "user.name"
	index int
	line  int
}

// locate finds the line of every "key = value" and table header in a TOML
// document. BurntSushi/toml reports positions for syntax errors but not for
// undecoded keys, nor per element of an array of tables, so the loader
// finds them itself. It understands the subset a config file uses: table
// and array-of-table headers, bare, quoted and dotted keys, comments and
// multi-line strings (whose contents are skipped). Inline tables are
// recorded under their own key only.
func locate(data []byte) []keyPos {
	var (
		out     []keyPos
		table   string
		index   = -1
		counts  = map[string]int{}
		inMulti string // the closing delimiter of an open multi-line string
	)
	for n, raw := range bytes.Split(data, []byte("\n")) {
		line := strings.TrimSpace(string(raw))
		if inMulti != "" {
			if strings.Count(line, inMulti)%2 == 1 {
				inMulti = ""
			}
			continue
		}
		if line == "" || line[0] == '#' {
			continue
		}
		if strings.HasPrefix(line, "[[") {
			end := strings.Index(line, "]]")
			if end < 0 {
				continue
			}
			table = normKey(line[2:end])
			index = counts[table]
			counts[table]++
			out = append(out, keyPos{key: table, index: index, line: n + 1})
			continue
		}
		if line[0] == '[' {
			end := strings.IndexByte(line, ']')
			if end < 0 {
				continue
			}
			table = normKey(line[1:end])
			index = -1
			out = append(out, keyPos{key: table, index: -1, line: n + 1})
			continue
		}
		eq := keyEnd(line)
		if eq < 0 {
			continue
		}
		k := normKey(line[:eq])
		if table != "" {
			k = table + "." + k
		}
		out = append(out, keyPos{key: k, index: index, line: n + 1})
		rest := line[eq+1:]
		for _, d := range []string{`"""`, `'''`} {
			if strings.Count(rest, d)%2 == 1 {
				inMulti = d
				break
			}
		}
	}
	return out
}

// keyEnd returns the index of the '=' that ends the key on line, skipping
// quoted parts of the key, or -1.
func keyEnd(line string) int {
	var quote byte
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '"' || c == '\'':
			quote = c
		case c == '=':
			return i
		case c == '#' || c == '[' || c == ']' || c == '{' || c == ',':
			return -1
		}
	}
	return -1
}

// normKey turns ` a . "b" ` into `a.b`.
func normKey(s string) string {
	parts := strings.Split(s, ".")
	for i, p := range parts {
		p = strings.TrimSpace(p)
		if len(p) >= 2 && (p[0] == '"' || p[0] == '\'') && p[len(p)-1] == p[0] {
			p = p[1 : len(p)-1]
		}
		parts[i] = p
	}
	return strings.Join(parts, ".")
}

// lineOf returns the line of key in array element index (-1 for plain
// tables), or 0 when it is not written in the file.
func lineOf(pos []keyPos, key string, index int) int {
	for _, p := range pos {
		if p.key == key && p.index == index {
			return p.line
		}
	}
	return 0
}

// nthLine returns the line of the n-th (from 0) occurrence of key, or 0.
func nthLine(pos []keyPos, key string, n int) int {
	for _, p := range pos {
		if p.key == key {
			if n == 0 {
				return p.line
			}
			n--
		}
	}
	return 0
}
