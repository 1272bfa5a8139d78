package reports

import (
	"fmt"
	"sort"

	"github.com/lockprobe/lockprobe/analysis"
	"github.com/lockprobe/lockprobe/semconv"
)

// histEdges are the histogram's bucket bounds in ns, one per decade from 1 µs to 1000 s: lock
// waits span many orders of magnitude, from an uncontended grant to a hang.
var histEdges = func() []int64 {
	out := []int64{0}
	for p := int64(1e3); p <= 1e12; p *= 10 {
		out = append(out, p)
	}
	return out
}()

// histogram counts the attempts by how long they took from request to outcome (to the end of the
// run for one still blocked), granted apart from the rest. Only the buckets from the first to the
// last used one are kept.
func histogram(res *analysis.Result) []Bucket {
	all := make([]Bucket, len(histEdges))
	for i, lo := range histEdges {
		all[i].LoNS = lo
		if i+1 < len(histEdges) {
			all[i].HiNS = histEdges[i+1]
		} else {
			all[i].HiNS = 0 // open-ended
		}
	}
	for _, a := range res.Attempts {
		end := a.End
		if end == 0 || end > res.End && res.End > 0 {
			end = max(res.End, a.Begin)
		}
		d := end - a.Begin
		i := sort.Search(len(histEdges), func(i int) bool { return histEdges[i] > d }) - 1
		if i < 0 {
			i = 0
		}
		if a.Outcome == semconv.OutcomeGranted {
			all[i].Granted++
		} else {
			all[i].Other++
		}
	}
	first, last := -1, -1
	for i, b := range all {
		if b.Granted+b.Other > 0 {
			if first < 0 {
				first = i
			}
			last = i
		}
	}
	if first < 0 {
		return []Bucket{}
	}
	return all[first : last+1]
}

type histSVG struct {
	W, H  string
	BaseY string
	Bars  []hBar
	Empty bool
}

type hBar struct {
	X, W           string
	GY, GH, OY, OH string
	LX, LY         string
	Label          string
	Count          string
	CY             string
	Title          string
}

// buildHist draws the histogram: one column per bucket, granted below, the rest stacked on top.
func buildHist(bs []Bucket) histSVG {
	const colW, gapW, plotH, top, left = 46.0, 10.0, 150.0, 18.0, 10.0
	h := histSVG{Bars: []hBar{}, Empty: len(bs) == 0}
	peak := 1
	for _, b := range bs {
		peak = max(peak, b.Granted+b.Other)
	}
	base := top + plotH
	for i, b := range bs {
		x := left + float64(i)*(colW+gapW)
		gh := plotH * float64(b.Granted) / float64(peak)
		oh := plotH * float64(b.Other) / float64(peak)
		span := "≥ " + dur(b.LoNS)
		if b.HiNS > 0 {
			span = dur(b.LoNS) + " – " + dur(b.HiNS)
		}
		h.Bars = append(h.Bars, hBar{
			X: f1(x), W: f1(colW),
			GY: f1(base - gh), GH: f1(gh), OY: f1(base - gh - oh), OH: f1(oh),
			LX: f1(x + colW/2), LY: f1(base + 14), Label: dur(b.LoNS),
			Count: fmt.Sprint(b.Granted + b.Other), CY: f1(base - gh - oh - 4),
			Title: fmt.Sprintf("%s: %d granted, %d not granted", span, b.Granted, b.Other),
		})
	}
	h.W = f1(left*2 + float64(len(bs))*(colW+gapW))
	h.H = f1(base + 22)
	h.BaseY = f1(base)
	return h
}
