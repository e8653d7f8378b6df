package server

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"google.golang.org/grpc"

	"github.com/herdcm/herd/api/herdv1"
)

// metrics are the server's Prometheus metrics. They count and time; no
// fact value, catalog content or secret is ever a label.
type metrics struct {
	reg           *prometheus.Registry
	checkins      *prometheus.CounterVec // by result
	compiles      prometheus.Counter
	compileErrors prometheus.Counter
	compileTime   prometheus.Histogram
	reports       *prometheus.CounterVec // by result: stored, duplicate
	rpcTime       *prometheus.HistogramVec
	denied        *prometheus.CounterVec // by method
	overloaded    *prometheus.CounterVec // by reason: server (queue full), node (its share taken)
	quotaRefused  *prometheus.CounterVec // by kind: reports, facts
	watchers      prometheus.Gauge
	siteLoads     *prometheus.CounterVec // by result
	siteFailing   prometheus.Gauge       // 1 while the newest version fails to load
	siteServed    *prometheus.GaugeVec   // by version: 1 for the served one
	// environments is 1 for each environment's served version, by
	// environment and version.
	environments *prometheus.GaugeVec
	// envFailing is 1 for each environment whose newest commit does not
	// load (its previous version still served).
	envFailing   *prometheus.GaugeVec
	siteLoadedAt prometheus.Gauge
	refusedConns *prometheus.CounterVec // by reason

	// The series every call touches, looked up once here rather than
	// by label on every call (a hash of the labels and a lock each).
	rpcTimeOf  map[string]prometheus.Observer // by full method, every row of methodRoles
	checkinsOf map[herdv1.CheckinResponse_Status]prometheus.Counter
	reportsOf  [2]prometheus.Counter // stored, duplicate
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		checkins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herd_checkins_total", Help: "Node check-ins, by result.",
		}, []string{"result"}),
		compiles: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herd_compiles_total", Help: "Catalogs compiled.",
		}),
		compileErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herd_compile_errors_total", Help: "Compiles that failed (the node keeps its last good catalog).",
		}),
		compileTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "herd_compile_seconds", Help: "Time to compile, encode, digest and sign one catalog.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 14),
		}),
		reports: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herd_reports_total", Help: "Reports received, by result.",
		}, []string{"result"}),
		rpcTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "herd_rpc_seconds", Help: "Unary RPC handling time, by method.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}, []string{"method"}),
		denied: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herd_rpc_denied_total", Help: "Calls refused by authorization, by method.",
		}, []string{"method"}),
		overloaded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herd_overloaded_total", Help: "Calls answered RESOURCE_EXHAUSTED because the work queue was full (server) or the node had its share of it (node).",
		}, []string{"reason"}),
		quotaRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herd_quota_refused_total", Help: "Reports and facts changes refused because the node sent more bytes this hour than its quota, by kind.",
		}, []string{"kind"}),
		watchers: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "herd_watch_streams", Help: "Open Watch streams.",
		}),
		siteLoads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herd_site_loads_total", Help: "Site versions loaded, by result.",
		}, []string{"result"}),
		siteFailing: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "herd_site_load_failing", Help: "1 while the site's newest version fails to load and the previous one is still served (herd status shows why).",
		}),
		siteServed: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "herd_site_served_version", Help: "The site version being served: 1, labelled with its version.",
		}, []string{"version"}),
		siteLoadedAt: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "herd_site_loaded_timestamp_seconds", Help: "When the served site version was loaded, in unix seconds.",
		}),
	}
	m.environments = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "herd_environment_served_version", Help: "Each environment's served site version: 1, labelled with the environment and its version.",
	}, []string{"environment", "version"})
	m.envFailing = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "herd_environment_load_failing", Help: "1 while an environment's newest commit does not load and its previous version is still served (herd status shows why).",
	}, []string{"environment"})
	m.refusedConns = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "herd_connections_refused_total", Help: "gRPC connections closed at once, by reason: max-connections, max-anonymous.",
	}, []string{"reason"})
	m.reg.MustRegister(m.refusedConns, m.checkins, m.compiles, m.compileErrors, m.compileTime, m.reports, m.rpcTime,
		m.denied, m.overloaded, m.quotaRefused, m.watchers, m.siteLoads, m.siteFailing, m.siteServed, m.siteLoadedAt, m.environments, m.envFailing,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.rpcTimeOf = make(map[string]prometheus.Observer, len(methodRoles))
	for method := range methodRoles {
		m.rpcTimeOf[method] = m.rpcTime.WithLabelValues(method)
	}
	m.checkinsOf = map[herdv1.CheckinResponse_Status]prometheus.Counter{}
	for v := range herdv1.CheckinResponse_Status_name {
		st := herdv1.CheckinResponse_Status(v)
		m.checkinsOf[st] = m.checkins.WithLabelValues(st.String())
	}
	m.reportsOf = [2]prometheus.Counter{m.reports.WithLabelValues("stored"), m.reports.WithLabelValues("duplicate")}
	return m
}

// checkin counts a check-in answered with st.
func (m *metrics) checkin(st herdv1.CheckinResponse_Status) {
	if c, ok := m.checkinsOf[st]; ok {
		c.Inc()
		return
	}
	m.checkins.WithLabelValues(st.String()).Inc()
}

// setServed records the version being served; the previous version's
// series goes, so that the gauge has one series.
func (m *metrics) setServed(version string, at time.Time) {
	m.siteServed.Reset()
	m.siteServed.WithLabelValues(version).Set(1)
	m.siteLoadedAt.Set(float64(at.Unix()))
}

func (s *Server) unaryMetrics(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	received(ctx)
	start := time.Now()
	resp, err := handler(ctx, req)
	o, ok := s.metrics.rpcTimeOf[info.FullMethod]
	if !ok {
		o = s.metrics.rpcTime.WithLabelValues(info.FullMethod)
	}
	o.Observe(time.Since(start).Seconds())
	return resp, err
}

// metricsWatchers returns the number of open Watch streams.
func (s *Server) metricsWatchers() int {
	s.watch.mu.Lock()
	defer s.watch.mu.Unlock()
	n := 0
	for _, set := range s.watch.m {
		n += len(set)
	}
	return n
}
