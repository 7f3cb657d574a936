//! The part of ingest that needs no mutable state — HPKE opening, bounded decoding and
//! every per-report check that reads only the catalogue and the configuration — so that
//! many envelopes can be prepared on worker threads and then applied in order.
//!
//! Each check's outcome is kept, not acted on: the caller applies the stateful checks
//! (envelope and report replays, the ledger's consent) in exactly the order
//! [`Aggregator::stage`](crate::service::Aggregator::stage) would, so the first failing
//! check, and therefore the error, is the same whether an envelope was prepared here or
//! not.

use std::collections::{BTreeMap, HashMap, HashSet};

use confiance::Timestamp;
use confiance::catalogue::{Catalogue, CatalogueDigest, MetricKind};
use confiance::envelope::{EnvelopeId, decode_body};
use confiance::ids::{MetricId, ReceiptId};
use confiance::ldp::Selection;
use confiance::report::{Payload, RecordValue, Report};
use confiance::retention::RetentionTag;
use confiance::token::{SpentToken, Token, TokenPeriod, TokenScope};

use super::{IngestError, ReportError};
use crate::estimate::Accumulator;
use crate::issuer::{TokenRefusal, TokenVerifier};
use crate::keys::KeyStore;
use crate::service::AggregatorConfig;
use crate::store::PartitionKey;

const DAY: u64 = 86_400;

/// What the stateless checks need, borrowed from the aggregator (all `Sync`).
pub(crate) struct Preparer<'a> {
    pub(crate) keys: &'a KeyStore,
    pub(crate) catalogue: &'a Catalogue,
    pub(crate) digest: CatalogueDigest,
    pub(crate) config: &'a AggregatorConfig,
    pub(crate) mechanisms: &'a BTreeMap<MetricId, Selection>,
    /// (metric, tag) pairs known to pass [`RetentionTag::check`].
    pub(crate) checked_tags: &'a TagCache,
    /// When set, every statistic needs a token for its scope.
    pub(crate) tokens: Option<&'a TokenVerifier>,
}

/// (metric, tag) pairs that passed [`RetentionTag::check`], grouped by metric so that a
/// lookup borrows the report's metric and tag (a pair as the key would be cloned, strings
/// and sets, for every report). At most `max` pairs: inserting into a full cache empties
/// it first.
#[derive(Debug)]
pub(crate) struct TagCache {
    by_metric: HashMap<MetricId, HashSet<RetentionTag>>,
    len: usize,
    max: usize,
}

impl TagCache {
    pub(crate) fn new(max: usize) -> Self {
        Self { by_metric: HashMap::new(), len: 0, max }
    }

    pub(crate) fn contains(&self, metric: &MetricId, tag: &RetentionTag) -> bool {
        self.by_metric.get(metric).is_some_and(|tags| tags.contains(tag))
    }

    pub(crate) fn insert(&mut self, metric: MetricId, tag: RetentionTag) {
        if self.len >= self.max {
            self.by_metric.clear();
            self.len = 0;
        }
        if self.by_metric.entry(metric).or_default().insert(tag) {
            self.len += 1;
        }
    }

    #[cfg(test)]
    pub(crate) const fn len(&self) -> usize {
        self.len
    }
}

/// The ids under which spent tokens are remembered, with until when.
pub(crate) type SpentIds = Vec<([u8; 16], Timestamp)>;

/// An opened envelope whose reports went through the stateless checks.
pub(crate) struct Prepared {
    pub(crate) envelope: EnvelopeId,
    /// The batch, or why it did not decode or was empty (reported after the envelope
    /// replay check, as `stage` does).
    pub(crate) reports: Result<Vec<Checked>, IngestError>,
    /// The tokens' stateless verdict (scope, period, authenticator): the ids to check
    /// against spent tokens, or why they were refused. Empty when tokens are not checked.
    /// Final once [`verify_tokens`] has run.
    pub(crate) tokens: Result<SpentIds, TokenRefusal>,
    /// While `tokens` is `Ok`: the envelope's tokens in order, each with its scope if it
    /// passed the cheap checks (else why not), awaiting the cryptographic check.
    unverified: Vec<Result<(TokenScope, Token), TokenRefusal>>,
}

