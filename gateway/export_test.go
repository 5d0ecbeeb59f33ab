package gateway

// FactsInterval is factsInterval, for the tests of package gateway_test.
const FactsInterval = factsInterval

// The bounds on the GMCP handshake messages kept for each new backend.
const (
	MaxHello      = maxHello
	MaxHelloBytes = maxHelloBytes
)
