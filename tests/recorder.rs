//! The device recorder: every metric kind round-trips through a sealed envelope; bad
//! input, missing consent, budgets, full queues and failing storage are counted, never
//! raised; nothing unacknowledged is lost across a restart.

use confiance::Timestamp;
use confiance::catalogue::Catalogue;
use confiance::consent::{ConsentRequest, ConsentState, DeviceKey, Scope};
use confiance::envelope::{self, AeadId, BatchLimits, KeyConfig, KeyId, SecretKey};
use confiance::hazmat::{SeedableRng as _, SeededRng};
use confiance::ids::{MetricId, PurposeId, RecipientId};
use confiance::ldp::{LdpReport, Params, olh_hash, olh_pool_key};
use confiance::pseudonym::DeviceSecret;
use confiance::recorder::{Limits, MemoryStorage, Recorder, RecorderParts, Value};
use confiance::report::{Payload, RecordValue, Report};
use proptest::prelude::*;

const NOW: u64 = 1_800_000_000;

fn id<T: std::str::FromStr>(s: &str) -> T
where
    T::Err: std::fmt::Debug,
{
    s.parse().unwrap()
}

struct Device {
    recorder: Recorder<SeededRng, MemoryStorage>,
    server: SecretKey,
}

fn parts(seed: u64, controller: &str) -> (RecorderParts<SeededRng>, SecretKey) {
    let mut rng = SeededRng::seed_from_u64(seed);
    let server = SecretKey::derive(b"test aggregator key");
    let config = KeyConfig::new(
        KeyId(7),
        AeadId::ChaCha20Poly1305,
        server.public_key(),
        Timestamp::EPOCH,
        Timestamp::MAX,
    )
    .unwrap();
    let catalogue = Catalogue::from_toml_str(include_str!("../examples/catalogue.toml")).unwrap();
    let consent = ConsentState::new(DeviceKey::from_bytes(&[seed as u8; 32]));
    let pseudonyms = DeviceSecret::generate(&mut rng);
    (
        RecorderParts {
            catalogue,
            consent,
            pseudonyms,
            controller: id(controller),
            key_configs: vec![config],
            rng,
        },
        server,
    )
}

fn device(seed: u64, controller: &str, limits: Limits) -> Device {
    let (p, server) = parts(seed, controller);
    Device { recorder: Recorder::with_limits(p, MemoryStorage::default(), limits), server }
}

fn consent(d: &mut Device, recipient: &str, purpose: &str, metrics: &[&str]) {
    // A day before NOW: in force at the start of NOW's daily bucket too (a record is made
    // only if consent is in force at its stamp, docs/catalogue.md "Consent timing").
    let t = Timestamp::from_secs(NOW - 86_400);
    d.recorder
        .give_consent(
            ConsentRequest::new(
                id(recipient),
                id(purpose),
                Scope::metrics(metrics.iter().map(|m| id::<MetricId>(m))),
                "P90D".parse().unwrap(),
            ),
            t,
        )
        .unwrap();
}

/// No envelope carries both tracks: a record names its receipt (hence its subject), and
/// the statistics sealed beside it would be linked to that subject by whoever opens the
/// envelope (docs/privacy.md, "The two tracks"). Reports of both tracks recorded in
/// turn, with and without report tokens, in envelopes of up to 3 reports.
#[test]
fn an_envelope_never_mixes_statistics_and_records() {
    let now = Timestamp::from_secs(NOW);
    let mut d = device(3, "calora", Limits { max_reports_per_envelope: 3, ..Limits::default() });
    consent(&mut d, "calora", "product-improvement", &["thermostat.mode"]);
    consent(&mut d, "calora", "service", &["thermostat.fault-code"]);
    for i in 0..5 {
        let _ = d.recorder.record(
            &id("thermostat.mode"),
            &id("product-improvement"),
            Value::Category(i % 3),
            now,
        );
        let _ = d.recorder.record_service(&id("thermostat.fault-code"), Value::Int(i64::from(i)), now);
    }
    let frames = d.recorder.flush(now);
    let mut kinds = (0, 0);
    for f in &frames {
        let reports = open_all(&d.server, core::slice::from_ref(f));
        let records = reports.iter().filter(|r| matches!(r.payload, Payload::Record { .. })).count();
        assert!(records == 0 || records == reports.len(), "an envelope mixes the tracks: {reports:?}");
        kinds.0 += reports.len() - records;
        kinds.1 += records;
    }
    assert_eq!(kinds, (5, 5), "every report sent once");
    assert_eq!(frames.len(), 4, "two envelopes of each track (3 + 2 reports)");
}

