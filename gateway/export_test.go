package gateway

// FactsInterval is factsInterval, for the tests of package gateway_test.
const FactsInterval = factsInterval
