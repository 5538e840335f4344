//go:build !windows

package cipher

// permBitsApply is true where Unix permission bits control access.
const permBitsApply = true
