package daemon

import (
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestNewLogger(t *testing.T) {
	t.Run("json to stderr", func(t *testing.T) {
		var buf logBuf
		level := new(slog.LevelVar)
		log, closer, err := NewLogger("json", "stderr", level, &buf)
		if err != nil {
			t.Fatal(err)
		}
		log.Info("knock accepted", "event", "accepted", "src", addr("198.51.100.7"), "port", 22)
		log.Debug("hidden at info")
		if err := closer.Close(); err != nil {
			t.Fatal(err)
		}
		var rec map[string]any
		if err := json.Unmarshal([]byte(strings.TrimSpace(buf.String())), &rec); err != nil {
			t.Fatalf("not one JSON record: %v: %q", err, buf.String())
		}
		if rec["event"] != "accepted" || rec["src"] != "198.51.100.7" || rec["port"] != float64(22) {
			t.Errorf("record = %v", rec)
		}
	})
	t.Run("text flushes within the delay", func(t *testing.T) {
		var buf logBuf
		log, closer, err := NewLogger("text", "stderr", new(slog.LevelVar), &buf)
		if err != nil {
			t.Fatal(err)
		}
		defer closer.Close()
		log.Warn("source locked out", "event", "lockout")
		deadline := time.Now().Add(5 * time.Second)
		for !strings.Contains(buf.String(), "event=lockout") {
			if time.Now().After(deadline) {
				t.Fatal("log line not flushed")
			}
			time.Sleep(FlushDelay / 2)
		}
	})
	t.Run("level follows reload", func(t *testing.T) {
		var buf logBuf
		level := new(slog.LevelVar)
		log, closer, _ := NewLogger("text", "stderr", level, &buf)
		level.Set(ParseLevel("debug"))
		log.Debug("now visible")
		closer.Close()
		if !strings.Contains(buf.String(), "now visible") {
			t.Errorf("debug line missing after the level change: %q", buf.String())
		}
	})
	for _, bad := range [][2]string{{"xml", "stderr"}, {"text", "file"}} {
		if _, _, err := NewLogger(bad[0], bad[1], new(slog.LevelVar), &logBuf{}); err == nil {
			t.Errorf("NewLogger(%q, %q) accepted", bad[0], bad[1])
		}
	}
}
