//! Prometheus text exposition, written by hand: a few counters (events by outcome, overall and
//! per meter), two histograms, one gauge.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::RwLock;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

pub(crate) struct Histogram {
    bounds: &'static [f64],
    /// One count per bound, then +Inf (not cumulative; summed when rendered).
    counts: Vec<AtomicU64>,
    /// The sum, in millionths (atomics have no f64 add).
    sum_micro: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_micro: AtomicU64::new(0),
        }
    }

    pub(crate) fn observe(&self, value: f64) {
        let i = self
            .bounds
            .iter()
            .position(|b| value <= *b)
            .unwrap_or(self.bounds.len());
        self.counts[i].fetch_add(1, Relaxed);
        self.sum_micro.fetch_add((value * 1e6) as u64, Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (i, count) in self.counts.iter().enumerate() {
            cumulative += count.load(Relaxed);
            let le = self
                .bounds
                .get(i)
                .map_or_else(|| "+Inf".to_string(), |b| b.to_string());
            let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
        }
        let sum = self.sum_micro.load(Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {cumulative}");
    }
}

pub(crate) struct Metrics {
    /// Every request passes here: a shared lock and an atomic add, the exclusive lock only for
    /// a route and status not seen before (a mutex made the two runtime threads queue).
    requests: RwLock<BTreeMap<(&'static str, u16), AtomicU64>>,
    pub recorded: AtomicU64,
    pub refused: AtomicU64,
    pub duplicate: AtomicU64,
    pub invalid: AtomicU64,
    pub batch_size: Histogram,
    pub commit_seconds: Histogram,
    pub queue_depth: AtomicI64,
    /// Events by meter (plans.toml's, in order) and outcome. Only meters of plans.toml get a
    /// series: an event naming an unknown one counts as invalid above and nowhere here, so a
    /// client cannot make up label values.
    meters: Vec<(String, Outcomes)>,
}

/// One counter per outcome, in the order of [`Outcome`].
type Outcomes = [AtomicU64; 4];

/// What became of one event.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Outcome {
    Recorded = 0,
    Refused = 1,
    Duplicate = 2,
    Invalid = 3,
}

const OUTCOMES: [&str; 4] = ["recorded", "refused", "duplicate", "invalid"];

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            requests: RwLock::default(),
            recorded: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            duplicate: AtomicU64::new(0),
            invalid: AtomicU64::new(0),
            batch_size: Histogram::new(&[1.0, 10.0, 100.0, 1000.0, 5000.0, 20000.0]),
            commit_seconds: Histogram::new(&[
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
            ]),
            queue_depth: AtomicI64::new(0),
            meters: Vec::new(),
        }
    }
}

