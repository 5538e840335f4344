package state

import (
	"bytes"
	"reflect"
	"testing"
)

// FuzzJournalRead: the journal reader never panics, never returns a
// record it cannot vouch for (each one re-encodes to a line of the
// input), reports a size within the input that ends a line, and reads
// back exactly what appendRecord wrote after any prefix of valid
// records. Seeds: testdata/fuzz/FuzzJournalRead.
func FuzzJournalRead(f *testing.F) {
	var good []byte
	for i := range 3 {
		good, _ = appendRecord(good, recN(i))
	}
	f.Add(good)
	f.Add(good[:len(good)-3])
	f.Add([]byte("00000000 {}\n"))
	f.Add([]byte("\n\n\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		recs, info := parseJournal[rec](data)
		if info.Size < 0 || info.Size > int64(len(data)) || (info.Size > 0 && data[info.Size-1] != '\n') {
			t.Fatalf("size %d of %d bytes does not end a line", info.Size, len(data))
		}
		if info.Records != len(recs) {
			t.Fatalf("Records %d, returned %d", info.Records, len(recs))
		}
		for _, r := range recs {
			line, err := appendRecord(nil, r)
			if err != nil {
				t.Fatal(err)
			}
			// JSON may decode a line that re-encodes differently (key
			// order, spaces); what must hold is that it decodes again to
			// the same record.
			again, ok := decodeRecord[rec](bytes.TrimSuffix(line, []byte{'\n'}))
			if !ok || !reflect.DeepEqual(again, r) {
				t.Fatalf("record %+v does not survive a round trip", r)
			}
		}
		// Appending a valid record after the whole lines always reads
		// back as the last record.
		tail, _ := appendRecord(nil, recN(7))
		more := append(append([]byte(nil), data[:info.Size]...), tail...)
		recs2, info2 := parseJournal[rec](more)
		if len(recs2) != len(recs)+1 || !reflect.DeepEqual(recs2[len(recs2)-1], recN(7)) || info2.Torn {
			t.Fatalf("a record appended after the cut is not read back: %d -> %d records, %+v", len(recs), len(recs2), info2)
		}
	})
}