/// The cryptographic check of the tokens of many prepared envelopes as one window
/// ([`TokenVerifier::verify_prechecked`]: the `0xC0F2` tokens of a scope checked with one
/// equation), then each envelope's first refusal, in token order, as its verdict — the
/// same verdict each envelope would get alone.
pub(crate) fn verify_tokens(
    verifier: Option<&TokenVerifier>,
    prepared: &mut [Result<Prepared, IngestError>],
) {
    let Some(verifier) = verifier else { return };
    let window: Vec<Result<(&TokenScope, &Token), TokenRefusal>> = prepared
        .iter()
        .filter_map(|p| p.as_ref().ok().filter(|p| p.tokens.is_ok()))
        .flat_map(|p| p.unverified.iter().map(|u| u.as_ref().map(|(s, t)| (s, t)).map_err(|e| *e)))
        .collect();
    let mut verdicts = verifier.verify_prechecked(&window).into_iter();
    for p in prepared.iter_mut().filter_map(|p| p.as_mut().ok()) {
        if p.tokens.is_err() {
            continue;
        }
        let mut first = Ok(());
        for _ in 0..p.unverified.len() {
            let verdict = verdicts.next().unwrap_or(Err(TokenRefusal::Invalid));
            if first.is_ok() {
                first = verdict;
            }
        }
        p.unverified.clear();
        if let Err(e) = first {
            p.tokens = Err(e);
        }
    }
}

/// The 16-byte id a spent token is remembered under, next to report ids:
/// `SHA-256("confiance/spent-token/v1" ‖ nonce)[..16]`. Only the device knows a nonce
/// before it is spent, so nobody else can make a report id collide with it.
#[must_use]
pub(crate) fn spent_id(nonce: &[u8; 32]) -> [u8; 16] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(b"confiance/spent-token/v1");
    h.update(nonce);
    let d = h.finalize();
    let mut id = [0; 16];
    id.copy_from_slice(&d[..16]);
    id
}

/// Checks that `tokens` hold exactly one token per scope the statistics of `reports` are
/// in, and none for another scope, and runs each token's cheap checks; the cryptographic
/// check is [`verify_tokens`]'s.
fn token_verdict(
    verifier: &TokenVerifier,
    reports: &[Checked],
    tokens: &[SpentToken],
    now: Timestamp,
    unverified: &mut Vec<Result<(TokenScope, Token), TokenRefusal>>,
) -> Result<SpentIds, TokenRefusal> {
    let period_secs = verifier.period_secs();
    let mut needed = std::collections::BTreeSet::new();
    let mut uses = HashSet::new();
    for c in reports.iter().filter(|c| matches!(c.report.payload, Payload::Statistic(_))) {
        let scope = TokenScope {
            recipients: c.report.tag.audience().clone(),
            purpose: c.report.tag.purpose().clone(),
            period: TokenPeriod::at(c.report.time, period_secs),
        };
        // One token stands for at most one report per metric and bucket: this is what
        // bounds what a device can inject to its quota (docs/privacy.md).
        if !uses.insert((scope.clone(), c.report.metric.clone(), c.report.time)) {
            return Err(TokenRefusal::Overused);
        }
        needed.insert(scope);
    }
    let mut covered = std::collections::BTreeSet::new();
    for t in tokens {
        // A token for a scope no report is in, or a second one for a scope.
        if !needed.contains(&t.scope) || !covered.insert(&t.scope) {
            return Err(TokenRefusal::Scope);
        }
    }
    if covered.len() < needed.len() {
        return Err(TokenRefusal::Missing);
    }
    unverified.extend(
        tokens
            .iter()
            .map(|t| verifier.precheck_token(&t.scope, &t.token, now).map(|()| (t.scope.clone(), t.token))),
    );
    Ok(tokens
        .iter()
        .map(|t| (spent_id(&t.token.nonce), t.scope.period.end(period_secs).saturating_add_secs(period_secs)))
        .collect())
}