fn open_all(server: &SecretKey, frames: &[Vec<u8>]) -> Vec<Report> {
    let digest = Catalogue::from_toml_str(include_str!("../examples/catalogue.toml")).unwrap().digest();
    let mut out = Vec::new();
    for f in frames {
        let (header, plain) = envelope::open(f, server, AeadId::ChaCha20Poly1305).unwrap();
        assert_eq!(header.catalogue_digest, digest);
        let (_, reports): (_, Vec<Report>) = envelope::decode_body(&plain, &BatchLimits::default()).unwrap();
        for r in &reports {
            assert!(
                r.time < header.time_bucket.saturating_add_secs(86_400),
                "no report is newer than its envelope's day"
            );
        }
        out.extend(reports);
    }
    out
}

#[test]
fn every_metric_kind_round_trips() {
    let mut d = device(1, "calora", Limits::default());
    consent(&mut d, "calora", "product-improvement", &["thermostat.mode", "thermostat.setpoint"]);
    consent(&mut d, "gridco", "grid-balancing", &["thermostat.setpoint", "thermostat.heating-minutes"]);
    consent(&mut d, "calora", "service", &["thermostat.fault-code"]);
    let now = Timestamp::from_secs(NOW);
    let r = &mut d.recorder;
    let _ = r.record(&id("thermostat.mode"), &id("product-improvement"), Value::Category(3), now); // categorical
    let _ = r.record(&id("thermostat.setpoint"), &id("grid-balancing"), Value::Int(215), now); // numeric
    let _ = r.record(&id("thermostat.heating-minutes"), &id("grid-balancing"), Value::Int(75), now); // count, clamped
    let _ = r.record_service(&id("thermostat.fault-code"), Value::Int(42), now); // record
    assert_eq!(r.counters().recorded, 4, "{:?}", r.counters());
    let frames = r.flush(now);
    assert_eq!(frames.len(), 2, "the statistics in one envelope, the record in another");
    let reports = open_all(&d.server, &frames);
    assert_eq!(reports.len(), 4);
    let by = |m: &str| reports.iter().find(|r| r.metric.as_str() == m).unwrap();
    assert!(matches!(by("thermostat.mode").payload, Payload::Statistic(_)));
    assert!(by("thermostat.mode").tag.receipt().is_none());
    let sp = by("thermostat.setpoint");
    let audience: Vec<&str> = sp.tag.audience().iter().map(RecipientId::as_str).collect();
    assert_eq!(audience, ["gridco"], "only gridco consented to the set-point for grid balancing");
    assert_eq!(sp.time, now.truncate(86_400), "time truncated to the metric's precision (P1D)");
    let fault = by("thermostat.fault-code");
    assert!(fault.tag.receipt().is_some());
    match &fault.payload {
        Payload::Record { value, .. } => assert_eq!(*value, RecordValue::Count(42)),
        other => panic!("{other:?}"),
    }
    for r in &reports {
        r.tag.check(d.recorder.catalogue(), &r.metric).unwrap();
    }
    // A boolean metric (watch brand) too.
    let mut w = device(2, "pulsa", Limits::default());
    consent(&mut w, "pulsa", "service", &["watch.battery-health"]);
    consent(&mut w, "pulsa", "product-improvement", &["watch.activity"]);
    let _ = w.recorder.record(&id("watch.activity"), &id("product-improvement"), Value::Category(1), now);
    let _ = w.recorder.record_service(&id("watch.battery-health"), Value::Int(87), now);
    let frames = w.recorder.flush(now);
    let reports = open_all(&w.server, &frames);
    assert!(
        matches!(reports[0].payload, Payload::Statistic(LdpReport::Olh { .. })),
        "{:?}",
        reports[0].payload
    );
    assert!(matches!(reports[1].payload, Payload::Record { value: RecordValue::Numeric(87), .. }));
}