impl Metrics {
    /// The metrics of a server whose plans.toml has these meters.
    pub(crate) fn with_meters<'a>(meters: impl IntoIterator<Item = &'a str>) -> Metrics {
        Metrics {
            meters: meters
                .into_iter()
                .map(|id| (id.to_string(), Default::default()))
                .collect(),
            ..Metrics::default()
        }
    }

    /// Count one event's outcome, overall and on its meter when that is one of plans.toml.
    pub(crate) fn event(&self, meter: &str, outcome: Outcome) {
        let total = match outcome {
            Outcome::Recorded => &self.recorded,
            Outcome::Refused => &self.refused,
            Outcome::Duplicate => &self.duplicate,
            Outcome::Invalid => &self.invalid,
        };
        total.fetch_add(1, Relaxed);
        if let Some((_, counts)) = self.meters.iter().find(|(id, _)| id == meter) {
            counts[outcome as usize].fetch_add(1, Relaxed);
        }
    }

    pub(crate) fn request(&self, route: &'static str, status: u16) {
        let key = (route, status);
        if let Some(n) = self
            .requests
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            n.fetch_add(1, Relaxed);
            return;
        }
        self.requests
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key)
            .or_default()
            .fetch_add(1, Relaxed);
    }

    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("# HELP meterline_http_requests_total HTTP requests by route and status.\n");
        out.push_str("# TYPE meterline_http_requests_total counter\n");
        for ((route, status), n) in self
            .requests
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "meterline_http_requests_total{{route=\"{route}\",status=\"{status}\"}} {}",
                n.load(Relaxed)
            );
        }
        out.push_str("# HELP meterline_events_total Events by outcome.\n");
        out.push_str("# TYPE meterline_events_total counter\n");
        for (outcome, n) in OUTCOMES.iter().zip([
            &self.recorded,
            &self.refused,
            &self.duplicate,
            &self.invalid,
        ]) {
            let _ = writeln!(
                out,
                "meterline_events_total{{outcome=\"{outcome}\"}} {}",
                n.load(Relaxed)
            );
        }
        if !self.meters.is_empty() {
            out.push_str("# HELP meterline_meter_events_total Events by meter and outcome.\n");
            out.push_str("# TYPE meterline_meter_events_total counter\n");
            for (meter, counts) in &self.meters {
                for (outcome, n) in OUTCOMES.iter().zip(counts) {
                    let _ = writeln!(
                        out,
                        "meterline_meter_events_total{{meter=\"{meter}\",outcome=\"{outcome}\"}} {}",
                        n.load(Relaxed)
                    );
                }
            }
        }
        self.batch_size.render(
            &mut out,
            "meterline_commit_batch_events",
            "Events per group commit.",
        );
        self.commit_seconds.render(
            &mut out,
            "meterline_commit_seconds",
            "Time to record and commit one group.",
        );
        let _ = writeln!(
            out,
            "# HELP meterline_write_queue_depth Requests waiting for the writer.\n\
             # TYPE meterline_write_queue_depth gauge\nmeterline_write_queue_depth {}",
            self.queue_depth.load(Relaxed).max(0)
        );
        out
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn histograms_render_cumulative_buckets() {
        let m = super::Metrics::default();
        m.batch_size.observe(1.0);
        m.batch_size.observe(50.0);
        m.batch_size.observe(1e6);
        m.request("/v1/events", 200);
        m.request("/v1/events", 200);
        m.request("/v1/events", 402);
        let text = m.render();
        assert!(text.contains("meterline_commit_batch_events_bucket{le=\"1\"} 1\n"));
        assert!(text.contains("meterline_commit_batch_events_bucket{le=\"100\"} 2\n"));
        assert!(text.contains("meterline_commit_batch_events_bucket{le=\"+Inf\"} 3\n"));
        assert!(text.contains("meterline_commit_batch_events_count 3\n"));
        assert!(
            text.contains("meterline_http_requests_total{route=\"/v1/events\",status=\"200\"} 2\n")
        );
        assert!(
            text.contains("meterline_http_requests_total{route=\"/v1/events\",status=\"402\"} 1\n")
        );
    }

    #[test]
    fn events_count_overall_and_on_known_meters_only() {
        use super::Outcome;
        let m = super::Metrics::with_meters(["requests", "tokens"]);
        m.event("requests", Outcome::Recorded);
        m.event("requests", Outcome::Recorded);
        m.event("tokens", Outcome::Refused);
        m.event("made-up", Outcome::Invalid);
        let text = m.render();
        for line in [
            "meterline_events_total{outcome=\"recorded\"} 2\n",
            "meterline_events_total{outcome=\"refused\"} 1\n",
            "meterline_events_total{outcome=\"invalid\"} 1\n",
            "meterline_meter_events_total{meter=\"requests\",outcome=\"recorded\"} 2\n",
            "meterline_meter_events_total{meter=\"requests\",outcome=\"refused\"} 0\n",
            "meterline_meter_events_total{meter=\"tokens\",outcome=\"refused\"} 1\n",
            "meterline_meter_events_total{meter=\"tokens\",outcome=\"invalid\"} 0\n",
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
        assert!(!text.contains("made-up"), "{text}");
    }
}
