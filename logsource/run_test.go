package logsource

import (
	"context"
	"sync"
	"testing"
	"time"
)

// running is a source a test runs in the background.
type running struct {
	done chan struct{} // closed when Run returned
	err  error         // what Run returned, once done is closed
	stop func()
}

// runSource runs src with emit until stop or the end of the test. stop
// cancels Run and fails the test when Run returns an error or does not
// return within the given time; it may be called more than once.
func runSource(t *testing.T, src Source, emit func(Line), within time.Duration) *running {
	t.Helper()
	r := &running{done: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		r.err = src.Run(ctx, emit)
		close(r.done)
	}()
	var once sync.Once
	r.stop = func() {
		once.Do(func() {
			cancel()
			select {
			case <-r.done:
				if r.err != nil {
					t.Errorf("%s: Run: %v", src, r.err)
				}
			case <-time.After(within):
				t.Errorf("%s: Run did not return within %v of the cancel", src, within)
			}
		})
	}
	t.Cleanup(r.stop)
	return r
}