#[test]
fn olh_reports_use_the_pool_key_of_their_time_bucket() {
    // watch.activity: OLH with d = 8, ε = 2 (g = 8), weekly buckets, no budget.
    const WEEK: u64 = 7 * 86_400;
    const N: usize = 300;
    let mut w = device(5, "pulsa", Limits::default());
    consent(&mut w, "pulsa", "product-improvement", &["watch.activity"]);
    let catalogue = Catalogue::from_toml_str(include_str!("../examples/catalogue.toml")).unwrap();
    let mech = catalogue.metric(&id("watch.activity")).unwrap().mechanism().unwrap();
    let Params::Olh { g, pool_key: 0, .. } = *mech.params() else { panic!("{mech:?}") };
    let mut buckets = Vec::new();
    for k in 1..=2 {
        let now = Timestamp::from_secs(NOW).truncate(WEEK).saturating_add_secs(k * WEEK + 3_600);
        for _ in 0..N {
            let _ =
                w.recorder.record(&id("watch.activity"), &id("product-improvement"), Value::Category(3), now);
        }
        let frames = w.recorder.flush(now);
        frames.iter().for_each(|f| w.recorder.acknowledge(f));
        let reports = open_all(&w.server, &frames);
        assert_eq!(reports.len(), N);
        assert!(reports.iter().all(|r| r.time == now.truncate(WEEK)));
        buckets.push((olh_pool_key("watch.activity", now.truncate(WEEK).as_secs()), reports));
    }
    // The share of reports whose value is category 3's hash under `key`: OLH keeps the
    // hash with probability p = e^ε/(e^ε + g − 1) ≈ 0.51, so ≈ 0.51 under the key the
    // device used; under an unrelated key the hash is independent, ≈ 1/g = 0.125.
    // Threshold 0.3: over N = 300 reports both sides are more than 7 standard deviations
    // (≤ 0.029) away.
    let share = |reports: &[Report], key: u64| {
        let hits = reports
            .iter()
            .filter(|r| match r.payload {
                Payload::Statistic(LdpReport::Olh { seed, value }) => value == olh_hash(key, seed, 3, g),
                ref other => panic!("{other:?}"),
            })
            .count();
        hits as f64 / N as f64
    };
    let (k1, k2) = (buckets[0].0, buckets[1].0);
    assert_ne!(k1, k2);
    for (mine, other, reports) in [(k1, k2, &buckets[0].1), (k2, k1, &buckets[1].1)] {
        assert!(share(reports, mine) > 0.3, "{}", share(reports, mine));
        assert!(share(reports, other) < 0.3, "{}", share(reports, other));
        assert!(share(reports, 0) < 0.3, "the unrotated key: {}", share(reports, 0));
    }
}

#[test]
fn problems_are_counted_not_raised() {
    let mut d = device(3, "calora", Limits::default());
    let now = Timestamp::from_secs(NOW);
    let r = &mut d.recorder;
    let _ = r.record(&id("thermostat.mode"), &id("product-improvement"), Value::Category(1), now);
    assert_eq!(r.counters().no_consent, 1);
    let _ = r.record(&id("no.such-metric"), &id("product-improvement"), Value::Bool(true), now);
    let _ = r.record_service(&id("thermostat.mode"), Value::Category(1), now); // wrong track
    assert_eq!(r.counters().unknown_metric, 2);
    let _ = r.record(&id("thermostat.mode"), &id("product-improvement"), Value::Category(6), now); // 6 labels: 0..=5
    let _ = r.record(&id("thermostat.setpoint"), &id("grid-balancing"), Value::Int(1_000), now); // range 50..=300
    let _ = r.record(&id("thermostat.setpoint"), &id("grid-balancing"), Value::Bool(true), now);
    assert_eq!(r.counters().invalid_value, 3);
    assert_eq!(r.queued(), 0);
    assert!(r.flush(now).is_empty());
}

#[test]
fn budget_caps_reports_per_period() {
    // thermostat.mode: ε = 1 per report, budget 8 per day.
    let mut d = device(4, "calora", Limits::default());
    consent(&mut d, "calora", "product-improvement", &["thermostat.mode"]);
    // The next UTC day after the consent, so that all ten fall in one budget period.
    let day = Timestamp::from_secs(NOW).truncate(86_400).saturating_add_secs(86_400);
    for i in 0..10 {
        let _ = d.recorder.record(
            &id("thermostat.mode"),
            &id("product-improvement"),
            Value::Category(0),
            day.saturating_add_secs(i),
        );
    }
    assert_eq!(d.recorder.queued(), 8);
    assert_eq!(d.recorder.counters().budget_exhausted, 2);
    let _ = d.recorder.record(
        &id("thermostat.mode"),
        &id("product-improvement"),
        Value::Category(0),
        day.saturating_add_secs(86_400),
    );
    assert_eq!(d.recorder.queued(), 9, "a new day starts a new budget");
}

