//! Prometheus metrics (text exposition format, served at `/metrics`): per route and method,
//! request counts by status and a latency histogram; counters of commits, merges and
//! conflicts. Hand-written: a request costs a shared (read) lock of the route table and a
//! few relaxed atomics; it allocates nothing once its route was seen.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::{Mutex, RwLock};

/// Histogram bucket bounds in seconds.
const BUCKETS_S: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The methods counted apart; anything else is `OTHER` (a client cannot grow the metrics
/// with made-up methods).
const METHODS: [&str; 8] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "OTHER",
];
/// Statuses are counted in one slot each (HTTP's are three digits).
const STATUSES: usize = 1000;

#[derive(Debug)]
struct RouteStats {
    by_status: Box<[AtomicU64]>,
    buckets: [AtomicU64; BUCKETS_S.len()],
    count: AtomicU64,
    sum_ns: AtomicU64,
}

impl RouteStats {
    fn new() -> RouteStats {
        RouteStats {
            by_status: (0..STATUSES).map(|_| AtomicU64::new(0)).collect(),
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            count: AtomicU64::new(0),
            sum_ns: AtomicU64::new(0),
        }
    }

    fn record(&self, status: u16, elapsed: Duration) {
        let slot = usize::from(status).min(STATUSES - 1);
        self.by_status[slot].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        let ns = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
        let s = elapsed.as_secs_f64();
        for (i, bound) in BUCKETS_S.iter().enumerate() {
            if s <= *bound {
                self.buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Per route, per method (`METHODS`' order).
type Routes = HashMap<String, [Option<Box<RouteStats>>; METHODS.len()]>;

#[derive(Debug, Default)]
pub struct Metrics {
    routes: RwLock<Routes>,
    commits: AtomicU64,
    merges: Mutex<BTreeMap<&'static str, u64>>,
    conflicts: AtomicU64,
    reports: Mutex<BTreeMap<String, u64>>,
    query_files_scanned: AtomicU64,
    query_files_total: AtomicU64,
}

/// Appends gauges (a backend's) to the exposition text; those named `..._total` are
/// counters.
pub fn render_gauges(out: &mut String, gauges: &[floe_commits::Gauge]) {
    for g in gauges {
        let _ = writeln!(out, "# HELP {} {}", g.name, g.help);
        // A name ending in `_total` counts something that only grows: a counter.
        let kind = match g.name.ends_with("_total") {
            true => "counter",
            false => "gauge",
        };
        let _ = writeln!(out, "# TYPE {} {kind}", g.name);
        let _ = writeln!(out, "{} {}", g.name, g.value);
    }
}

impl Metrics {
    pub fn observe(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        let m = METHODS[..METHODS.len() - 1]
            .iter()
            .position(|known| *known == method)
            .unwrap_or(METHODS.len() - 1);
        let seen = self.routes.read();
        if let Some(stats) = seen.get(route).and_then(|methods| methods[m].as_ref()) {
            stats.record(status, elapsed);
        } else {
            drop(seen);
            let mut routes = self.routes.write();
            let methods = routes.entry(route.to_owned()).or_default();
            methods[m]
                .get_or_insert_with(|| Box::new(RouteStats::new()))
                .record(status, elapsed);
        }
        if status == 409 {
            self.conflicts.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn commit(&self) {
        self.commits.fetch_add(1, Ordering::Relaxed);
    }

    /// An Iceberg metrics report (`scan-report`, `commit-report`, ...) accepted.
    pub fn report(&self, kind: &str) {
        // The report types of the Iceberg spec; anything else is counted as `other`.
        let kind = match kind {
            "scan-report" | "commit-report" => kind,
            _ => "other",
        };
        *self.reports.lock().entry(kind.to_owned()).or_default() += 1;
    }

    /// A query's scans: data files read after pruning, and in the snapshots scanned.
    pub fn query_scanned(&self, scanned: u64, total: u64) {
        self.query_files_scanned
            .fetch_add(scanned, Ordering::Relaxed);
        self.query_files_total.fetch_add(total, Ordering::Relaxed);
    }

    pub fn merge(&self, kind: &'static str) {
        *self.merges.lock().entry(kind).or_default() += 1;
    }

    /// The exposition text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str(
            "# HELP floe_http_requests_total HTTP requests by route, method and status.\n",
        );
        out.push_str("# TYPE floe_http_requests_total counter\n");
        let routes = self.routes.read();
        let mut sorted: Vec<(&str, &str, &RouteStats)> = routes
            .iter()
            .flat_map(|(route, methods)| {
                methods
                    .iter()
                    .zip(METHODS)
                    .filter_map(move |(s, method)| Some((route.as_str(), method, s.as_deref()?)))
            })
            .collect();
        sorted.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        for (route, method, stats) in &sorted {
            let counted = stats
                .by_status
                .iter()
                .enumerate()
                .map(|(status, n)| (status, n.load(Ordering::Relaxed)));
            for (status, n) in counted.filter(|(_, n)| *n > 0) {
                let _ = writeln!(
                    out,
                    "floe_http_requests_total{{route=\"{route}\",method=\"{method}\",status=\"{status}\"}} {n}"
                );
            }
        }
        out.push_str(
            "# HELP floe_http_request_duration_seconds HTTP request latency by route and method.\n",
        );
        out.push_str("# TYPE floe_http_request_duration_seconds histogram\n");
        for (route, method, stats) in &sorted {
            let labels = format!("route=\"{route}\",method=\"{method}\"");
            // Buckets first, then the count, which is at least the largest bucket: a
            // request recorded between the loads cannot make a bucket exceed `+Inf`.
            let buckets: Vec<u64> = stats
                .buckets
                .iter()
                .map(|n| n.load(Ordering::Relaxed))
                .collect();
            let count = stats
                .count
                .load(Ordering::Relaxed)
                .max(buckets.iter().copied().max().unwrap_or(0));
            for (bound, n) in BUCKETS_S.iter().zip(buckets) {
                let _ = writeln!(
                    out,
                    "floe_http_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {n}"
                );
            }
            let _ = writeln!(
                out,
                "floe_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {count}"
            );
            let sum_s = stats.sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
            let _ = writeln!(
                out,
                "floe_http_request_duration_seconds_sum{{{labels}}} {sum_s}"
            );
            let _ = writeln!(
                out,
                "floe_http_request_duration_seconds_count{{{labels}}} {count}"
            );
        }
        drop(sorted);
        drop(routes);
        out.push_str("# HELP floe_commits_total Commits written through the API.\n");
        out.push_str("# TYPE floe_commits_total counter\n");
        let _ = writeln!(
            out,
            "floe_commits_total {}",
            self.commits.load(Ordering::Relaxed)
        );
        out.push_str(
            "# HELP floe_query_files_scanned_total Data files queries read, after pruning.\n",
        );
        out.push_str("# TYPE floe_query_files_scanned_total counter\n");
        let _ = writeln!(
            out,
            "floe_query_files_scanned_total {}",
            self.query_files_scanned.load(Ordering::Relaxed)
        );
        out.push_str(
            "# HELP floe_query_files_total Data files in the snapshots queries scanned.\n",
        );
        out.push_str("# TYPE floe_query_files_total counter\n");
        let _ = writeln!(
            out,
            "floe_query_files_total {}",
            self.query_files_total.load(Ordering::Relaxed)
        );
        out.push_str("# HELP floe_merges_total Merges applied, by outcome.\n");
        out.push_str("# TYPE floe_merges_total counter\n");
        for (kind, n) in self.merges.lock().iter() {
            let _ = writeln!(out, "floe_merges_total{{kind=\"{kind}\"}} {n}");
        }
        out.push_str("# HELP floe_iceberg_metrics_reports_total Iceberg metrics reports accepted, by type.\n");
        out.push_str("# TYPE floe_iceberg_metrics_reports_total counter\n");
        for (kind, n) in self.reports.lock().iter() {
            let _ = writeln!(
                out,
                "floe_iceberg_metrics_reports_total{{type=\"{kind}\"}} {n}"
            );
        }
        out.push_str("# HELP floe_conflicts_total Requests answered 409.\n");
        out.push_str("# TYPE floe_conflicts_total counter\n");
        let _ = writeln!(
            out,
            "floe_conflicts_total {}",
            self.conflicts.load(Ordering::Relaxed)
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_come_from_a_fixed_set() {
        let m = Metrics::default();
        m.observe("BREW", "unmatched", 405, Duration::from_millis(1));
        m.observe("GET", "/health", 200, Duration::from_millis(1));
        m.report("made-up-kind-of-report");
        m.report("scan-report");
        let text = m.render();
        assert!(text.contains("method=\"OTHER\""), "{text}");
        assert!(text.contains("method=\"GET\""), "{text}");
        assert!(
            !text.contains("BREW") && !text.contains("made-up"),
            "{text}"
        );
        assert!(text.contains("type=\"other\"} 1"), "{text}");
        assert!(text.contains("type=\"scan-report\"} 1"), "{text}");
    }
}
