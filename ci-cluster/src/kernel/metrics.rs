//! `/metrics`: runs by status, queue depth, job durations and webhook
//! refusals, in the OpenMetrics text format Prometheus scrapes.
//!
//! Run counts come from the store at scrape time, so they survive restarts
//! and agree with the API. Job durations and refusals are counted by this
//! process as they happen (a histogram cannot be rebuilt cheaply from the
//! store on every scrape); like every Prometheus counter they start again
//! from zero after a restart, which `rate()` and `increase()` handle.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::store::RunStatus;

/// The content type of the OpenMetrics text format (Prometheus negotiates it).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Upper bounds of the job duration buckets, in seconds: CI jobs take from
/// a fraction of a second (lint) to an hour (a full build and test).
const DURATION_BUCKETS: [f64; 14] = [
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
];

/// Refusal reasons exported as 0 before the first one happens, so that
/// alerts on them see a series from the start.
const KNOWN_REFUSALS: [&str; 5] = [
    "unauthorized",
    "malformed",
    "too_large",
    "unknown_project",
    "not_configured",
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabel {
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

/// The server's metrics and the registry that exports them.
pub struct Metrics {
    registry: Registry,
    runs: Family<StatusLabel, Gauge>,
    queue_depth: Gauge,
    job_duration: Histogram,
    intake_refusals: Family<ReasonLabel, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let runs = Family::<StatusLabel, Gauge>::default();
        registry.register(
            "airlock_runs",
            "Runs in the store by status (read from the store at scrape time)",
            runs.clone(),
        );
        let queue_depth = Gauge::default();
        registry.register(
            "airlock_queue_depth",
            "Runs queued and waiting for a runner (read from the store at scrape time)",
            queue_depth.clone(),
        );
        let job_duration = Histogram::new(DURATION_BUCKETS);
        registry.register(
            "airlock_job_duration_seconds",
            "Wall time of the last attempt of each job that ended in a run executed by this process since it started",
            job_duration.clone(),
        );
        let intake_refusals = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "airlock_intake_refusals",
            "Webhook deliveries refused since this process started, by reason (unauthorized: bad signature or token)",
            intake_refusals.clone(),
        );
        for reason in KNOWN_REFUSALS {
            let _ = intake_refusals.get_or_create(&ReasonLabel { reason });
        }
        Metrics {
            registry,
            runs,
            queue_depth,
            job_duration,
            intake_refusals,
        }
    }
}

impl Metrics {
    /// Counts a refused webhook delivery.
    pub fn intake_refused(&self, reason: &'static str) {
        self.intake_refusals
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    /// Records the duration of a job that ended.
    pub fn job_finished(&self, started_ms: u64, finished_ms: u64) {
        self.job_duration
            .observe(finished_ms.saturating_sub(started_ms) as f64 / 1000.0);
    }

    /// Sets the gauges read from the store.
    pub fn set_counts(&self, counts: &crate::store::Counts) {
        for status in RunStatus::ALL {
            let n = counts
                .runs_by_status
                .get(status.as_str())
                .copied()
                .unwrap_or(0);
            self.runs
                .get_or_create(&StatusLabel {
                    status: status.as_str(),
                })
                .set(gauge_value(n));
        }
        self.queue_depth.set(gauge_value(counts.queued));
    }

    /// The text exposition.
    pub fn render(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::new();
        encode(&mut text, &self.registry)?;
        Ok(text)
    }
}

fn gauge_value(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
