package gateway

import (
	"github.com/prometheus/client_golang/prometheus"

	"holdfast/gateway/telnet"
)

// Why a session ended: the label of the disconnects metric and the reason
// logged.
const (
	endPlayerClosed = "player_closed"  // the client closed the connection
	endPlayerFailed = "player_failed"  // reading from the player failed
	endWriteFailed  = "write_failed"   // writing to the player failed or timed out
	endSlowPlayer   = "slow_player"    // the player's output queue stayed full
	endIdle         = "idle"           // nothing typed for IdleTimeout
	endApplication  = "application"    // the backend ended the session (quit)
	endShutdown     = "shutdown"       // the gateway is shutting down
	endClosed       = "gateway_closed" // the gateway closed at once
	endTaken        = "taken"          // the player came back through another gateway
)

// adoption lists the telnet options whose use the metrics count.
var adoption = []struct {
	name string
	opt  byte
}{
	{"ttype", telnet.OptTTYPE},
	{"naws", telnet.OptNAWS},
	{"new_environ", telnet.OptNewEnviron},
	{"charset", telnet.OptCharset},
	{"eor", telnet.OptEOR},
	{"gmcp", telnet.OptGMCP},
	{"mssp", telnet.OptMSSP},
	{"mccp2", telnet.OptMCCP2},
}

// metrics are the gateway's counters; the gauges are read from the
// sessions when scraped (see Collect).
type metrics struct {
	connects      prometheus.Counter
	refused       *prometheus.CounterVec
	disconnects   *prometheus.CounterVec
	links         prometheus.Counter
	resumes       prometheus.Counter
	stowed        prometheus.Counter
	resumeSeconds prometheus.Histogram
	bytesIn       prometheus.Counter
	bytesOut      prometheus.Counter

	sessions  *prometheus.Desc
	streams   *prometheus.Desc
	heldInput *prometheus.Desc
	backendUp *prometheus.Desc
	options   *prometheus.Desc
	mtts      *prometheus.Desc
}

func newMetrics() *metrics {
	return &metrics{
		connects: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "holdfast_connections_total",
			Help: "Player connections that became sessions.",
		}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "holdfast_refused_total",
			Help: "Player connections refused by a limit, by limit.",
		}, []string{"reason"}),
		disconnects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "holdfast_disconnects_total",
			Help: "Sessions ended, by reason.",
		}, []string{"reason"}),
		links: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "holdfast_backend_links_total",
			Help: "Backend links established.",
		}),
		resumes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "holdfast_resumes_total",
			Help: "Sessions resumed on a new backend.",
		}),
		stowed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "holdfast_stowed_total",
			Help: "Sessions idle for -hold-idle that the backend took to hold without a stream.",
		}),
		resumeSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "holdfast_resume_seconds",
			Help:    "How long a session waited between losing its backend and being resumed on the next.",
			Buckets: []float64{.05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300},
		}),
		bytesIn: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "holdfast_player_bytes_in_total",
			Help: "Bytes read from players' sockets.",
		}),
		bytesOut: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "holdfast_player_bytes_out_total",
			Help: "Bytes written to players' sockets.",
		}),
		sessions: prometheus.NewDesc("holdfast_sessions",
			"Sessions held, by whether a backend is attached or they wait for one.", []string{"state"}, nil),
		streams: prometheus.NewDesc("holdfast_streams",
			"Sessions attached to a backend, by their stream: read, parked, or none while the backend holds the session (idle, or after an upgrade).",
			[]string{"state"}, nil),
		heldInput: prometheus.NewDesc("holdfast_held_input_bytes",
			"Player input held that no backend has acknowledged yet.", nil, nil),
		backendUp: prometheus.NewDesc("holdfast_backend_up",
			"1 while a backend link is established.", nil, nil),
		options: prometheus.NewDesc("holdfast_telnet_option_sessions",
			"Sessions with a telnet option enabled, by option.", []string{"option"}, nil),
		mtts: prometheus.NewDesc("holdfast_mtts_sessions",
			"Sessions whose client reported MTTS capabilities.", nil, nil),
	}
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.connects, m.refused, m.disconnects, m.links, m.resumes, m.stowed,
		m.resumeSeconds, m.bytesIn, m.bytesOut}
}

// collector reads the gauges from a server's sessions at scrape time, so
// that nothing on the sessions' paths keeps them.
type collector struct{ s *Server }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	m := c.s.metrics
	ch <- m.sessions
	ch <- m.streams
	ch <- m.heldInput
	ch <- m.backendUp
	ch <- m.options
	ch <- m.mtts
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	m := c.s.metrics
	var attached, waiting, held, withMTTS int
	var streams [3]int // read, parked, held
	withOption := make([]int, len(adoption))
	for _, ss := range c.s.list() {
		ss.mu.Lock()
		switch ss.cond.stream {
		case streamAway:
			waiting++
		case streamParked:
			streams[1]++
		case streamHeld:
			streams[2]++
		default:
			streams[0]++
		}
		if ss.cond.stream != streamAway {
			attached++
		}
		held += len(ss.In)
		if ss.Facts.MTTS != 0 {
			withMTTS++
		}
		ss.mu.Unlock()
		ss.tmu.Lock()
		for i, a := range adoption {
			if ss.engine.On(a.opt) {
				withOption[i]++
			}
		}
		ss.tmu.Unlock()
	}
	up := 0.0
	if c.s.current() != nil {
		up = 1
	}
	ch <- prometheus.MustNewConstMetric(m.sessions, prometheus.GaugeValue, float64(attached), "attached")
	ch <- prometheus.MustNewConstMetric(m.sessions, prometheus.GaugeValue, float64(waiting), "waiting")
	for i, state := range []string{"read", "parked", "held"} {
		ch <- prometheus.MustNewConstMetric(m.streams, prometheus.GaugeValue, float64(streams[i]), state)
	}
	ch <- prometheus.MustNewConstMetric(m.heldInput, prometheus.GaugeValue, float64(held))
	ch <- prometheus.MustNewConstMetric(m.backendUp, prometheus.GaugeValue, up)
	for i, a := range adoption {
		ch <- prometheus.MustNewConstMetric(m.options, prometheus.GaugeValue, float64(withOption[i]), a.name)
	}
	ch <- prometheus.MustNewConstMetric(m.mtts, prometheus.GaugeValue, float64(withMTTS))
}
