//! Prometheus metrics in the text exposition format: requests by route and status, a
//! latency histogram by route, rollouts halted by the guard, and devices by status
//! (counted when scraped).

use crate::state::AppState;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use np_common::docs::Status;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Instant;

/// Upper bounds (seconds) of the latency histogram's buckets.
const BUCKETS: [f64; 11] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

#[derive(Debug, Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// Request counters and latencies.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, String, u16), u64>>,
    latency: Mutex<BTreeMap<String, Histogram>>,
    halts: Mutex<BTreeMap<String, u64>>,
}

impl Metrics {
    /// Counts one answered request.
    pub fn record(&self, method: &str, route: &str, status: u16, seconds: f64) {
        if let Ok(mut r) = self.requests.lock() {
            *r.entry((method.to_owned(), route.to_owned(), status))
                .or_default() += 1;
        }
        if let Ok(mut l) = self.latency.lock() {
            let h = l.entry(route.to_owned()).or_default();
            for (i, b) in BUCKETS.iter().enumerate() {
                if seconds <= *b {
                    h.counts[i] += 1;
                }
            }
            h.count += 1;
            h.sum += seconds;
        }
    }

    /// Counts one halt of a release's rollout by the guard.
    pub fn record_halt(&self, version: &str) {
        if let Ok(mut h) = self.halts.lock() {
            *h.entry(version.to_owned()).or_default() += 1;
        }
    }

    /// The metrics as Prometheus text, with the device counts given.
    pub fn render(&self, devices: &[(Status, u64)]) -> String {
        let mut out = String::new();
        out.push_str(
            "# HELP np_http_requests_total HTTP requests answered, by route and status.\n",
        );
        out.push_str("# TYPE np_http_requests_total counter\n");
        if let Ok(r) = self.requests.lock() {
            for ((method, route, status), n) in r.iter() {
                let _ = writeln!(
                    out,
                    "np_http_requests_total{{method=\"{method}\",route=\"{}\",status=\"{status}\"}} {n}",
                    escape(route)
                );
            }
        }
        out.push_str("# HELP np_http_request_duration_seconds Time to answer HTTP requests.\n");
        out.push_str("# TYPE np_http_request_duration_seconds histogram\n");
        if let Ok(l) = self.latency.lock() {
            for (route, h) in l.iter() {
                let route = escape(route);
                for (i, b) in BUCKETS.iter().enumerate() {
                    let _ = writeln!(
                        out,
                        "np_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"{b}\"}} {}",
                        h.counts[i]
                    );
                }
                let _ = writeln!(
                    out,
                    "np_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {}",
                    h.count
                );
                let _ = writeln!(
                    out,
                    "np_http_request_duration_seconds_sum{{route=\"{route}\"}} {}",
                    h.sum
                );
                let _ = writeln!(
                    out,
                    "np_http_request_duration_seconds_count{{route=\"{route}\"}} {}",
                    h.count
                );
            }
        }
        out.push_str(
            "# HELP np_rollout_halts_total Rollouts the guard paused for failures, by release.\n",
        );
        out.push_str("# TYPE np_rollout_halts_total counter\n");
        if let Ok(h) = self.halts.lock() {
            for (version, n) in h.iter() {
                let _ = writeln!(
                    out,
                    "np_rollout_halts_total{{version=\"{}\"}} {n}",
                    escape(version)
                );
            }
        }
        out.push_str("# HELP np_devices Registered devices, by status.\n");
        out.push_str("# TYPE np_devices gauge\n");
        for (status, n) in devices {
            let _ = writeln!(out, "np_devices{{status=\"{status}\"}} {n}");
        }
        out
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Middleware: times every request and counts it under its route pattern (never the raw
/// path, so serials do not explode the label set).
pub async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().as_str().to_owned();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    let resp = next.run(req).await;
    state.metrics.record(
        &method,
        &route,
        resp.status().as_u16(),
        start.elapsed().as_secs_f64(),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histograms() {
        let m = Metrics::default();
        m.record("GET", "/healthz", 200, 0.003);
        m.record("GET", "/healthz", 200, 2.0);
        m.record_halt("5.3.0");
        m.record_halt("5.3.0");
        let text = m.render(&[(Status::Active, 2)]);
        assert!(text.contains(
            "np_http_requests_total{method=\"GET\",route=\"/healthz\",status=\"200\"} 2"
        ));
        assert!(text.contains(
            "np_http_request_duration_seconds_bucket{route=\"/healthz\",le=\"0.005\"} 1"
        ));
        assert!(text
            .contains("np_http_request_duration_seconds_bucket{route=\"/healthz\",le=\"+Inf\"} 2"));
        assert!(text.contains("np_devices{status=\"active\"} 2"));
        assert!(text.contains("np_rollout_halts_total{version=\"5.3.0\"} 2"));
    }
}
