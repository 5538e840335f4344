package knock

import (
	"net/netip"
	"runtime"
	"testing"
	"time"
	"unsafe"

	"github.com/knockdaemon/knock/internal/clock"
)

// BenchmarkAddHot measures Add on the hot path: a known source whose every
// hit completes a candidate (target: 0 allocs/op). For scale, every 4096
// hits it also times (outside the benchmark timer) 4096 increments of a
// map[netip.Addr]int counter, the cheapest per-source bookkeeping there is,
// and reports the ratio; interleaving keeps both under the same load.
func BenchmarkAddHot(b *testing.B) {
	a, err := New(Config{}, clock.NewFake(t0))
	if err != nil {
		b.Fatal(err)
	}
	defer a.Close()
	h := Hit{Src: netip.MustParseAddr("192.0.2.1"), Proto: TCP}
	m := map[netip.Addr]int{}
	var baseNs time.Duration
	baseOps := 0
	b.ReportAllocs()
	k := 0
	for b.Loop() {
		h.SrcPort = uint16(k)
		h.DstPort = DefaultBase + uint16(k&255)
		h.Time = t0.Add(time.Duration(k) * time.Microsecond)
		if _, err := a.Add(h); err != nil {
			b.Fatal(err)
		}
		if k++; k&4095 == 0 {
			b.StopTimer()
			start := time.Now()
			for range 4096 {
				m[h.Src]++
			}
			baseNs += time.Since(start)
			baseOps += 4096
			b.StartTimer()
		}
	}
	if baseOps > 0 {
		base := float64(baseNs.Nanoseconds()) / float64(baseOps)
		b.ReportMetric(base, "baseline-ns/hit")
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(k)/base, "x-baseline")
	}
}

// BenchmarkAddNotKnockPort measures the cost of a hit outside the knock
// ports (no lock taken).
func BenchmarkAddNotKnockPort(b *testing.B) {
	a, err := New(Config{}, clock.NewFake(t0))
	if err != nil {
		b.Fatal(err)
	}
	defer a.Close()
	h := Hit{Src: netip.MustParseAddr("192.0.2.1"), Proto: TCP, DstPort: 22}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := a.Add(h); err != nil {
			b.Fatal(err)
		}
	}
}

const (
	floodHits    = 1_000_000
	floodSources = 100_000
)

// floodSrc is the source of the k-th flood hit: 100,000 distinct addresses
// in a scattered order, as spoofed traffic would be.
func floodSrc(k int) netip.Addr {
	i := uint32(k*7919) % floodSources
	return netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
}

func heapInuse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// BenchmarkFlood feeds 1,000,000 knock-port hits from 100,000 distinct
// sources (default config: 65,536 sources, so every hit evicts; the worst
// case) through a fresh Assembler per iteration, and in the same run through
// a baseline that only counts hits per source in a map[netip.Addr]int. The
// two are fed in alternating slices of 10,000 hits so that both see the same
// machine load, which makes the ratio meaningful on a busy machine. It
// reports hits/s and heap in use for both and their ratios.
func BenchmarkFlood(b *testing.B) {
	const slice = 10_000
	var aNs, bNs time.Duration
	var aHeap, bHeap uint64
	iters := 0
	for b.Loop() {
		iters++
		h0 := heapInuse()
		m := map[netip.Addr]int{}
		for k := range floodHits {
			m[floodSrc(k)]++ // grow it fully first: its heap, not its warm-up
		}
		bHeap = heapInuse() - h0
		clear(m)

		h0 = heapInuse()
		a, err := New(Config{}, clock.NewFake(t0))
		if err != nil {
			b.Fatal(err)
		}
		for lo := 0; lo < floodHits; lo += slice {
			start := time.Now()
			for k := lo; k < lo+slice; k++ {
				m[floodSrc(k)]++
			}
			mid := time.Now()
			for k := lo; k < lo+slice; k++ {
				h := Hit{Src: floodSrc(k), Proto: TCP, SrcPort: uint16(k), DstPort: DefaultBase + uint16(k*13&255), Time: t0.Add(time.Duration(k) * time.Microsecond)}
				if r, err := a.Add(h); err != nil {
					b.Fatal(err)
				} else if r.Outcome == Candidate {
					a.Reject(h.Src)
				}
			}
			bNs += mid.Sub(start)
			aNs += time.Since(mid)
		}
		aHeap = heapInuse() - h0 // m was live at h0 too
		runtime.KeepAlive(m)
		if s := a.Stats(); s.Sources > DefaultMaxSources || s.Evictions == 0 {
			b.Fatalf("flood stats %+v", s)
		}
		a.Close()
		runtime.KeepAlive(a)
	}
	hits := float64(floodHits * iters)
	aRate := hits / aNs.Seconds()
	bRate := hits / bNs.Seconds()
	b.ReportMetric(aRate, "hits/s")
	b.ReportMetric(bRate, "baseline-hits/s")
	b.ReportMetric(aRate/bRate, "speed-ratio")
	b.ReportMetric(float64(aHeap)/(1<<20), "heap-MB")
	b.ReportMetric(float64(bHeap)/(1<<20), "baseline-heap-MB")
	b.ReportMetric(0, "ns/op") // suppressed: one op is a whole flood; the rates above say it
}

// TestTableFootprint guards the compact layout the memory budget rests on:
// 80 bytes a source, whatever MaxHits, allocated only as sources appear.
func TestTableFootprint(t *testing.T) {
	if n := unsafe.Sizeof(entry{}); n > 80 {
		t.Fatalf("entry is %d bytes, budget 80", n)
	}
	f := newFixture(t, Config{MaxSources: 3000, MaxHits: 255})
	for k := range 10_000 {
		f.knock(floodSrc(k).String(), byte(k))
	}
	var bytes uintptr
	for _, c := range f.a.chunks {
		bytes += uintptr(cap(c)) * unsafe.Sizeof(entry{})
	}
	if want := 3000 * unsafe.Sizeof(entry{}); bytes != want {
		t.Fatalf("table storage %d bytes for 3000 sources, want exactly %d", bytes, want)
	}
}
