package gateway

import (
	"strings"
	"testing"
)

var allEvents = []event{evNegotiated, evFreeze, evThaw, evEnd, evPark, evWakePlayer, evUnpark, evAttach,
	evDetach, evAskPark, evParkedRead, evWake, evHold, evStowed}

// reachable returns every condition a session can come to: from a new
// player's (an arrival from another process starts the same way, and is
// negotiated at once).
func reachable() []condition {
	start := condition{phaseNegotiating, playerReading, streamAway}
	seen := map[condition]bool{start: true}
	out := []condition{start}
	for i := 0; i < len(out); i++ {
		for _, ev := range allEvents {
			if n, ok := out[i].next(ev); ok && !seen[n] {
				seen[n] = true
				out = append(out, n)
			}
		}
	}
	return out
}

// TestConditionTransitions: the transitions a session's life is made of,
// one by one.
func TestConditionTransitions(t *testing.T) {
	c := func(ph phase, pl playerState, st streamState) condition { return condition{ph, pl, st} }
	for _, tc := range []struct {
		from condition
		ev   event
		to   condition
		ok   bool
	}{
		// A new player: negotiates, then lives, away then attached.
		{c(phaseNegotiating, playerReading, streamAway), evNegotiated, c(phaseLive, playerReading, streamAway), true},
		{c(phaseNegotiating, playerReading, streamAway), evAttach, c(phaseNegotiating, playerReading, streamAway), false},
		{c(phaseNegotiating, playerReading, streamAway), evPark, c(phaseNegotiating, playerReading, streamAway), false},
		{c(phaseLive, playerReading, streamAway), evAttach, c(phaseLive, playerReading, streamAttached), true},
		{c(phaseLive, playerReading, streamAttached), evAttach, c(phaseLive, playerReading, streamAttached), false},
		// The player goes quiet, and types again.
		{c(phaseLive, playerReading, streamAttached), evPark, c(phaseLive, playerParked, streamAttached), true},
		{c(phaseLive, playerParked, streamAttached), evWakePlayer, c(phaseLive, playerReading, streamAttached), true},
		{c(phaseMoving, playerParked, streamAttached), evWakePlayer, c(phaseMoving, playerParked, streamAttached), false},
		{c(phaseGone, playerParked, streamAway), evUnpark, c(phaseGone, playerReading, streamAway), true},
		// The stream goes quiet: Park, Parked; a Wake restarts it.
		{c(phaseLive, playerParked, streamAttached), evAskPark, c(phaseLive, playerParked, streamParkAsked), true},
		{c(phaseLive, playerParked, streamParkAsked), evAskPark, c(phaseLive, playerParked, streamParkAsked), false},
		{c(phaseLive, playerParked, streamParkAsked), evParkedRead, c(phaseLive, playerParked, streamParked), true},
		{c(phaseLive, playerParked, streamParked), evWake, c(phaseLive, playerParked, streamAttached), true},
		// A Wake before the Parked it follows: the reader goes on.
		{c(phaseLive, playerReading, streamParkAsked), evWake, c(phaseLive, playerReading, streamWokenEarly), true},
		{c(phaseLive, playerReading, streamWokenEarly), evParkedRead, c(phaseLive, playerReading, streamAttached), true},
		{c(phaseLive, playerReading, streamWokenEarly), evWake, c(phaseLive, playerReading, streamWokenEarly), false},
		// A Wake for a stream whose reader runs changes nothing.
		{c(phaseLive, playerReading, streamAttached), evWake, c(phaseLive, playerReading, streamAttached), false},
		// A Parked read while moving stops the reader as when live (a Wake
		// restarts it, MovedParked ends it); while ending, it goes on to the
		// stream's last frame.
		{c(phaseMoving, playerReading, streamParkAsked), evParkedRead, c(phaseMoving, playerReading, streamParked), true},
		{c(phaseGone, playerReading, streamParkAsked), evParkedRead, c(phaseGone, playerReading, streamAttached), true},
		// A move: freezing takes a parked socket out of the parker; no
		// attaching, parking or asking while moving; thawing carries on.
		{c(phaseLive, playerParked, streamParked), evFreeze, c(phaseMoving, playerReading, streamParked), true},
		{c(phaseNegotiating, playerReading, streamAway), evFreeze, c(phaseNegotiating, playerReading, streamAway), false},
		{c(phaseMoving, playerReading, streamAway), evAttach, c(phaseMoving, playerReading, streamAway), false},
		{c(phaseMoving, playerReading, streamAttached), evAskPark, c(phaseMoving, playerReading, streamAttached), false},
		{c(phaseMoving, playerReading, streamAttached), evPark, c(phaseMoving, playerReading, streamAttached), false},
		{c(phaseMoving, playerReading, streamParked), evWake, c(phaseMoving, playerReading, streamAttached), true},
		{c(phaseMoving, playerReading, streamAttached), evDetach, c(phaseMoving, playerReading, streamAway), true},
		{c(phaseMoving, playerReading, streamAway), evThaw, c(phaseLive, playerReading, streamAway), true},
		{c(phaseLive, playerReading, streamAway), evThaw, c(phaseLive, playerReading, streamAway), false},
		// Held without a stream: only a live session with none; opened
		// by attaching, let go by detaching; a Wake starts no reader.
		{c(phaseLive, playerParked, streamAway), evHold, c(phaseLive, playerParked, streamHeld), true},
		{c(phaseLive, playerParked, streamAttached), evHold, c(phaseLive, playerParked, streamAttached), false},
		{c(phaseMoving, playerReading, streamAway), evHold, c(phaseMoving, playerReading, streamAway), false},
		{c(phaseLive, playerParked, streamHeld), evAttach, c(phaseLive, playerParked, streamAttached), true},
		{c(phaseLive, playerParked, streamHeld), evWake, c(phaseLive, playerParked, streamHeld), false},
		{c(phaseLive, playerParked, streamHeld), evAskPark, c(phaseLive, playerParked, streamHeld), false},
		{c(phaseLive, playerReading, streamHeld), evDetach, c(phaseLive, playerReading, streamAway), true},
		{c(phaseLive, playerParked, streamHeld), evFreeze, c(phaseMoving, playerReading, streamHeld), true},
		{c(phaseMoving, playerReading, streamHeld), evAttach, c(phaseMoving, playerReading, streamHeld), false},
		{c(phaseMoving, playerReading, streamHeld), evThaw, c(phaseLive, playerReading, streamHeld), true},
		// Stowed: only a stream parked, live or moving, becomes held.
		{c(phaseLive, playerParked, streamParked), evStowed, c(phaseLive, playerParked, streamHeld), true},
		{c(phaseMoving, playerReading, streamParked), evStowed, c(phaseMoving, playerReading, streamHeld), true},
		{c(phaseGone, playerParked, streamParked), evStowed, c(phaseGone, playerParked, streamParked), false},
		{c(phaseLive, playerParked, streamParkAsked), evStowed, c(phaseLive, playerParked, streamParkAsked), false},
		{c(phaseLive, playerParked, streamAttached), evStowed, c(phaseLive, playerParked, streamAttached), false},
		{c(phaseLive, playerParked, streamHeld), evStowed, c(phaseLive, playerParked, streamHeld), false},
		// The end, once.
		{c(phaseMoving, playerReading, streamAway), evEnd, c(phaseGone, playerReading, streamAway), true},
		{c(phaseLive, playerParked, streamAttached), evEnd, c(phaseGone, playerParked, streamAttached), true},
		{c(phaseGone, playerParked, streamAttached), evEnd, c(phaseGone, playerParked, streamAttached), false},
		{c(phaseGone, playerReading, streamAttached), evDetach, c(phaseGone, playerReading, streamAway), true},
		{c(phaseGone, playerReading, streamAway), evDetach, c(phaseGone, playerReading, streamAway), false},
	} {
		got, ok := tc.from.next(tc.ev)
		if got != tc.to || ok != tc.ok {
			t.Errorf("%v + event %d = %v, %v; want %v, %v", tc.from, tc.ev, got, ok, tc.to, tc.ok)
		}
	}
}

