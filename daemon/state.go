package daemon

import (
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/knockdaemon/knock/grant"
	"github.com/knockdaemon/knock/logsource"
	"github.com/knockdaemon/knock/state"
)

// StateVersion is the version of the state file this build writes and the
// newest it reads.
const StateVersion = 1

// State is the daemon's state file: everything a restart needs so that no
// opening outlives its grant, no accepted sequence is accepted again and no
// log line is read twice or skipped.
type State struct {
	Version  int                `json:"version"`
	Grants   []grant.Grant      `json:"grants"`
	Replay   []ReplayEntry      `json:"replay"`
	Position logsource.Position `json:"position"`
}

// ReplayEntry is one accepted (key, block) pair and until when it must be
// refused. The block is the ciphertext seen on the wire, not a secret.
type ReplayEntry struct {
	User  string    `json:"user"`
	Block string    `json:"block"` // 16 hex digits
	Until time.Time `json:"until"`
}

func blockHex(b [8]byte) string { return hex.EncodeToString(b[:]) }

func parseBlock(s string) ([8]byte, error) {
	var b [8]byte
	if len(s) != 16 {
		return b, fmt.Errorf("replay block %q: want 16 hex digits", s)
	}
	if _, err := hex.Decode(b[:], []byte(s)); err != nil {
		return b, fmt.Errorf("replay block %q: %v", s, err)
	}
	return b, nil
}

// LoadState reads the state file. A missing file is a first start: an
// empty state and no error.
func LoadState(path string) (State, error) {
	var s State
	err := state.LoadVersioned(path, &s, StateVersion)
	if errors.Is(err, state.ErrNotFound) {
		return State{Version: StateVersion}, nil
	}
	if err != nil {
		return State{Version: StateVersion}, err
	}
	return s, nil
}
