package telnet

// qstate is one side of one option in RFC 1143's Q method: NO, YES, WANTNO
// or WANTYES, plus the queue bit that records a request for the opposite
// made while a previous request is still unanswered.
type qstate uint8

const (
	qNo qstate = iota
	qYes
	qWantNo
	qWantYes
	qOpposite qstate = 4 // the queue bit
)

func (q qstate) base() qstate   { return q &^ qOpposite }
func (q qstate) queued() bool   { return q&qOpposite != 0 }
func (q qstate) String() string { return [...]string{"NO", "YES", "WANTNO", "WANTYES"}[q.base()] }

// side names the two halves of an option.
type side uint8

const (
	us  side = iota // the gateway: WILL/WONT from us, DO/DONT from the client
	him             // the client: WILL/WONT from the client, DO/DONT from us
)

// receive applies a WILL/WONT (for him) or DO/DONT (for us) from the
// client to state q, as RFC 1143 section 7 prescribes. agree says whether
// the gateway accepts the option on that side. It returns the new state, the
// verb to answer with (0 for none) and the option's change, if any.
func receive(q qstate, enable, agree bool, s side) (next qstate, reply byte, changed int) {
	yes, no := verbs(s)
	switch {
	case enable: // WILL or DO
		switch q {
		case qNo:
			if agree {
				return qYes, yes, +1
			}
			return qNo, no, 0
		case qYes:
			return qYes, 0, 0
		case qWantNo:
			return qNo, 0, 0 // an error by the peer: DONT answered by WILL
		case qWantNo | qOpposite:
			return qYes, 0, +1
		case qWantYes:
			return qYes, 0, +1
		case qWantYes | qOpposite:
			return qWantNo, no, 0
		}
	default: // WONT or DONT
		switch q.base() {
		case qNo:
			return qNo, 0, 0
		case qYes:
			return qNo, no, -1
		case qWantNo:
			if q.queued() {
				return qWantYes, yes, -1
			}
			return qNo, 0, -1
		case qWantYes:
			return qNo, 0, 0
		}
	}
	return q, 0, 0
}

// request asks for the option on a side to become enabled or disabled. It
// returns the new state and the verb to send (0 for none).
func request(q qstate, enable bool, s side) (next qstate, send byte) {
	yes, no := verbs(s)
	if enable {
		switch q {
		case qNo:
			return qWantYes, yes
		case qWantNo:
			return qWantNo | qOpposite, 0
		case qWantYes | qOpposite:
			return qWantYes, 0
		}
		return q, 0 // already YES or on its way
	}
	switch q {
	case qYes:
		return qWantNo, no
	case qWantYes:
		return qWantYes | qOpposite, 0
	case qWantNo | qOpposite:
		return qWantNo, 0
	}
	return q, 0
}

// verbs returns what we send to enable or disable a side: WILL/WONT for
// ours, DO/DONT for the client's.
func verbs(s side) (yes, no byte) {
	if s == us {
		return WILL, WONT
	}
	return DO, DONT
}
