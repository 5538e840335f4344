//go:build !linux

package logsource

import "errors"

// watcher is Linux-only (inotify); elsewhere the File source polls.
type watcher struct{ C chan struct{} }

func newWatcher(dir, base string, onEvent func()) (*watcher, error) {
	return nil, errors.New("no inotify on this system")
}

func (w *watcher) refresh() {}
func (w *watcher) close()   {}