#[test]
fn queue_is_bounded_by_count_and_bytes() {
    let limits = Limits { max_queued_reports: 5, ..Limits::default() };
    let mut d = device(5, "voltis", limits);
    consent(&mut d, "voltis", "product-improvement", &["car.drive-mode"]);
    let now = Timestamp::from_secs(NOW);
    for _ in 0..12 {
        let _ = d.recorder.record(&id("car.drive-mode"), &id("product-improvement"), Value::Category(2), now);
    }
    assert_eq!(d.recorder.queued(), 5);
    assert_eq!(d.recorder.counters().dropped_queue_full, 7);
    let limits = Limits { max_queued_bytes: 300, ..Limits::default() };
    let mut d = device(6, "voltis", limits);
    consent(&mut d, "voltis", "product-improvement", &["car.drive-mode"]);
    for _ in 0..100 {
        let _ = d.recorder.record(&id("car.drive-mode"), &id("product-improvement"), Value::Category(2), now);
    }
    let q = d.recorder.queued();
    assert!(q > 0 && q < 100, "{q}");
    assert_eq!(d.recorder.counters().dropped_queue_full as usize, 100 - q);
}

#[test]
fn nothing_unacknowledged_is_lost_across_a_restart() {
    let (p, server) = parts(7, "calora");
    let mut storage = MemoryStorage::default();
    let mut r = Recorder::new(p, &mut storage);
    let t = Timestamp::from_secs(NOW - 10);
    r.give_consent(
        ConsentRequest::new(
            id("calora"),
            id("product-improvement"),
            Scope::metrics([id("thermostat.mode")]),
            "P30D".parse().unwrap(),
        ),
        t,
    )
    .unwrap();
    let now = Timestamp::from_secs(NOW);
    let _ = r.record(&id("thermostat.mode"), &id("product-improvement"), Value::Category(4), now);
    let frames = r.flush(now);
    let _ = r.record(&id("thermostat.mode"), &id("product-improvement"), Value::Category(5), now);
    r.persist();
    drop(r);

    // The device restarts: same keys from the host's secure storage, state from storage.
    let (mut p2, _) = parts(7, "calora");
    p2.pseudonyms = DeviceSecret::generate(&mut SeededRng::seed_from_u64(99));
    let mut r2 = Recorder::new(p2, &mut storage);
    assert_eq!(r2.pending_envelopes(), 1, "the unacknowledged envelope survived");
    assert_eq!(r2.queued(), 1, "the queued report survived");
    assert_eq!(r2.consent().list().count(), 1, "the receipt survived");
    let again = r2.flush(now);
    assert_eq!(again.len(), 2);
    assert_eq!(again[0], frames[0], "the same bytes are re-sent: the aggregator dedupes them");
    r2.acknowledge(&again[0]);
    r2.acknowledge(&again[1]);
    assert_eq!(r2.pending_envelopes(), 0);
    assert_eq!(open_all(&server, &again).len(), 2);
    assert_eq!(r2.sent_log().count(), 2);
}

#[test]
fn storage_failures_and_missing_keys_are_counted() {
    let (mut p, _) = parts(8, "calora");
    p.key_configs.clear();
    let mut storage = MemoryStorage::default();
    storage.fail = true;
    let mut r = Recorder::new(p, &mut storage);
    let t = Timestamp::from_secs(NOW - 10);
    r.give_consent(
        ConsentRequest::new(
            id("calora"),
            id("product-improvement"),
            Scope::metrics([id("thermostat.setpoint")]),
            "P30D".parse().unwrap(),
        ),
        t,
    )
    .unwrap();
    let now = Timestamp::from_secs(NOW);
    // thermostat.setpoint has no ε budget: failing saves do not stop it.
    let _ = r.record(&id("thermostat.setpoint"), &id("product-improvement"), Value::Int(200), now);
    assert!(r.flush(now).is_empty());
    assert_eq!(r.counters().no_key, 1);
    assert_eq!(r.queued(), 1, "reports wait for a key");
    assert!(r.counters().storage_failed >= 2);
}