/// One report and the outcome of its stateless checks, split around the replay check.
pub(crate) struct Checked {
    pub(crate) report: Report,
    /// The metric is in the catalogue (checked before the replay check).
    pub(crate) known: Result<(), ReportError>,
    /// Tag, alignment, time window, track and payload (checked after it).
    pub(crate) verdict: Result<Kind, ReportError>,
    /// The (metric, tag) pair passed a check not found in the cache: remember it.
    pub(crate) new_tag: bool,
    /// Until when its id must be remembered.
    pub(crate) expires: Timestamp,
}

/// Where a report that passed the stateless checks goes.
pub(crate) enum Kind {
    /// Into this partition's accumulator.
    Statistic(PartitionKey),
    /// A record under this receipt: the ledger's checks remain.
    Record(ReceiptId),
}

fn record_value_fits(kind: &MetricKind, v: &RecordValue) -> bool {
    match (kind, v) {
        (MetricKind::Boolean, RecordValue::Bool(_)) => true,
        (MetricKind::Categorical { labels }, RecordValue::Category(i)) => (*i as usize) < labels.len(),
        (MetricKind::Numeric { min, max }, RecordValue::Numeric(x)) => (*min..=*max).contains(x),
        (MetricKind::Count { max }, RecordValue::Count(c)) => c <= max,
        _ => false,
    }
}

