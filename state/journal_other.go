//go:build !linux

package state

import "os"

// oDSync: O_SYNC where O_DSYNC is not offered portably.
const oDSync = os.O_SYNC