#[test]
fn sent_log_answers_subject_access_on_the_device() {
    let mut d = device(9, "calora", Limits::default());
    consent(&mut d, "calora", "product-improvement", &["thermostat.mode"]);
    let now = Timestamp::from_secs(NOW);
    let _ = d.recorder.record(&id("thermostat.mode"), &id("product-improvement"), Value::Category(1), now);
    d.recorder.flush(now);
    let e = d.recorder.sent_log().next().unwrap();
    assert_eq!(e.audience, vec![id::<RecipientId>("calora")]);
    assert_eq!(e.purpose, id::<PurposeId>("product-improvement"));
    // Bucket end (next midnight) + the receipt's 90 days, shorter than the metric's P1Y.
    assert_eq!(e.held_until, now.truncate(86_400).saturating_add_secs(86_400 + 90 * 86_400));
    assert!(e.receipt.is_none());
    let ps = d.recorder.pseudonyms(&[id("calora")], now, now);
    assert_eq!(ps.len(), 1);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever the host throws at it, the recorder neither panics nor errs, and every
    /// call is accounted for.
    #[test]
    fn recorder_never_panics(calls in proptest::collection::vec((0usize..12, 0usize..6, any::<i64>(), any::<u64>()), 1..60)) {
        let mut d = device(10, "calora", Limits { max_queued_reports: 16, ..Limits::default() });
        consent(&mut d, "calora", "product-improvement", &["thermostat.mode", "thermostat.setpoint"]);
        consent(&mut d, "calora", "service", &["thermostat.fault-code"]);
        let metrics = ["thermostat.mode", "thermostat.setpoint", "thermostat.fault-code", "car.drive-mode", "nope", "watch.activity",
            "thermostat.heating-minutes", "car.odometer-km", "thermostat.mode", "thermostat.setpoint", "thermostat.fault-code", "x"];
        let purposes = ["product-improvement", "service", "grid-balancing", "research", "zzz", "safety-recall"];
        for (m, p, v, t) in calls {
            let value = match v.rem_euclid(3) { 0 => Value::Bool(v % 2 == 0), 1 => Value::Category((v >> 8) as u32 % 8), _ => Value::Int(v >> 40) };
            let now = Timestamp::from_secs(t % (NOW * 2));
            if t % 5 == 0 {
                let _ = d.recorder.record_service(&id(metrics[m]), value, now);
            } else {
                let _ = d.recorder.record(&id(metrics[m]), &id(purposes[p]), value, now);
            }
            if t % 7 == 0 {
                let frames = d.recorder.flush(now);
                open_all(&d.server, &frames);
            }
        }
        let c = d.recorder.counters();
        prop_assert!(d.recorder.queued() <= 16);
        prop_assert!(c.recorded as usize >= d.recorder.queued());
    }
}

/// Recorders can share one catalogue (`Arc<Catalogue>`, `&Catalogue`): with the same
/// seeds and inputs they seal byte-identical envelopes to a recorder owning its copy.
#[test]
fn a_shared_catalogue_records_exactly_as_an_owned_one() {
    fn run<C: std::borrow::Borrow<Catalogue>>(
        p: RecorderParts<SeededRng>,
        catalogue: C,
        server: &SecretKey,
    ) -> (Vec<Vec<u8>>, usize) {
        let RecorderParts { consent, pseudonyms, controller, key_configs, rng, .. } = p;
        let parts = RecorderParts { catalogue, consent, pseudonyms, controller, key_configs, rng };
        let mut r = Recorder::new(parts, MemoryStorage::default());
        let t = Timestamp::from_secs(NOW - 86_400);
        let p90 = || "P90D".parse().unwrap();
        let stats = Scope::metrics([id::<MetricId>("watch.activity")]);
        r.give_consent(ConsentRequest::new(id("pulsa"), id("product-improvement"), stats, p90()), t).unwrap();
        let service = Scope::metrics([id::<MetricId>("watch.battery-health")]);
        r.give_consent(ConsentRequest::new(id("pulsa"), id("service"), service, p90()), t).unwrap();
        let now = Timestamp::from_secs(NOW);
        for i in 0..20 {
            let _ = r.record(&id("watch.activity"), &id("product-improvement"), Value::Category(i % 2), now);
        }
        let _ = r.record_service(&id("watch.battery-health"), Value::Int(87), now);
        let frames = r.flush(now);
        let reports = open_all(server, &frames).len();
        (frames, reports)
    }
    let (p, server) = parts(9, "pulsa");
    let owned =
        run(p, Catalogue::from_toml_str(include_str!("../examples/catalogue.toml")).unwrap(), &server);
    assert_eq!(owned.1, 21, "20 statistics and one record");
    let shared =
        std::sync::Arc::new(Catalogue::from_toml_str(include_str!("../examples/catalogue.toml")).unwrap());
    let (p, _) = parts(9, "pulsa");
    assert_eq!(run(p, std::sync::Arc::clone(&shared), &server), owned);
    let (p, _) = parts(9, "pulsa");
    assert_eq!(run(p, &*shared, &server), owned);
}