impl Preparer<'_> {
    /// Size check, HPKE open and decode, then the stateless checks of each report.
    ///
    /// # Errors
    /// [`IngestError::TooLarge`], [`IngestError::Open`] or [`IngestError::TimeBucket`]:
    /// the errors `stage` returns before it looks at any state.
    pub(crate) fn prepare(&self, frame: &[u8], now: Timestamp) -> Result<Prepared, IngestError> {
        let mut one = [self.prepare_unverified(frame, now)];
        verify_tokens(self.tokens, &mut one);
        let [one] = one;
        one
    }

    /// [`Self::prepare`] of many envelopes, their tokens checked as one window.
    pub(crate) fn prepare_many(&self, frames: &[(&[u8], Timestamp)]) -> Vec<Result<Prepared, IngestError>> {
        let mut all: Vec<_> = frames.iter().map(|(f, t)| self.prepare_unverified(f, *t)).collect();
        verify_tokens(self.tokens, &mut all);
        all
    }

    /// [`Self::prepare`] short of the tokens' cryptographic check.
    fn prepare_unverified(&self, frame: &[u8], now: Timestamp) -> Result<Prepared, IngestError> {
        if frame.len() > self.config.max_envelope_bytes {
            return Err(IngestError::TooLarge { len: frame.len() });
        }
        let opened = self.keys.open(frame, now, &self.digest).map_err(IngestError::Open)?;
        let day = opened.header.time_bucket;
        // The header is authenticated now: a device stamps the start of the UTC day of its
        // flush, so the bucket is aligned and has begun (allowing for the clock skew).
        if day.truncate(DAY) != day || day > now.saturating_add_secs(self.config.clock_skew_secs) {
            return Err(IngestError::TimeBucket(day));
        }
        let mut spent = Vec::new();
        let reports = decode_body::<Report>(&opened.plaintext, &self.config.batch_limits)
            .map_err(IngestError::Batch)
            .and_then(|(ts, rs)| if rs.is_empty() { Err(IngestError::Empty) } else { Ok((ts, rs)) })
            .map(|(ts, rs)| {
                spent = ts;
                rs.into_iter().map(|r| self.check(r, day, now)).collect::<Vec<_>>()
            });
        let mut unverified = Vec::new();
        let tokens = match (&reports, self.tokens) {
            (Ok(checked), Some(verifier)) => token_verdict(verifier, checked, &spent, now, &mut unverified),
            _ => Ok(Vec::new()),
        };
        Ok(Prepared { envelope: opened.envelope_id, reports, tokens, unverified })
    }

    fn check(&self, report: Report, day: Timestamp, now: Timestamp) -> Checked {
        let mut checked = Checked {
            known: Ok(()),
            verdict: Err(ReportError::WrongTrack),
            new_tag: false,
            expires: now,
            report,
        };
        let r = &checked.report;
        let Some(metric) = self.catalogue.metric(&r.metric) else {
            checked.known = Err(ReportError::UnknownMetric(r.metric.clone()));
            return checked;
        };
        let bucket = metric.bucket_secs();
        let bucket_end = r.time.saturating_add_secs(bucket);
        checked.expires = bucket_end
            .saturating_add_secs(self.config.max_report_age_secs)
            .saturating_add_secs(self.config.clock_skew_secs);
        let verdict = (|| {
            if !self.checked_tags.contains(&r.metric, &r.tag) {
                r.tag.check(self.catalogue, &r.metric).map_err(ReportError::Tag)?;
                checked.new_tag = true;
            }
            if r.time.truncate(bucket) != r.time {
                return Err(ReportError::Misaligned);
            }
            if r.time >= day.saturating_add_secs(DAY)
                || bucket_end.saturating_add_secs(self.config.max_report_age_secs) <= now
                || r.time > now.saturating_add_secs(self.config.clock_skew_secs)
            {
                return Err(ReportError::TimeOutsideWindow);
            }
            match (&r.payload, metric.is_anonymous()) {
                (Payload::Statistic(ldp), true) => {
                    let mech = self.mechanisms.get(&r.metric).ok_or(ReportError::WrongTrack)?;
                    let key = PartitionKey {
                        metric: r.metric.clone(),
                        bucket_start: r.time,
                        bucket_end,
                        audience: r.tag.audience().clone(),
                        hold: r.tag.hold().clone(),
                    };
                    // A partition past its hold deadline is never created again: a report
                    // arriving after its own hold ended would be kept past its retention.
                    if key.deadline() <= now {
                        return Err(ReportError::TimeOutsideWindow);
                    }
                    // The partition's mechanism: the report's bucket keys it, as on the device.
                    let mech = mech.for_period(r.metric.as_str(), r.time.as_secs());
                    Accumulator::check(&mech, ldp).map_err(ReportError::Ldp)?;
                    Ok(Kind::Statistic(key))
                }
                (Payload::Record { value, .. }, false) => {
                    if !record_value_fits(&metric.kind, value) {
                        return Err(ReportError::InvalidValue);
                    }
                    Ok(Kind::Record(*r.tag.receipt().ok_or(ReportError::WrongTrack)?))
                }
                _ => Err(ReportError::WrongTrack),
            }
        })();
        checked.verdict = verdict;
        checked
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(purpose: &str, hold: &str) -> RetentionTag {
        serde_json::from_value(serde_json::json!({
            "purpose": purpose, "audience": ["lab-eu"], "hold": hold, "catalogue_version": 1, "receipt": null
        }))
        .unwrap()
    }

    #[test]
    fn tag_cache_holds_pairs_and_empties_when_full() {
        let (a, b): (MetricId, MetricId) = ("a.x".parse().unwrap(), "b.x".parse().unwrap());
        let mut cache = TagCache::new(3);
        cache.insert(a.clone(), tag("research", "P90D"));
        assert!(cache.contains(&a, &tag("research", "P90D")));
        // Another metric, another tag of the same metric: not checked.
        assert!(!cache.contains(&b, &tag("research", "P90D")));
        assert!(!cache.contains(&a, &tag("research", "P30D")));
        // A pair inserted twice counts once.
        cache.insert(a.clone(), tag("research", "P90D"));
        cache.insert(a.clone(), tag("research", "P30D"));
        cache.insert(b.clone(), tag("research", "P90D"));
        assert_eq!(cache.len(), 3);
        assert!(cache.contains(&b, &tag("research", "P90D")) && cache.contains(&a, &tag("research", "P30D")));
        // Full: the next insert starts over.
        cache.insert(b.clone(), tag("billing", "P1D"));
        assert_eq!(cache.len(), 1);
        assert!(cache.contains(&b, &tag("billing", "P1D")));
        assert!(!cache.contains(&a, &tag("research", "P90D")));
    }
}
