//! The report gathered from a real aggregator shows the state at its instant: what was
//! held and overdue then, with any later purge beside it — never "none overdue" while the
//! table shows the state after a purge (issue #19).

use confiance::Timestamp;
use confiance::consent::{ConsentRequest, Scope};
use confiance::envelope::AeadId;
use confiance::hazmat::{SeedableRng as _, SeededRng};
use confiance::ids::MetricId;
use confiance::recorder::Value as DevValue;
use confiance_aggregator::keys::KeyStore;
use confiance_aggregator::report::{self, GatherOptions, ReportData, RetentionKind};
use confiance_aggregator::service::{Aggregator, AggregatorConfig};

#[path = "support/fixtures.rs"]
mod fixtures;
use fixtures::{catalogue, id, recorder};

const DAY: u64 = 86_400;
const T0: u64 = 1_800_000_000;

/// One device's anonymous thermostat mode and pseudonymous fault code, both held 90
/// days by its receipts, recorded at `T0` and sent two days later; then everything purged at `T0 + 500 days`.
fn purged_aggregator() -> (Aggregator, Timestamp) {
    let t0 = Timestamp::from_secs(T0);
    let mut rng = SeededRng::seed_from_u64(1);
    let mut keys = KeyStore::new(DAY);
    let config = keys
        .generate(AeadId::ChaCha20Poly1305, Timestamp::EPOCH, t0.saturating_add_secs(3_000 * DAY), &mut rng)
        .unwrap();
    let mut agg = Aggregator::in_memory(catalogue(), keys, AggregatorConfig::default()).unwrap();
    let mut dev = recorder(3, "calora", vec![config]);
    for (purpose, metric) in
        [("product-improvement", "thermostat.mode"), ("service", "thermostat.fault-code")]
    {
        let r = dev
            .give_consent(
                ConsentRequest::new(
                    id("calora"),
                    id(purpose),
                    Scope::metrics([id::<MetricId>(metric)]),
                    "P90D".parse().unwrap(),
                )
                .valid_from(t0),
                t0,
            )
            .unwrap();
        agg.receive_receipt(&r, t0).unwrap();
    }
    dev.record(&id("thermostat.mode"), &id("product-improvement"), DevValue::Category(2), t0).unwrap();
    dev.record_service(&id("thermostat.fault-code"), DevValue::Int(7), t0).unwrap();
    // The mode's daily bucket is sent once it has closed.
    let sent = t0.saturating_add_secs(2 * DAY);
    for f in dev.flush(sent) {
        let ack = agg.ingest(&f, sent).unwrap();
        assert!(ack.refused.is_empty(), "{:?}", ack.refused);
    }
    let held: Vec<_> = agg.partition_states().into_keys().collect();
    assert_eq!(held.len(), 1, "the mode's partition: {held:?}");
    let view = agg.ledger().recipient_view(&id("calora"), sent, None);
    assert!(view.metrics.iter().any(|m| !m.partitions.is_empty()), "{view:?}");
    let purge_at = t0.saturating_add_secs(500 * DAY);
    let purged = agg.purge(purge_at).unwrap();
    assert!(purged.partitions >= 1 && purged.records == 1, "{purged:?}");
    (agg, purge_at)
}

fn gather(agg: &Aggregator, at: Timestamp, generated_at: Timestamp) -> ReportData {
    ReportData::gather(agg, &GatherOptions { at, generated_at, ..GatherOptions::default() }).unwrap()
}

/// Fails before the fix: the purged partition was missing from the table (it listed the
/// store as it is now) and the overdue record's row said "Purged: no".
#[test]
fn overdue_at_the_instant_with_later_purges_beside_it() {
    let (agg, purge_at) = purged_aggregator();
    let at = Timestamp::from_secs(T0 + 400 * DAY); // past both deadlines, before the purge
    let d = gather(&agg, at, purge_at);
    let kinds = |k: RetentionKind| d.retention.iter().filter(move |r| r.kind == k);
    let parts: Vec<_> = kinds(RetentionKind::Partition).collect();
    let records: Vec<_> = kinds(RetentionKind::Records).collect();
    assert!(!parts.is_empty() && records.len() == 1, "{:#?}", d.retention);
    for r in parts.iter().chain(&records) {
        assert!(r.overdue_by_secs.is_some_and(|s| s > 0), "overdue at the instant: {r:?}");
        assert_eq!(r.purged_at, Some(purge_at), "the later purge beside it: {r:?}");
        assert_eq!(r.hold.as_deref(), Some("P90D"), "the hold as the receipt wrote it: {r:?}");
    }
    // Purged since: the partitions' counts went with them ("—", not "0 held"); the
    // record row is one record. Failed before: the partitions said 0.
    assert!(parts.iter().all(|r| r.records.is_none()), "{parts:#?}");
    assert_eq!(records[0].records, Some(1));
    let md = report::render_markdown(&d);
    let row = md.lines().find(|l| l.contains(&parts[0].item)).unwrap();
    assert!(row.contains("| partition | — |"), "{row}");
    let calora = d.summary.iter().find(|s| s.recipient == "calora").unwrap();
    assert!(calora.overdue >= 2, "{calora:?}");
    let html = report::render_html(&d);
    let n = d.retention.len();
    assert!(html.contains(&format!("{n} OVERDUE AT 2028-")), "{}", excerpt(&html));
    assert!(!html.contains("NONE OVERDUE"), "{}", excerpt(&html));
    assert!(
        html.contains(&format!("Purged after the instant: {n} of the {n} items listed, {n} of them overdue"))
    );
    assert!(report::render_markdown(&d).contains("Purged after the instant"));

    // Before the deadlines: held, not overdue, and the later purge still shown.
    let early = gather(&agg, Timestamp::from_secs(T0 + 10 * DAY), purge_at);
    assert!(!early.retention.is_empty(), "held at the instant though purged since");
    assert!(early.retention.iter().all(|r| r.overdue_by_secs.is_none() && r.purged_at == Some(purge_at)));
    let html = report::render_html(&early);
    assert!(
        html.contains("NONE OVERDUE AT 2027-") && html.contains("Purged after the instant"),
        "{}",
        excerpt(&html)
    );

    // Before anything was collected: nothing held, nothing listed.
    assert!(gather(&agg, Timestamp::from_secs(T0 - DAY), purge_at).retention.is_empty());
}

fn excerpt(html: &str) -> &str {
    let i = html.find("id=\"retention\"").unwrap_or(0);
    &html[i..html.len().min(i + 1_500)]
}