/// A storage whose saves fail while `failing` is set (shared with the test).
struct Flaky {
    inner: MemoryStorage,
    failing: std::rc::Rc<std::cell::Cell<bool>>,
}

impl confiance::recorder::Storage for Flaky {
    fn load(&mut self) -> Result<Option<Vec<u8>>, confiance::recorder::StorageError> {
        self.inner.load()
    }
    fn save(&mut self, bytes: &[u8]) -> Result<(), confiance::recorder::StorageError> {
        if self.failing.get() {
            return Err(confiance::recorder::StorageError);
        }
        self.inner.save(bytes)
    }
}

/// Issue #14, defect 6: with storage whose saves fail, two device lives in one day sent
/// 2 × the daily cap (each restart reopened the period). Now ε is spent only once its
/// charge is saved: across any number of lives the day's reports stay within the cap.
#[test]
fn the_budget_fails_closed_when_it_cannot_be_saved() {
    // thermostat.mode: ε = 1 per report, budget 8 per day.
    let day = Timestamp::from_secs(NOW).truncate(86_400).saturating_add_secs(86_400);
    let failing = std::rc::Rc::new(std::cell::Cell::new(false));
    let mut storage = Flaky { inner: MemoryStorage::default(), failing: failing.clone() };
    // Report ids sent: a report resent after a restart is the same report (same id, same
    // randomness), deduplicated by the aggregator, not a new ε spend.
    let mut sent = std::collections::HashSet::new();
    for life in 0..3u64 {
        // The same device (keys) in each life, with fresh randomness.
        let (mut p, server) = parts(30, "calora");
        p.rng = SeededRng::seed_from_u64(1_000 + life);
        let mut r = Recorder::new(p, &mut storage);
        if life == 0 {
            let t = Timestamp::from_secs(NOW - 1_000);
            let scope = Scope::metrics([id("thermostat.mode")]);
            r.give_consent(
                ConsentRequest::new(id("calora"), id("product-improvement"), scope, "P30D".parse().unwrap()),
                t,
            )
            .unwrap();
            // Two reports while saves work, then the storage breaks.
            for i in 0..2 {
                let _ = r.record(
                    &id("thermostat.mode"),
                    &id("product-improvement"),
                    Value::Category(0),
                    day.saturating_add_secs(i),
                );
            }
            failing.set(true);
        }
        for i in 0..10 {
            let at = day.saturating_add_secs(100 * life + 10 + i);
            let _ = r.record(&id("thermostat.mode"), &id("product-improvement"), Value::Category(1), at);
        }
        let frames = r.flush(day.saturating_add_secs(100 * life + 50));
        sent.extend(open_all(&server, &frames).into_iter().map(|r| r.id));
        for f in &frames {
            r.acknowledge(f);
        }
        if life == 0 {
            assert_eq!(r.counters().budget_unsaved, 10, "no ε spent once saves fail");
        }
    }
    assert_eq!(sent.len(), 2, "only the two reports whose charge was saved were sent");
    // The storage works again: the day's remaining 6 ε can be spent, and no more.
    failing.set(false);
    let (mut p, server) = parts(30, "calora");
    p.rng = SeededRng::seed_from_u64(2_000);
    let mut r = Recorder::new(p, &mut storage);
    for i in 0..10 {
        let _ = r.record(
            &id("thermostat.mode"),
            &id("product-improvement"),
            Value::Category(2),
            day.saturating_add_secs(500 + i),
        );
    }
    let frames = r.flush(day.saturating_add_secs(600));
    sent.extend(open_all(&server, &frames).into_iter().map(|r| r.id));
    assert_eq!(sent.len(), 8, "the day's cap, over four lives");
    assert_eq!(r.counters().budget_exhausted, 4);
}

