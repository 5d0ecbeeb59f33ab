package gateway

import (
	"testing"
	"time"
)

// TestAnswerDelays: the slowest of the latest answers counts while it is
// younger than answerMemory and among the last answerSamples; an answer
// early (a client that spoke before the offers) counts as on time.
func TestAnswerDelays(t *testing.T) {
	now := time.Now()
	ms := time.Millisecond
	type answer struct{ late, ago time.Duration }
	quick := func(n int) []answer { return make([]answer, n) }
	for _, tc := range []struct {
		name    string
		answers []answer // oldest first
		want    time.Duration
	}{
		{"none", nil, 0},
		{"one", []answer{{7 * ms, time.Second}}, 7 * ms},
		{"the slowest", []answer{{3 * ms, 3 * time.Second}, {40 * ms, 2 * time.Second}, {5 * ms, time.Second}}, 40 * ms},
		{"early", []answer{{-2 * ms, 0}}, 0},
		{"pushed out by newer ones", append([]answer{{90 * ms, time.Second}}, quick(answerSamples)...), 0},
		{"the last of many", append(quick(answerSamples), answer{90 * ms, 0}), 90 * ms},
		{"too old", []answer{{90 * ms, answerMemory}, {3 * ms, 0}}, 3 * ms},
		{"not yet too old", []answer{{90 * ms, answerMemory - time.Second}, {3 * ms, 0}}, 90 * ms},
	} {
		var a answerDelays
		for _, x := range tc.answers {
			a.observe(now.Add(-x.ago), x.late)
		}
		if got := a.slowest(now); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}
