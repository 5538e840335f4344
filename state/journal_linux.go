package state

import "syscall"

// oDSync makes every write reach the disk before it returns, file size
// included, without the inode's times (O_DSYNC, Linux).
const oDSync = syscall.O_DSYNC