/// A state that cannot be read back means unknown spending: the current period counts
/// as spent (it reopened before); the next period is open.
#[test]
fn an_unreadable_state_closes_the_current_budget_period() {
    let day = Timestamp::from_secs(NOW).truncate(86_400).saturating_add_secs(86_400);
    let mut storage = MemoryStorage::default();
    confiance::recorder::Storage::save(&mut storage, b"not a recorder state").unwrap();
    let (p, server) = parts(31, "calora");
    let mut r = Recorder::new(p, &mut storage);
    assert_eq!(r.counters().storage_failed, 1);
    let t = Timestamp::from_secs(NOW - 1_000);
    let scope = Scope::metrics([id("thermostat.mode")]);
    r.give_consent(
        ConsentRequest::new(id("calora"), id("product-improvement"), scope, "P30D".parse().unwrap()),
        t,
    )
    .unwrap();
    let _ = r.record(&id("thermostat.mode"), &id("product-improvement"), Value::Category(0), day);
    assert_eq!((r.queued(), r.counters().budget_unsaved), (0, 1));
    let next = day.saturating_add_secs(86_400);
    let _ = r.record(&id("thermostat.mode"), &id("product-improvement"), Value::Category(0), next);
    assert_eq!(open_all(&server, &r.flush(next)).len(), 1);
}

/// `NullStorage` keeps nothing, so it cannot keep a budget: budgeted metrics are refused
/// (it allowed them silently); the hazmat `SingleLifeStorage` allows them for one life.
#[test]
fn null_storage_refuses_budgeted_metrics_and_single_life_storage_allows_them() {
    let now = Timestamp::from_secs(NOW);
    let t = Timestamp::from_secs(NOW - 1_000);
    let scope = || Scope::metrics([id("thermostat.mode"), id("thermostat.setpoint")]);
    let (p, _) = parts(32, "calora");
    let mut null = Recorder::new(p, confiance::recorder::NullStorage);
    null.give_consent(
        ConsentRequest::new(id("calora"), id("product-improvement"), scope(), "P30D".parse().unwrap()),
        t,
    )
    .unwrap();
    let _ = null.record(&id("thermostat.mode"), &id("product-improvement"), Value::Category(0), now);
    let _ = null.record(&id("thermostat.setpoint"), &id("product-improvement"), Value::Int(200), now);
    assert_eq!((null.queued(), null.counters().budget_unsaved), (1, 1));
    let (p, _) = parts(32, "calora");
    let mut single = Recorder::new(p, confiance::hazmat::SingleLifeStorage);
    single
        .give_consent(
            ConsentRequest::new(id("calora"), id("product-improvement"), scope(), "P30D".parse().unwrap()),
            t,
        )
        .unwrap();
    for i in 0..10 {
        let _ = single.record(
            &id("thermostat.mode"),
            &id("product-improvement"),
            Value::Category(0),
            now.saturating_add_secs(i),
        );
    }
    assert_eq!((single.queued(), single.counters().budget_exhausted), (8, 2));
}

/// The example catalogue plus one metric per mechanism and per record kind, with domains
/// wide enough that a varint would take 1 to 4 bytes.
fn length_catalogue() -> Catalogue {
    let labels = |n: usize| (0..n).map(|i| format!("\"l{i}\"")).collect::<Vec<_>>().join(", ");
    let ldp = |name: &str, kind: &str, mech: &str| {
        format!(
            "[metrics.\"test.{name}\"]\ndescription = \"t\"\n{kind}\ncategory = \"usage\"\nsensitivity = \"low\"\n\
             privacy = \"ldp\"\nepsilon = \"1\"\nmechanism = \"{mech}\"\npurposes = [\"product-improvement\"]\n\
             recipients = [\"calora\"]\nmax_hold = \"P1Y\"\ntime_precision = \"P1D\"\n\n"
        )
    };
    let record = |name: &str, kind: &str| {
        format!(
            "[metrics.\"test.{name}\"]\ndescription = \"t\"\n{kind}\ncategory = \"device-state\"\nsensitivity = \"low\"\n\
             privacy = \"pseudonymous\"\npurposes = [\"service\"]\nrecipients = [\"calora\"]\nmax_hold = \"P1Y\"\n\
             time_precision = \"P1D\"\n\n"
        )
    };
    let cat300 = format!("kind = \"categorical\"\nlabels = [{}]", labels(300));
    let mut text = include_str!("../examples/catalogue.toml").to_owned();
    text.push('\n');
    for mech in ["grr", "oue", "sue", "olh", "hadamard", "auto"] {
        text += &ldp(mech, &cat300, mech);
    }
    text += &ldp("piecewise", "kind = \"numeric\"\nmin = -1000000\nmax = 1000000", "piecewise");
    text += &ldp("duchi", "kind = \"count\"\nmax = 1000000", "duchi");
    text += &ldp("boolean", "kind = \"boolean\"", "auto");
    text += &record("record-count", "kind = \"count\"\nmax = 100000000");
    text += &record("record-numeric", "kind = \"numeric\"\nmin = -100000000\nmax = 100000000");
    text += &record("record-categorical", &cat300);
    text += &record("record-boolean", "kind = \"boolean\"");
    Catalogue::from_toml_str(&text).unwrap()
}