// TestConditionRules checks every event in every condition a session can
// come to against the rules the session's code relies on.
func TestConditionRules(t *testing.T) {
	all := reachable()
	// Of 48 conditions, those a session never is in: negotiating with a
	// parked socket or any stream, and moving with its socket parked.
	if len(all) != 4*2*6-(2*6-1)-6 {
		t.Errorf("%d conditions reachable: %v", len(all), all)
	}
	for _, from := range all {
		if from.phase == phaseNegotiating && (from.stream != streamAway || from.player != playerReading) ||
			from.phase == phaseMoving && from.player == playerParked {
			t.Errorf("reachable: %v", from)
		}
		for _, ev := range allEvents {
			to, ok := from.next(ev)
			fail := func(rule string) {
				t.Errorf("%v + event %d = %v, %v: %s", from, ev, to, ok, rule)
			}
			if !ok && to != from {
				fail("a refused event changed the condition")
			}
			if ok && to == from {
				fail("an event applied and changed nothing")
			}
			if from.phase == phaseGone && to.phase != phaseGone {
				fail("an ended session came back")
			}
			if to.phase != from.phase {
				want := map[phase][]event{
					phaseLive:   {evNegotiated, evThaw},
					phaseMoving: {evFreeze},
					phaseGone:   {evEnd},
				}[to.phase]
				found := false
				for _, e := range want {
					found = found || e == ev
				}
				if !found {
					fail("entered its phase by the wrong event")
				}
			}
			if ok && ev == evFreeze && to.player != playerReading {
				fail("a moving session's socket stayed in the parker")
			}
			if ok && to.player == playerParked && from.player != playerParked && to.phase != phaseLive {
				fail("parked outside of live")
			}
			if ok && from.stream == streamAway && to.stream != streamAway && (ev != evAttach && ev != evHold || to.phase != phaseLive) {
				fail("a stream appeared other than by attaching or holding a live session")
			}
			if ok && from.stream == streamHeld && to.stream != streamHeld && ev != evAttach && ev != evDetach {
				fail("a held session changed other than by opening a stream or letting go")
			}
			if ok && to.stream == streamHeld && from.stream != streamHeld && from.stream != streamAway && (ev != evStowed || from.stream != streamParked) {
				fail("a session with a stream was held other than by stowing it parked")
			}
			if ok && from.stream == streamParked && to.stream != streamParked && ev != evWake && ev != evDetach && ev != evStowed {
				fail("a parked stream's reader restarted without a Wake")
			}
			if strings.Contains(to.String(), "(") {
				fail("a condition without a name")
			}
		}
	}
}
