//go:build windows

package cipher

// permBitsApply is false on Windows: file modes there do not express who
// may read a file.
const permBitsApply = false