/// Issue #14, defect 5: varints made a report's length depend on its value, and an
/// eavesdropper who sees only ciphertext sizes learnt from them (ε lower bound 3.70 out
/// of 4 for Piecewise at ε = 4). Through the recorder, every envelope holding one report
/// of a metric has the same size, whatever the value — for every mechanism and every
/// metric kind, statistics and records.
#[test]
fn every_report_of_a_metric_seals_to_the_same_length_whatever_the_value() {
    use confiance::catalogue::MetricKind;
    let cat = length_catalogue();
    let base = Timestamp::from_secs(NOW).truncate(86_400);
    let mut variants = std::collections::BTreeSet::new();
    let mut kinds = std::collections::BTreeSet::new();
    for (metric, m) in cat.metrics() {
        let recipient: RecipientId = m.recipients.iter().next().unwrap().clone();
        let purpose: PurposeId =
            if m.is_anonymous() { m.purposes.iter().next().unwrap().clone() } else { id("service") };
        let (mut p, server) = parts(40, recipient.as_str());
        p.catalogue = cat.clone();
        let mut r = Recorder::new(p, MemoryStorage::default());
        let t = base.saturating_sub_secs(86_400);
        let scope = Scope::metrics([metric.clone()]);
        r.give_consent(ConsentRequest::new(recipient, purpose.clone(), scope, "P30D".parse().unwrap()), t)
            .unwrap();
        let n = 120u64;
        let mut sizes = std::collections::BTreeSet::new();
        let mut made = 0;
        for i in 0..n {
            // Values over the whole domain, its ends included; 4 a day (within budgets).
            let value = match &m.kind {
                MetricKind::Boolean => Value::Bool(i % 2 == 0),
                MetricKind::Categorical { labels } => Value::Category((i as u32 * 37) % labels.len() as u32),
                MetricKind::Numeric { min, max } => {
                    Value::Int(min + ((*max as i128 - *min as i128) * i as i128 / (n - 1) as i128) as i64)
                }
                MetricKind::Count { max } => {
                    Value::Int((*max as u128 * u128::from(i) / u128::from(n - 1)) as i64)
                }
            };
            kinds.insert(format!("{:?}", std::mem::discriminant(&m.kind)));
            let now = base.saturating_add_secs(i / 4 * 86_400 + i % 4 * 3_600);
            if m.is_anonymous() {
                let _ = r.record(metric, &purpose, value, now);
            } else {
                let _ = r.record_service(metric, value, now);
            }
            for frame in r.flush(now) {
                sizes.insert(frame.len());
                let (header, plain) = envelope::open(&frame, &server, AeadId::ChaCha20Poly1305).unwrap();
                assert_eq!(header.catalogue_digest, cat.digest());
                let (_, reports): (_, Vec<Report>) =
                    envelope::decode_body(&plain, &BatchLimits::default()).unwrap();
                for report in reports {
                    made += 1;
                    if let Payload::Statistic(ldp) = &report.payload {
                        variants.insert(format!("{ldp:?}").split(['(', ' ']).next().unwrap().to_owned());
                    }
                }
                r.acknowledge(&frame);
            }
        }
        assert_eq!(made, n, "{metric}: {:?}", r.counters());
        assert_eq!(sizes.len(), 1, "{metric}: envelope sizes {sizes:?}");
    }
    for v in ["Grr", "Oue", "Sue", "Olh", "Hadamard", "Piecewise", "Duchi"] {
        assert!(variants.contains(v), "{v} not covered: {variants:?}");
    }
    assert_eq!(kinds.len(), 4, "boolean, categorical, numeric, count");
}
