//! Counters for `GET /metrics` (Prometheus text exposition format 0.0.4): envelopes
//! accepted and refused by code, a histogram of group-commit latency, the depth of the
//! commit queue, answers by status, and — read when scraped — the ledger's and the audit
//! log's sizes.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the commit-latency buckets, in seconds.
const BUCKETS: [f64; 12] = [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 5.0];

#[derive(Default)]
pub(crate) struct Metrics {
    envelopes_accepted: AtomicU64,
    envelopes_refused: Mutex<BTreeMap<&'static str, u64>>,
    responses: Mutex<BTreeMap<u16, u64>>,
    commit_buckets: [AtomicU64; BUCKETS.len()],
    commit_count: AtomicU64,
    commit_micros: AtomicU64,
    queue_depth: AtomicI64,
}

/// Sizes read from the aggregator when scraped.
pub(crate) struct Sizes {
    /// Receipts, withdrawals, partitions and records; `None` on a lazily loaded ledger
    /// (it would count the subjects it loaded only).
    pub(crate) ledger: Option<[u64; 4]>,
    /// How many subjects a lazily loaded ledger holds; `None` when it holds every fact.
    pub(crate) loaded_subjects: Option<u64>,
    pub(crate) log_events: u64,
}

impl Metrics {
    pub(crate) fn envelope_accepted(&self) {
        self.envelopes_accepted.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn envelope_refused(&self, code: &'static str) {
        if let Ok(mut m) = self.envelopes_refused.lock() {
            *m.entry(code).or_default() += 1;
        }
    }

    pub(crate) fn response(&self, status: u16) {
        if let Ok(mut m) = self.responses.lock() {
            *m.entry(status).or_default() += 1;
        }
    }

    pub(crate) fn commit(&self, took: Duration) {
        let secs = took.as_secs_f64();
        for (b, le) in self.commit_buckets.iter().zip(BUCKETS) {
            if secs <= le {
                b.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.commit_count.fetch_add(1, Ordering::Relaxed);
        self.commit_micros.fetch_add(u64::try_from(took.as_micros()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    pub(crate) fn queued(&self, n: i64) {
        self.queue_depth.fetch_add(n, Ordering::Relaxed);
    }

    /// The exposition text.
    pub(crate) fn render(&self, sizes: Option<&Sizes>) -> String {
        let mut s = String::new();
        let mut line = |t: &str| {
            s.push_str(t);
            s.push('\n');
        };
        line("# HELP confiance_envelopes_accepted_total Envelopes acknowledged after their commit.");
        line("# TYPE confiance_envelopes_accepted_total counter");
        line(&format!(
            "confiance_envelopes_accepted_total {}",
            self.envelopes_accepted.load(Ordering::Relaxed)
        ));
        line("# HELP confiance_envelopes_refused_total Envelopes refused, by error code.");
        line("# TYPE confiance_envelopes_refused_total counter");
        for (code, n) in self.envelopes_refused.lock().map(|m| m.clone()).unwrap_or_default() {
            line(&format!("confiance_envelopes_refused_total{{code=\"{code}\"}} {n}"));
        }
        line("# HELP confiance_http_responses_total Answers, by HTTP status.");
        line("# TYPE confiance_http_responses_total counter");
        for (status, n) in self.responses.lock().map(|m| m.clone()).unwrap_or_default() {
            line(&format!("confiance_http_responses_total{{status=\"{status}\"}} {n}"));
        }
        line("# HELP confiance_commit_seconds Time of one group commit (staging and the durable write).");
        line("# TYPE confiance_commit_seconds histogram");
        for (b, le) in self.commit_buckets.iter().zip(BUCKETS) {
            line(&format!("confiance_commit_seconds_bucket{{le=\"{le}\"}} {}", b.load(Ordering::Relaxed)));
        }
        let count = self.commit_count.load(Ordering::Relaxed);
        line(&format!("confiance_commit_seconds_bucket{{le=\"+Inf\"}} {count}"));
        #[allow(clippy::cast_precision_loss, reason = "a sum of microseconds shown in seconds")]
        let sum = self.commit_micros.load(Ordering::Relaxed) as f64 / 1e6;
        line(&format!("confiance_commit_seconds_sum {sum}"));
        line(&format!("confiance_commit_seconds_count {count}"));
        line("# HELP confiance_commit_queue_depth Envelopes waiting for the commit thread.");
        line("# TYPE confiance_commit_queue_depth gauge");
        line(&format!("confiance_commit_queue_depth {}", self.queue_depth.load(Ordering::Relaxed).max(0)));
        if let Some(z) = sizes {
            let mut gauge = |name: &str, help: &str, v: u64| {
                let _ = write!(s, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}\n");
            };
            if let Some([receipts, withdrawals, partitions, records]) = z.ledger {
                gauge("confiance_ledger_receipts", "Consent receipts in the ledger.", receipts);
                gauge("confiance_ledger_withdrawals", "Withdrawals in the ledger.", withdrawals);
                gauge("confiance_ledger_partitions", "Partitions noted in the ledger.", partitions);
                gauge("confiance_ledger_records", "Records noted in the ledger.", records);
            }
            if let Some(n) = z.loaded_subjects {
                gauge(
                    "confiance_ledger_loaded_subjects",
                    "Subjects a lazily loaded ledger holds in memory (PostgreSQL).",
                    n,
                );
            }
            gauge("confiance_audit_log_events", "Events in the audit log (its tree size).", z.log_events);
        }
        s
    }
}
