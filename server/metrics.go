package server

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"google.golang.org/grpc"
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
	overloaded    prometheus.Counter
	watchers      prometheus.Gauge
	siteLoads     *prometheus.CounterVec // by result
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
		overloaded: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herd_overloaded_total", Help: "Calls answered RESOURCE_EXHAUSTED because the work queue was full.",
		}),
		watchers: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "herd_watch_streams", Help: "Open Watch streams.",
		}),
		siteLoads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herd_site_loads_total", Help: "Site versions loaded, by result.",
		}, []string{"result"}),
	}
	m.reg.MustRegister(m.checkins, m.compiles, m.compileErrors, m.compileTime, m.reports, m.rpcTime,
		m.denied, m.overloaded, m.watchers, m.siteLoads,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (s *Server) unaryMetrics(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	start := time.Now()
	resp, err := handler(ctx, req)
	s.metrics.rpcTime.WithLabelValues(info.FullMethod).Observe(time.Since(start).Seconds())
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
