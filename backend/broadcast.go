package backend

import (
	"cmp"
	"maps"
	"slices"

	"holdfast/link"
)

// Broadcast writes p to every session in to, as Write would: a line that
// many players get at once (a channel, an arrival). Each gateway link
// takes it in one frame for all of its sessions whose streams are parked,
// or that it holds without a stream, most idle players, so that the line
// waits neither for each player's stream in turn nor for a slow player's;
// the other sessions are written to in turn, after, those with a write
// under way (perhaps to a slow player) last. It returns the first error a
// Write returned.
func (l *Listener) Broadcast(to []*Session, p []byte) error {
	if len(p) > link.MaxChunk {
		return writeEach(to, p)
	}
	return writeEach(l.broadcastParked(to, p), p)
}

// broadcastParked sends p to the sessions of to whose streams are parked,
// and to those held by a gateway that takes HeldFrames (Parked number 0),
// and returns the others, those busy writing last.
func (l *Listener) broadcastParked(to []*Session, p []byte) (rest []*Session) {
	l.mu.Lock()
	links := slices.Collect(maps.Keys(l.links))
	l.mu.Unlock()
	// In one order for every Broadcast: two at once, each holding a link
	// the other waits for behind a writer (a claim, a Stow, a Move),
	// would wait for ever.
	slices.SortFunc(links, func(a, b *gatewayLink) int { return cmp.Compare(a.seq, b.seq) })
	for _, gl := range links {
		gl.bcast.RLock()
		defer gl.bcast.RUnlock()
	}
	type recipient struct {
		s    *Session
		park uint32
	}
	parked := make(map[*gatewayLink][]recipient)
	var busy []*Session
	for _, s := range to {
		gl, park, writing := s.parkedOn()
		if gl == nil && !writing {
			gl, park = s.heldFor(len(p)), 0
		}
		switch {
		case gl != nil && slices.Contains(links, gl):
			parked[gl] = append(parked[gl], recipient{s, park})
		case writing:
			busy = append(busy, s)
		default:
			rest = append(rest, s)
		}
	}
	for gl, rs := range parked {
		for len(rs) > 0 {
			b := link.Broadcast{Text: p}
			for _, r := range rs[:min(len(rs), link.MaxMove)] {
				b.To = append(b.To, link.Parked{ID: r.s.id, Park: r.park})
			}
			if gl.control(link.FrameBroadcast, b.Append(nil)) != nil {
				// The link has failed: these sessions keep the line for
				// the stream they are resumed on.
				for _, r := range rs {
					rest = append(rest, r.s)
				}
				break
			}
			for _, r := range rs[:len(b.To)] {
				r.s.keepBroadcast(p)
			}
			rs = rs[len(b.To):]
		}
	}
	return append(rest, busy...)
}

func writeEach(to []*Session, p []byte) error {
	var first error
	for _, s := range to {
		if _, err := s.Write(p); err != nil && first == nil {
			first = err
		}
	}
	return first
}
