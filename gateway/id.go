package gateway

import (
	"crypto/rand"
	"encoding/base32"
)

// idEncoding writes an id prefix in lower case without look-alike letters.
var idEncoding = base32.NewEncoding("0123456789abcdefghjkmnpqrstvwxyz").WithPadding(base32.NoPadding)

// newIDPrefix returns a process's session id prefix, to which the process
// adds its own counter: eight random characters (40 bits) and a dash. A
// game that keys anything by session id (a reconnect table, its logs) then
// never takes a new player for one from before a gateway restart or from
// another gateway: a thousand gateway processes share a prefix with odds
// of about one in two million, and `gateway sessions` stays readable.
func newIDPrefix() string {
	var b [5]byte
	rand.Read(b[:])
	return idEncoding.EncodeToString(b[:]) + "-"
}
