package web

import "github.com/prometheus/client_golang/prometheus"

// metrics count what browsers' connections do that telnet's cannot:
// breaking, and coming back.
type metrics struct {
	lost    prometheus.Counter
	resumed prometheus.Counter
	refused *prometheus.CounterVec
	expired prometheus.Counter
}

func newMetrics() *metrics {
	return &metrics{
		lost: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "holdfast_web_connections_lost_total",
			Help: "Resumable browser connections that broke, their sessions held for the page.",
		}),
		resumed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "holdfast_web_resumes_total",
			Help: "Browser connections that came back to their session with a token.",
		}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "holdfast_web_resumes_refused_total",
			Help: "Attempts to resume refused: unknown_token (ended, expired, spent or guessed), rate_limited.",
		}, []string{"reason"}),
		expired: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "holdfast_web_grace_expired_total",
			Help: "Held browser sessions that ended because the page did not come back in the grace period.",
		}),
	}
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.lost, m.resumed, m.refused, m.expired}
}
