package daemon

import (
	"errors"

	"github.com/knockdaemon/knock/door"
	"github.com/knockdaemon/knock/grant"
	"github.com/knockdaemon/knock/logsource"
	"github.com/knockdaemon/knock/replay"
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
	Replay   []replay.Entry     `json:"replay"`
	Position logsource.Position `json:"position"`
	// DoorPending are the doors' stop commands still to run.
	DoorPending []door.Pending `json:"door_pending,omitempty"`
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
