//! Ingest end to end: devices record and seal, the aggregator opens, validates,
//! accumulates and commits; bad envelopes and reports each get their own error and change
//! nothing; replays are refused; shards merge into exactly what one aggregator holds.

use std::collections::BTreeSet;

use confiance::Timestamp;
use confiance::consent::{ConsentRequest, ConsentState, DeviceKey, Scope};
use confiance::envelope::{self, AeadId, HeaderFields, KeyConfig, ReportId};
use confiance::hazmat::{SeedableRng as _, SeededRng};
use confiance::ids::{MetricId, RecipientId};
use confiance::ldp::LdpReport;
use confiance::recorder::{MemoryStorage, Recorder, Value};
use confiance::report::{Payload, RecordValue, Report};
use confiance::report::{Refusal, Refused};
use confiance_aggregator::ingest::{Ack, IngestError};
use confiance_aggregator::keys::{KeyStore, OpenError};
use confiance_aggregator::service::{Aggregator, AggregatorConfig, ReleaseError};

#[path = "support/fixtures.rs"]
mod fixtures;
use fixtures::{catalogue, id, recorder};

const T0: u64 = 1_800_000_000;

struct World {
    agg: Aggregator,
    config: KeyConfig,
    rng: SeededRng,
}

fn world(seed: u64) -> World {
    world_with(seed, AggregatorConfig::default())
}

fn world_with(seed: u64, agg_config: AggregatorConfig) -> World {
    let mut rng = SeededRng::seed_from_u64(seed);
    let mut keys = KeyStore::new(86_400);
    let config = keys
        .generate(
            AeadId::ChaCha20Poly1305,
            Timestamp::EPOCH,
            Timestamp::from_secs(T0 + 100 * 86_400),
            &mut rng,
        )
        .unwrap();
    let agg = Aggregator::in_memory(catalogue(), keys, agg_config).unwrap();
    World { agg, config, rng }
}

fn device(w: &mut World, seed: u64, controller: &str) -> Recorder<SeededRng, MemoryStorage> {
    recorder(seed, controller, vec![w.config])
}

fn give(
    w: &mut World,
    d: &mut Recorder<SeededRng, MemoryStorage>,
    recipient: &str,
    purpose: &str,
    metrics: &[&str],
) -> confiance::ids::ReceiptId {
    let t = Timestamp::from_secs(T0 - 10_000);
    let bytes = d
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
    w.agg.receive_receipt(&bytes, t).unwrap()
}

/// Seals `reports` as one envelope to the world's key.
fn seal(w: &mut World, reports: &[Report], day: Timestamp) -> Vec<u8> {
    let plain = envelope::encode_body(&[], reports).unwrap();
    let fields = HeaderFields { catalogue_digest: catalogue().digest(), time_bucket: day };
    envelope::seal(&w.config, &fields, &plain, &mut w.rng).unwrap()
}

/// Everything that must not change when an envelope is refused.
fn snapshot(
    agg: &Aggregator,
) -> (std::collections::BTreeMap<confiance_aggregator::store::PartitionKey, (u64, Vec<u8>)>, u64, usize) {
    let log = agg.store().audit_log().unwrap().size();
    let records: usize = agg
        .store()
        .as_sqlite()
        .expect("a SQLite store")
        .connection()
        .query_row("SELECT COUNT(*) FROM record", [], |r| r.get::<_, i64>(0))
        .unwrap() as usize;
    (agg.partition_states(), log, records)
}

#[test]
fn devices_to_estimates_and_gated_records() {
    let mut w = world(1);
    let now = Timestamp::from_secs(T0);
    let mut frames = Vec::new();
    for i in 0..300u64 {
        let mut d = device(&mut w, 100 + i, "calora");
        give(&mut w, &mut d, "calora", "product-improvement", &["thermostat.mode"]);
        if i % 2 == 0 {
            give(&mut w, &mut d, "calora", "service", &["thermostat.fault-code"]);
        }
        let _ = d.record(
            &id("thermostat.mode"),
            &id("product-improvement"),
            Value::Category((i % 3) as u32),
            now,
        );
        let _ = d.record_service(&id("thermostat.fault-code"), Value::Int(7), now);
        frames.extend(d.flush(now));
    }
    let mut reports = 0;
    for f in &frames {
        reports += w.agg.ingest(f, now).unwrap().reports;
    }
    assert_eq!(reports, 300 + 150);
    let r =
        w.agg.release(&id("calora"), &id("thermostat.mode"), Timestamp::EPOCH, Timestamp::MAX, now).unwrap();
    assert_eq!(r.estimate.n, 300);
    assert_eq!(r.labels.len(), 6);
    // The true frequencies are 1/3, 1/3, 1/3, 0, 0, 0; each lies within 5 standard errors.
    for (i, p) in r.estimate.values.iter().enumerate() {
        let truth = if i < 3 { 1.0 / 3.0 } else { 0.0 };
        assert!((p.value - truth).abs() < 5.0 * p.std_error, "label {i}: {p:?}");
    }
    // gridco may have the mode under the catalogue, but no device put it in an audience;
    // pulsa may never have it.
    assert_eq!(
        w.agg.release(&id("gridco"), &id("thermostat.mode"), Timestamp::EPOCH, Timestamp::MAX, now),
        Err(ReleaseError::NothingToRelease)
    );
    assert_eq!(
        w.agg.release(&id("pulsa"), &id("thermostat.mode"), Timestamp::EPOCH, Timestamp::MAX, now),
        Err(ReleaseError::NotAllowed)
    );
    let recs = w
        .agg
        .release_records(&id("calora"), &id("thermostat.fault-code"), Timestamp::EPOCH, Timestamp::MAX, now)
        .unwrap();
    assert_eq!(recs.len(), 150);
    assert!(recs.iter().all(|r| r.value == RecordValue::Count(7) && r.decision.allowed()));
    // Resending an acknowledged envelope is a replay, and changes nothing.
    let before = snapshot(&w.agg);
    assert!(matches!(w.agg.ingest(&frames[0], now), Err(IngestError::ReplayedEnvelope(_))));
    assert_eq!(snapshot(&w.agg), before);
}

/// A report that arrives after its own hold ended (late enough, with an aggregator that
/// accepts reports a year late) is refused `time_outside_window`, not retryable, and
/// creates no partition or record: it could not be kept at all. Before, ingest checked
/// only the report's age, so a late report re-created a partition past its deadline,
/// possibly one a purge had already deleted, and the next purge found it overdue.
#[test]
fn a_report_arriving_after_its_hold_ended_is_refused_and_kept_nowhere() {
    const DAY: u64 = 86_400;
    let year = AggregatorConfig { max_report_age_secs: 365 * DAY, ..AggregatorConfig::default() };
    let mut w = world_with(3, year);
    let now = Timestamp::from_secs(T0);
    // Two devices, each with a statistic and a record collected at T0, both held P90D.
    let mut frames = Vec::new();
    for seed in [8, 9] {
        let mut d = device(&mut w, seed, "calora");
        give(&mut w, &mut d, "calora", "product-improvement", &["thermostat.mode"]);
        give(&mut w, &mut d, "calora", "service", &["thermostat.fault-code"]);
        d.record(&id("thermostat.mode"), &id("product-improvement"), Value::Category(1), now).unwrap();
        d.record_service(&id("thermostat.fault-code"), Value::Int(3), now).unwrap();
        // One envelope per track.
        frames.push(d.flush(now));
    }
    let ingest_all = |w: &mut World, frames: &[Vec<u8>], at: Timestamp| {
        let acks: Vec<Ack> = frames.iter().map(|f| w.agg.ingest(f, at).unwrap()).collect();
        let refused: Vec<Refused> = acks.iter().flat_map(|a| a.refused.clone()).collect();
        (acks.iter().map(|a| a.reports).sum::<u32>(), refused)
    };
    let before = snapshot(&w.agg);
    // 95 days later both holds (P90D from the bucket's end, from the collection) are over.
    let (kept, refused) = ingest_all(&mut w, &frames[0], now.saturating_add_secs(95 * DAY));
    assert_eq!(kept, 0);
    assert_eq!(refused.len(), 2, "{refused:?}");
    assert!(refused.iter().all(|r| r.refusal == Refusal::TimeOutsideWindow && !r.retry));
    assert_eq!(snapshot(&w.agg), before, "a refused late report changed the store");
    // The same reports 85 days after collection are within their holds and kept.
    let (kept, refused) = ingest_all(&mut w, &frames[1], now.saturating_add_secs(85 * DAY));
    assert_eq!((kept, refused.len()), (2, 0), "{refused:?}");
}

#[test]
fn bad_envelopes_and_reports_each_get_their_own_error_and_change_nothing() {
    let mut w = world(2);
    let now = Timestamp::from_secs(T0);
    let day = now.truncate(86_400);
    let mut d = device(&mut w, 7, "calora");
    give(&mut w, &mut d, "calora", "product-improvement", &["thermostat.mode"]);
    let svc = give(&mut w, &mut d, "calora", "service", &["thermostat.fault-code"]);
    let _ = d.record(&id("thermostat.mode"), &id("product-improvement"), Value::Category(1), now);
    let _ = d.record_service(&id("thermostat.fault-code"), Value::Int(3), now);
    // The statistic's envelope, then the record's (an envelope carries one track).
    let good_frames = d.flush(now);
    let mut good: Vec<Report> = Vec::new();
    for f in &good_frames {
        let opened = w.agg.keys().open(f, now, &catalogue().digest()).unwrap();
        good.extend(
            envelope::decode_body::<Report>(&opened.plaintext, &Default::default()).map(|(_, r)| r).unwrap(),
        );
        w.agg.ingest(f, now).unwrap();
    }
    let good_frame = good_frames[0].clone();
    let stat = good.iter().find(|r| matches!(r.payload, Payload::Statistic(_))).unwrap().clone();
    let rec = good.iter().find(|r| matches!(r.payload, Payload::Record { .. })).unwrap().clone();
    let before = snapshot(&w.agg);

    let fresh = |r: &Report, rng: &mut SeededRng| Report { id: ReportId::random(rng), ..r.clone() };
    let mut ids = SeededRng::seed_from_u64(5);
    type Check = Box<dyn Fn(&Result<Ack, IngestError>) -> bool>;
    let mut cases: Vec<(&str, Vec<u8>, Check)> = Vec::new();
    let mut push = |name, frame, check: Check| cases.push((name, frame, check));

    push(
        "truncated",
        good_frame[..40].to_vec(),
        Box::new(|r| matches!(r, Err(IngestError::Open(OpenError::Malformed(_))))),
    );
    push("oversize", vec![1u8; (1 << 20) + 1], Box::new(|r| matches!(r, Err(IngestError::TooLarge { .. }))));
    let mut flipped = good_frame.clone();
    let n = flipped.len();
    flipped[n - 5] ^= 1;
    push(
        "tampered ciphertext",
        flipped,
        Box::new(|r| matches!(r, Err(IngestError::Open(OpenError::Decrypt)))),
    );
    let mut version = good_frame.clone();
    version[0] = 9;
    push(
        "unknown version",
        version,
        Box::new(|r| matches!(r, Err(IngestError::Open(OpenError::Malformed(_))))),
    );
    let mut unknown_key = good_frame.clone();
    unknown_key[1] ^= 0x40;
    push(
        "unknown key id",
        unknown_key,
        Box::new(|r| matches!(r, Err(IngestError::Open(OpenError::UnknownKey(_))))),
    );
    // Sealed to a key the aggregator never had.
    let mut other_keys = KeyStore::new(0);
    let mut rng2 = SeededRng::seed_from_u64(99);
    let other =
        other_keys.generate(AeadId::ChaCha20Poly1305, Timestamp::EPOCH, Timestamp::MAX, &mut rng2).unwrap();
    let wrong_key = {
        let plain = envelope::encode_body(&[], &[fresh(&stat, &mut ids)]).unwrap();
        let f = HeaderFields { catalogue_digest: catalogue().digest(), time_bucket: day };
        envelope::seal(&KeyConfig { id: w.config.id, ..other }, &f, &plain, &mut w.rng).unwrap()
    };
    push("wrong key", wrong_key, Box::new(|r| matches!(r, Err(IngestError::Open(OpenError::Decrypt)))));
    let wrong_digest = {
        let plain = envelope::encode_body(&[], &[fresh(&stat, &mut ids)]).unwrap();
        let f = HeaderFields {
            catalogue_digest: confiance::catalogue::CatalogueDigest([3; 32]),
            time_bucket: day,
        };
        envelope::seal(&w.config, &f, &plain, &mut w.rng).unwrap()
    };
    push(
        "wrong catalogue",
        wrong_digest,
        Box::new(|r| matches!(r, Err(IngestError::Open(OpenError::BadCatalogueDigest { .. })))),
    );
    let garbage = {
        let f = HeaderFields { catalogue_digest: catalogue().digest(), time_bucket: day };
        envelope::seal(&w.config, &f, &[5, 1, 2], &mut w.rng).unwrap()
    };
    push("malformed batch", garbage, Box::new(|r| matches!(r, Err(IngestError::Batch(_)))));
    let empty = seal(&mut w, &[], day);
    push("empty", empty, Box::new(|r| matches!(r, Err(IngestError::Empty))));
    push(
        "replayed envelope",
        good_frame.clone(),
        Box::new(|r| matches!(r, Err(IngestError::ReplayedEnvelope(_)))),
    );
    let replayed_report = seal(&mut w, std::slice::from_ref(&stat), day);
    push(
        "replayed report",
        replayed_report,
        Box::new(|r| matches!(r, Ok(a) if a.reports == 0 && a.refused.is_empty())),
    );
    // Twice the same held report in one envelope: acknowledged, nothing kept.
    let dup = seal(&mut w, &[stat.clone(), stat.clone()], day);
    push(
        "held report twice in an envelope",
        dup,
        Box::new(|r| matches!(r, Ok(a) if a.reports == 0 && a.refused.is_empty())),
    );
    let unknown_metric =
        seal(&mut w, &[Report { metric: id("thermostat.colour"), ..fresh(&stat, &mut ids) }], day);
    push("unknown metric", unknown_metric, Box::new(|r| is_refused(r, Refusal::UnknownMetric, false)));
    // A tag claiming pulsa may see the thermostat mode: wider than the catalogue allows.
    let wide_tag = {
        let mut c = ConsentState::new(DeviceKey::generate(&mut w.rng));
        let t = Timestamp::from_secs(T0 - 100);
        let cat = catalogue();
        c.give(
            &cat,
            confiance::consent::Grant {
                recipient: id("pulsa"),
                purpose: id("product-improvement"),
                scope: Scope::metrics([id("watch.activity")]),
                valid_from: t,
                valid_until: None,
                hold: "P30D".parse().unwrap(),
            },
            t,
            &mut w.rng,
        )
        .unwrap();
        let tag = confiance::retention::RetentionTag::for_statistic(
            &cat,
            &c,
            &id("watch.activity"),
            &id("product-improvement"),
            [id::<RecipientId>("pulsa")],
            now,
        )
        .unwrap();
        seal(&mut w, &[Report { tag, ..fresh(&stat, &mut ids) }], day)
    };
    push(
        "tag wider than the catalogue",
        wide_tag,
        Box::new(|r| is_refused(r, Refusal::TagNotAllowed, false)),
    );
    let misaligned =
        seal(&mut w, &[Report { time: stat.time.saturating_add_secs(60), ..fresh(&stat, &mut ids) }], day);
    push("misaligned time", misaligned, Box::new(|r| is_refused(r, Refusal::MisalignedTime, false)));
    let old_day = day.saturating_sub_secs(30 * 86_400);
    let stale = seal(&mut w, &[Report { time: old_day, ..fresh(&stat, &mut ids) }], old_day);
    push("time outside the window", stale, Box::new(|r| is_refused(r, Refusal::TimeOutsideWindow, false)));
    let future_day = day.saturating_add_secs(2 * 86_400);
    let future = seal(&mut w, &[Report { time: future_day, ..fresh(&stat, &mut ids) }], day);
    push(
        "time after the envelope's day",
        future,
        Box::new(|r| is_refused(r, Refusal::TimeOutsideWindow, false)),
    );
    // The envelope's own time bucket (docs/wire-format.md §1): the start of a UTC day
    // that has begun. Both were accepted before (issue #14, defect 7).
    let unaligned = seal(&mut w, &[fresh(&stat, &mut ids)], day.saturating_add_secs(60));
    push(
        "unaligned envelope time bucket",
        unaligned,
        Box::new(|r| matches!(r, Err(IngestError::TimeBucket(_)))),
    );
    let ten_days = day.saturating_add_secs(10 * 86_400);
    let future_bucket = seal(&mut w, &[fresh(&stat, &mut ids)], ten_days);
    push(
        "envelope time bucket 10 days ahead",
        future_bucket,
        Box::new(|r| matches!(r, Err(IngestError::TimeBucket(_)))),
    );
    let tomorrow = seal(&mut w, &[fresh(&stat, &mut ids)], day.saturating_add_secs(86_400));
    push(
        "envelope time bucket of a day not begun",
        tomorrow,
        Box::new(|r| matches!(r, Err(IngestError::TimeBucket(_)))),
    );
    let bad_ldp = seal(
        &mut w,
        &[Report { payload: Payload::Statistic(LdpReport::Grr(99)), ..fresh(&stat, &mut ids) }],
        day,
    );
    push("malformed LDP report", bad_ldp, Box::new(|r| is_refused(r, Refusal::MalformedLdpReport, false)));
    let wrong_track = seal(&mut w, &[Report { payload: rec.payload.clone(), ..fresh(&stat, &mut ids) }], day);
    push(
        "record payload on an anonymous metric",
        wrong_track,
        Box::new(|r| is_refused(r, Refusal::WrongTrack, false)),
    );
    let bad_value = {
        let Payload::Record { pseudonym, epoch, .. } = rec.payload.clone() else { unreachable!() };
        let payload = Payload::Record { pseudonym, epoch, value: RecordValue::Count(10_000) };
        seal(&mut w, &[Report { payload, ..fresh(&rec, &mut ids) }], day)
    };
    push(
        "record value out of range",
        bad_value,
        Box::new(|r| is_refused(r, Refusal::InvalidRecordValue, false)),
    );
    // A record whose receipt the aggregator never received.
    let unknown_receipt = {
        let mut d2 = device(&mut w, 8, "calora");
        let t = Timestamp::from_secs(T0 - 10_000);
        d2.give_consent(
            ConsentRequest::new(
                id("calora"),
                id("service"),
                Scope::metrics([id("thermostat.fault-code")]),
                "P90D".parse().unwrap(),
            ),
            t,
        )
        .unwrap();
        let _ = d2.record_service(&id("thermostat.fault-code"), Value::Int(3), now);
        d2.flush(now).remove(0)
    };
    push(
        "record under an unknown receipt",
        unknown_receipt,
        Box::new(|r| is_refused(r, Refusal::UnknownReceipt, true)),
    );
    // A record collected after its receipt was withdrawn.
    let withdrawn = {
        let wd = d.withdraw_consent(&svc, Timestamp::from_secs(T0 - 5_000)).unwrap();
        w.agg.receive_withdrawal(&wd, Timestamp::from_secs(T0 - 5_000)).unwrap();
        seal(&mut w, &[fresh(&rec, &mut ids)], day)
    };
    push("record after withdrawal", withdrawn, Box::new(|r| is_refused(r, Refusal::NotConsented, false)));
    // Expired key: an envelope sealed to the right key, received after the grace period.
    let late = Timestamp::from_secs(T0 + 102 * 86_400);
    let (expired_frame, expired_at) = (seal(&mut w, &[fresh(&stat, &mut ids)], day), late);

    let before = {
        let _ = before;
        snapshot(&w.agg)
    };
    let mut codes = BTreeSet::new();
    for (name, frame, check) in &cases {
        let r = w.agg.ingest(frame, now);
        assert!(check(&r), "{name}: unexpected {r:?}");
        codes.insert(match &r {
            Err(e) => format!("{name}: {}", e.code()),
            Ok(a) => format!("{name}: {:?}", a.refused),
        });
        assert_eq!(snapshot(&w.agg), before, "{name} changed the store");
    }
    let e = w.agg.ingest(&expired_frame, expired_at).unwrap_err();
    assert!(matches!(e, IngestError::Open(OpenError::KeyExpired(_))), "{e:?}");
    assert_eq!(snapshot(&w.agg), before);
    assert!(cases.len() + 1 >= 15, "{} kinds", cases.len() + 1);
    let distinct: BTreeSet<&str> = cases.iter().map(|(n, _, _)| *n).collect();
    assert_eq!(distinct.len(), cases.len());
}

#[test]
fn shards_merge_into_what_one_aggregator_holds() {
    let mut w = world(3);
    let now = Timestamp::from_secs(T0);
    let mut frames = Vec::new();
    for i in 0..120u64 {
        let mut d = device(&mut w, 1_000 + i, ["calora", "pulsa", "voltis"][(i % 3) as usize]);
        give(&mut w, &mut d, "calora", "product-improvement", &["thermostat.mode"]);
        give(&mut w, &mut d, "voltis", "product-improvement", &["car.drive-mode"]);
        let _ = d.record(
            &id("thermostat.mode"),
            &id("product-improvement"),
            Value::Category((i % 6) as u32),
            now,
        );
        let _ =
            d.record(&id("car.drive-mode"), &id("product-improvement"), Value::Category((i % 8) as u32), now);
        frames.extend(d.flush(now));
    }
    let keys = w.agg.keys().clone();
    let mut all = Aggregator::in_memory(catalogue(), keys.clone(), AggregatorConfig::default()).unwrap();
    let mut a = Aggregator::in_memory(catalogue(), keys.clone(), AggregatorConfig::default()).unwrap();
    let mut b = Aggregator::in_memory(catalogue(), keys, AggregatorConfig::default()).unwrap();
    for (i, f) in frames.iter().enumerate() {
        all.stage(f, now).unwrap();
        if i % 2 == 0 {
            a.ingest(f, now).unwrap();
        } else {
            b.ingest(f, now).unwrap();
        }
    }
    all.commit(now).unwrap();
    assert_ne!(a.partition_states(), all.partition_states());
    a.merge_from(&b, now).unwrap();
    assert_eq!(a.partition_states(), all.partition_states());
    // After the merge a report b saw is a replay for a too: not kept again.
    let r = a.ingest(&frames[1], now);
    assert!(matches!(r, Err(IngestError::ReplayedEnvelope(_))) || replayed(r));
    let stored: Vec<_> =
        a.store().partitions().unwrap().into_iter().map(|p| (p.key, (p.reports, p.state))).collect();
    assert_eq!(stored.into_iter().collect::<std::collections::BTreeMap<_, _>>(), all.partition_states());
}

#[test]
fn transcryption_goes_through_the_ledger_and_the_log() {
    use confiance_aggregator::audit::AuditEvent;
    use confiance_aggregator::service::TranscryptRefusal;
    use confiance_aggregator::transcrypt::{
        Domain, DomainTranscryptor, RecipientKey, TranscryptError, Transcryptor, TranscryptorId,
        TranscryptorSecret, system_public_key,
    };
    let mut w = world(4);
    let ts: Vec<Transcryptor> = (1..=3u32)
        .map(|i| Transcryptor::new(TranscryptorId(i), TranscryptorSecret::from_bytes([i as u8; 32])))
        .collect();
    let refs: Vec<&Transcryptor> = ts.iter().collect();
    let (pk, _) = system_public_key(&refs, &mut w.rng).unwrap();
    let domain = Domain::new(id("voltis"));
    let dts: Vec<DomainTranscryptor> = ts.iter().map(|t| t.for_domain(&domain)).collect();
    let chain: Vec<&DomainTranscryptor> = dts.iter().collect();

    let mut d = device(&mut w, 11, "voltis");
    let subject = d.consent().subject();
    let (m, p) = (id::<MetricId>("car.odometer-km"), id("service"));
    let now = Timestamp::from_secs(T0);
    let events_of = |w: &World| -> Vec<AuditEvent> {
        let log = w.agg.store().audit_log().unwrap();
        log.export(log.size()).unwrap().into_iter().map(|e| e.event).collect()
    };
    // No consent yet (the ledger does not know the subject): refused, and the refusal
    // is logged with its code.
    let early = d.transcryption_request(&pk, confiance::ids::ReceiptId([0; 32]), id("voltis"), None);
    let log_before = w.agg.store().audit_log().unwrap().size();
    let refused = w.agg.transcrypt(&chain, &early, &m, &p, &subject, now, &mut w.rng);
    assert_eq!(refused, Err(TranscryptRefusal::Failed(TranscryptError::DeviceNotAuthorised)));
    assert_eq!(w.agg.store().audit_log().unwrap().size(), log_before + 1);
    assert!(matches!(
        events_of(&w).last(),
        Some(AuditEvent::TranscryptionRefused { code, .. }) if code == "device-not-authorised"
    ));
    // With consent: transcrypted, decryptable by the recipient, logged.
    let receipt = give(&mut w, &mut d, "voltis", "service", &["car.odometer-km"]);
    let request = d.transcryption_request(&pk, receipt, id("voltis"), None);
    let steps = w.agg.transcrypt(&chain, &request, &m, &p, &subject, now, &mut w.rng).unwrap();
    let shares: Vec<_> = dts.iter().map(DomainTranscryptor::recipient_key_share).collect();
    let pseudonym = RecipientKey::from_shares(&shares)
        .unwrap()
        .decrypt_unverified(&steps.last().unwrap().output)
        .unwrap();
    // The same request again is a replay; a fresh one gives the same pseudonym.
    assert_eq!(
        w.agg.transcrypt(&chain, &request, &m, &p, &subject, now, &mut w.rng),
        Err(TranscryptRefusal::Failed(TranscryptError::Replayed))
    );
    let fresh = d.transcryption_request(&pk, receipt, id("voltis"), None);
    let again = w.agg.transcrypt(&chain, &fresh, &m, &p, &subject, now, &mut w.rng).unwrap();
    assert_eq!(
        RecipientKey::from_shares(&shares)
            .unwrap()
            .decrypt_unverified(&again.last().unwrap().output)
            .unwrap(),
        pseudonym
    );
    assert_eq!(
        events_of(&w)
            .iter()
            .filter(|e| matches!(e, AuditEvent::Transcryption { receipt: Some(x), .. } if *x == receipt))
            .count(),
        2
    );
    // After a withdrawal: refused again.
    let wd = d.withdraw_consent(&receipt, Timestamp::from_secs(T0 + 10)).unwrap();
    w.agg.receive_withdrawal(&wd, Timestamp::from_secs(T0 + 10)).unwrap();
    let later = Timestamp::from_secs(T0 + 20);
    let late = d.transcryption_request(&pk, receipt, id("voltis"), None);
    assert_eq!(
        w.agg.transcrypt(&chain, &late, &m, &p, &subject, later, &mut w.rng),
        Err(TranscryptRefusal::Failed(TranscryptError::ConsentRefused(
            confiance_aggregator::decision::DecisionReason::Withdrawn
        )))
    );
    assert!(w.agg.ledger().unconsented_disclosures(Timestamp::EPOCH, Timestamp::MAX).is_empty());
}

/// A file-backed aggregator over `w`'s keys, with a replay filter of `filter_bytes`.
/// A database path in a fresh scratch directory `confiance-NAME-PID`, and the statistic
/// report device `seed` sends calora at `T0` with `value` (tests reseal it under ids of
/// their choosing).
fn scratch_statistic(w: &mut World, name: &str, seed: u64, value: Value) -> (std::path::PathBuf, Report) {
    let dir = std::env::temp_dir().join(format!("confiance-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let now = Timestamp::from_secs(T0);
    let mut d = device(w, seed, "calora");
    give(w, &mut d, "calora", "product-improvement", &["thermostat.mode"]);
    let _ = d.record(&id("thermostat.mode"), &id("product-improvement"), value, now);
    let frame = d.flush(now).remove(0);
    let opened = w.agg.keys().open(&frame, now, &catalogue().digest()).unwrap();
    let stat = envelope::decode_body::<Report>(&opened.plaintext, &Default::default())
        .map(|(_, r)| r)
        .unwrap()
        .into_iter()
        .find(|r| matches!(r.payload, Payload::Statistic(_)))
        .unwrap();
    (dir.join("agg.sqlite"), stat)
}

fn open_at(w: &World, db: &std::path::Path, filter_bytes: usize) -> Aggregator {
    let config = AggregatorConfig { replay_filter_bytes: filter_bytes, ..AggregatorConfig::default() };
    Aggregator::open(db, catalogue(), w.agg.keys().clone(), config).unwrap()
}

/// A report already held is acknowledged and not kept again.
fn replayed(r: Result<Ack, IngestError>) -> bool {
    matches!(r, Ok(a) if a.reports == 0 && a.refused.is_empty())
}

/// Reports `stage` kept from `frame` (0 for reports already held).
fn staged(agg: &mut Aggregator, frame: &[u8], now: Timestamp) -> u64 {
    let before = agg.staged_reports();
    agg.stage(frame, now).unwrap();
    agg.staged_reports() - before
}

/// The envelope was acknowledged with its one report refused for `refusal`.
fn is_refused(r: &Result<Ack, IngestError>, refusal: Refusal, retry: bool) -> bool {
    matches!(r, Ok(a) if a.reports == 0 && a.refused == [Refused { index: 0, refusal, retry }])
}

#[test]
fn replays_are_refused_across_restarts_until_purged_whatever_the_filter_says() {
    const DAY: u64 = 86_400;
    // 8 bytes: 64 bits, saturated after a few ids, so nearly every fresh id is a
    // "maybe" that only the store's answer lets through. 16 MiB: the default.
    for filter_bytes in [8, 16 << 20] {
        let mut w = world(11);
        let now = Timestamp::from_secs(T0);
        let (db, stat) = scratch_statistic(&mut w, &format!("replay-{filter_bytes}"), 70, Value::Category(2));
        let with_id = |n: u8, at: Timestamp| Report { id: ReportId([n; 16]), time: at, ..stat.clone() };
        let (day, t) = (now.truncate(DAY), stat.time);

        let mut agg = open_at(&w, &db, filter_bytes);
        // 60 fresh ids, staged and committed in two batches: none is refused, even when
        // the saturated tiny filter says "maybe" for each.
        for n in 0..60u8 {
            let f = seal(&mut w, &[with_id(n, t)], day);
            agg.stage(&f, now).unwrap_or_else(|e| panic!("fresh id {n} refused ({filter_bytes} B): {e}"));
            if n == 29 {
                agg.commit(now).unwrap();
            }
        }
        // Within one staged batch: the same id in another envelope, or twice in one.
        let again = seal(&mut w, &[with_id(59, t)], day);
        assert_eq!(staged(&mut agg, &again, now), 0);
        let twice = seal(&mut w, &[with_id(60, t), with_id(60, t)], day);
        assert_eq!(staged(&mut agg, &twice, now), 1, "kept once");
        let acks = agg.commit(now).unwrap();
        assert_eq!(acks.iter().map(|a| a.reports).collect::<Vec<_>>()[30..], [0, 1]);
        // After a restart the filter is rebuilt from the store: still replays.
        drop(agg);
        let mut agg = open_at(&w, &db, filter_bytes);
        for n in [0u8, 29, 30, 59] {
            let f = seal(&mut w, &[with_id(n, t)], day);
            assert!(replayed(agg.ingest(&f, now)), "id {n} after restart ({filter_bytes} B)");
        }
        // Past the purge boundary (bucket end + 14 days + 1 hour of skew) an id is
        // remembered until the purge runs, then forgotten: a report of a later bucket
        // may carry it again.
        let later = Timestamp::from_secs(T0 + 16 * DAY);
        let (later_day, later_t) = (later.truncate(DAY), later.truncate(DAY));
        let f = seal(&mut w, &[with_id(5, later_t)], later_day);
        assert!(replayed(agg.ingest(&f, later)), "not yet purged ({filter_bytes} B)");
        let purge = agg.purge(later).unwrap();
        // Ids 0..=59, and 60 (kept once from the envelope that carried it twice).
        assert_eq!(purge.ids_forgotten, 61);
        let f = seal(&mut w, &[with_id(5, later_t)], later_day);
        agg.ingest(&f, later).unwrap();
        // ... and is remembered again from then on, across a restart.
        drop(agg);
        let mut agg = open_at(&w, &db, filter_bytes);
        let f = seal(&mut w, &[with_id(5, later_t)], later_day);
        assert!(replayed(agg.ingest(&f, later)));
        drop(agg);
        let _ = std::fs::remove_dir_all(db.parent().unwrap());
    }
}

#[test]
fn ids_staged_before_a_purge_stay_replays_after_their_commit() {
    // Staged ids enter the replay filter when staged, not at commit. A purge that forgot
    // ids rebuilds the filter from the store, which does not hold the staged ids yet:
    // the rebuild must put them back, or once committed they would be "certainly
    // unseen" and their envelope and report accepted a second time.
    const DAY: u64 = 86_400;
    let mut w = world(13);
    let now = Timestamp::from_secs(T0);
    let (db, stat) = scratch_statistic(&mut w, "staged-purge", 72, Value::Category(3));
    let with_id = |n: u8, at: Timestamp| Report { id: ReportId([n; 16]), time: at, ..stat.clone() };
    let mut agg = open_at(&w, &db, 16 << 20);
    for n in 0..10u8 {
        let f = seal(&mut w, &[with_id(n, stat.time)], now.truncate(DAY));
        agg.stage(&f, now).unwrap();
    }
    agg.commit(now).unwrap();
    // 16 days later the ten ids are past their purge boundary. A fresh envelope is
    // staged, the purge runs (forgetting the ten, so the filter is rebuilt), then the
    // staged envelope commits.
    let later = Timestamp::from_secs(T0 + 16 * DAY);
    let fresh = seal(&mut w, &[with_id(100, later.truncate(DAY))], later.truncate(DAY));
    assert_eq!(staged(&mut agg, &fresh, later), 1);
    assert_eq!(agg.purge(later).unwrap().ids_forgotten, 10);
    assert_eq!(agg.commit(later).unwrap().len(), 1);
    // Both the envelope and its report id are known to the filter: a replay of the
    // envelope is refused, and the id in another envelope is held, not kept again.
    assert!(matches!(agg.stage(&fresh, later), Err(IngestError::ReplayedEnvelope(_))));
    let again = seal(&mut w, &[with_id(100, later.truncate(DAY))], later.truncate(DAY));
    assert!(replayed(agg.ingest(&again, later)));
    assert_eq!(agg.staged_reports(), 0);
    drop(agg);
    let _ = std::fs::remove_dir_all(db.parent().unwrap());
}

#[test]
fn a_failed_commit_forgets_what_it_staged_and_the_resend_is_kept() {
    // A commit hands the next batch the (emptied) id sets and lists of the one before.
    // A commit that fails must leave them empty too: the devices send again, and an id
    // or envelope key still in a staged set would refuse their resend as a replay.
    const DAY: u64 = 86_400;
    let mut w = world(14);
    let now = Timestamp::from_secs(T0);
    let (db, stat) = scratch_statistic(&mut w, "failed-commit", 73, Value::Category(4));
    let day = now.truncate(DAY);
    let frames: Vec<Vec<u8>> =
        (0..40u8).map(|n| seal(&mut w, &[Report { id: ReportId([n; 16]), ..stat.clone() }], day)).collect();
    let mut agg = open_at(&w, &db, 16 << 20);
    for f in &frames[..20] {
        agg.stage(f, now).unwrap();
    }
    assert_eq!(agg.commit(now).unwrap().len(), 20);
    // The second batch's commit fails in the store.
    let sql = |agg: &Aggregator, sql: &str| {
        agg.store().as_sqlite().expect("a SQLite store").connection().execute_batch(sql).unwrap();
    };
    sql(
        &agg,
        "CREATE TRIGGER fail_commit BEFORE INSERT ON seen_envelope BEGIN SELECT RAISE(FAIL, 'injected'); END;",
    );
    for f in &frames[20..] {
        agg.stage(f, now).unwrap();
    }
    assert!(matches!(agg.stage(&frames[20], now), Err(IngestError::ReplayedEnvelope(_))));
    assert!(agg.commit(now).is_err());
    assert_eq!((agg.staged_envelopes(), agg.staged_reports()), (0, 0));
    sql(&agg, "DROP TRIGGER fail_commit;");
    // The resend is kept, each envelope and report once; the first batch stays a replay.
    for (i, f) in frames[20..].iter().enumerate() {
        assert_eq!(staged(&mut agg, f, now), 1, "resent envelope {i}");
    }
    assert!(matches!(agg.stage(&frames[20], now), Err(IngestError::ReplayedEnvelope(_))));
    assert!(matches!(agg.stage(&frames[0], now), Err(IngestError::ReplayedEnvelope(_))));
    let acks = agg.commit(now).unwrap();
    assert_eq!(acks.iter().map(|a| a.reports).collect::<Vec<_>>(), [1; 20]);
    for f in &frames {
        assert!(matches!(agg.stage(f, now), Err(IngestError::ReplayedEnvelope(_))));
    }
    drop(agg);
    let _ = std::fs::remove_dir_all(db.parent().unwrap());
}

#[test]
fn replayed_envelopes_are_refused_from_the_filter_and_the_store_across_restarts() {
    // A fresh envelope no longer costs a store read: its digest is looked up in the
    // replay filter, which holds every staged and committed envelope (inserted when
    // staged, rebuilt from the store on open). 8 bytes: saturated, every envelope a "maybe" that the
    // store answers; 16 MiB: the default, where a miss skips the store.
    const DAY: u64 = 86_400;
    for filter_bytes in [8, 16 << 20] {
        let mut w = world(12);
        let dir =
            std::env::temp_dir().join(format!("confiance-env-replay-{filter_bytes}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let db = dir.join("agg.sqlite");
        let now = Timestamp::from_secs(T0);
        let mut d = device(&mut w, 71, "calora");
        give(&mut w, &mut d, "calora", "product-improvement", &["thermostat.mode"]);
        let _ = d.record(&id("thermostat.mode"), &id("product-improvement"), Value::Category(1), now);
        let frame = d.flush(now).remove(0);
        let opened = w.agg.keys().open(&frame, now, &catalogue().digest()).unwrap();
        let stat: Report = envelope::decode_body::<Report>(&opened.plaintext, &Default::default())
            .map(|(_, r)| r)
            .unwrap()
            .into_iter()
            .find(|r| matches!(r.payload, Payload::Statistic(_)))
            .unwrap();
        let day = now.truncate(DAY);
        let frames: Vec<Vec<u8>> = (0..40u8)
            .map(|n| seal(&mut w, &[Report { id: ReportId([n; 16]), ..stat.clone() }], day))
            .collect();
        let mut agg = open_at(&w, &db, filter_bytes);
        for f in &frames[..30] {
            agg.stage(f, now).unwrap();
        }
        // Staged, not committed: the same frame again is a replay.
        assert!(matches!(agg.stage(&frames[0], now), Err(IngestError::ReplayedEnvelope(_))));
        assert_eq!(agg.commit(now).unwrap().len(), 30);
        // Committed: every one of them is refused as a replay, none staged again.
        for (i, f) in frames[..30].iter().enumerate() {
            assert!(
                matches!(agg.stage(f, now), Err(IngestError::ReplayedEnvelope(_))),
                "envelope {i} after commit ({filter_bytes} B)"
            );
        }
        assert_eq!(agg.staged_reports(), 0);
        // After a restart the filter is rebuilt from the store's envelopes.
        drop(agg);
        let mut agg = open_at(&w, &db, filter_bytes);
        for (i, f) in frames[..30].iter().enumerate() {
            assert!(
                matches!(agg.stage(f, now), Err(IngestError::ReplayedEnvelope(_))),
                "envelope {i} after restart ({filter_bytes} B)"
            );
        }
        // Fresh envelopes still pass, whatever the filter says.
        for f in &frames[30..] {
            agg.stage(f, now).unwrap_or_else(|e| panic!("fresh envelope refused ({filter_bytes} B): {e}"));
        }
        assert_eq!(agg.commit(now).unwrap().len(), 10);
        assert!(agg.has_envelope(&confiance::envelope::EnvelopeId::of(&frames[39])).unwrap());
        drop(agg);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn stage_many_is_stage_in_order() {
    let mut w = world(12);
    let now = Timestamp::from_secs(T0);
    let day = now.truncate(86_400);
    let keys = w.agg.keys().clone();
    let mut one = Aggregator::in_memory(catalogue(), keys.clone(), AggregatorConfig::default()).unwrap();
    let mut many = Aggregator::in_memory(catalogue(), keys, AggregatorConfig::default()).unwrap();
    // Devices with statistics and records; both aggregators hold the same receipts.
    let mut frames: Vec<Vec<u8>> = Vec::new();
    let mut templates: Vec<Report> = Vec::new();
    for i in 0..40u64 {
        let mut d = device(&mut w, 500 + i, "calora");
        let t = Timestamp::from_secs(T0 - 10_000);
        for (purpose, metric) in
            [("product-improvement", "thermostat.mode"), ("service", "thermostat.fault-code")]
        {
            let bytes = d
                .give_consent(
                    ConsentRequest::new(
                        id("calora"),
                        id(purpose),
                        Scope::metrics([id::<MetricId>(metric)]),
                        "P90D".parse().unwrap(),
                    ),
                    t,
                )
                .unwrap();
            one.receive_receipt(&bytes, t).unwrap();
            many.receive_receipt(&bytes, t).unwrap();
        }
        let _ = d.record(
            &id("thermostat.mode"),
            &id("product-improvement"),
            Value::Category((i % 6) as u32),
            now,
        );
        let _ = d.record_service(&id("thermostat.fault-code"), Value::Int(i as i64), now);
        for f in d.flush(now) {
            let opened = w.agg.keys().open(&f, now, &catalogue().digest()).unwrap();
            templates.extend(
                envelope::decode_body::<Report>(&opened.plaintext, &Default::default())
                    .map(|(_, r)| r)
                    .unwrap(),
            );
            frames.push(f);
        }
    }
    // Some committed before: their envelopes and ids are replays in the mixed batch.
    for f in &frames[..10] {
        one.ingest(f, now).unwrap();
        many.ingest(f, now).unwrap();
    }
    let mut rng = SeededRng::seed_from_u64(77);
    let mut batch: Vec<(Vec<u8>, Timestamp)> = Vec::new();
    for i in 0..700usize {
        let t = &templates[i % templates.len()];
        let fresh = Report { id: ReportId::random(&mut rng), ..t.clone() };
        let frame = match i % 10 {
            // A resent committed envelope, and a resend of one from earlier in the batch.
            0 => frames[i % 10].clone(),
            1 if i > 300 => batch[i - 290].0.clone(),
            // A committed report id, or one staged earlier in this batch, in a new envelope.
            2 => seal(&mut w, &[templates[i % 10].clone()], day),
            3 if i > 300 => {
                let earlier = &batch[i - 297].0;
                let opened = w.agg.keys().open(earlier, now, &catalogue().digest());
                let reports = opened.ok().and_then(|o| {
                    envelope::decode_body::<Report>(&o.plaintext, &Default::default()).map(|(_, r)| r).ok()
                });
                match reports {
                    Some(rs) => seal(&mut w, &rs, day),
                    None => seal(&mut w, std::slice::from_ref(&fresh), day),
                }
            }
            // A report that is both a replay and misaligned: already held, not refused.
            4 => {
                seal(&mut w, &[Report { time: t.time.saturating_add_secs(60), ..templates[3].clone() }], day)
            }
            // A good report, then one of an unknown metric.
            5 => seal(
                &mut w,
                &[fresh.clone(), Report { metric: id("x.y"), id: ReportId::random(&mut rng), ..t.clone() }],
                day,
            ),
            6 => frames[i % frames.len()][..30].to_vec(),
            _ => seal(&mut w, &[fresh], day),
        };
        // Two receive times, one of them past the window of some reports.
        let at = if i % 13 == 0 { Timestamp::from_secs(T0 + 20 * 86_400) } else { now };
        batch.push((frame, at));
    }
    let mut singly = Vec::new();
    for (f, t) in &batch {
        singly.push(one.stage(f, *t));
    }
    let refs: Vec<(&[u8], Timestamp)> = batch.iter().map(|(f, t)| (f.as_slice(), *t)).collect();
    let together = many.stage_many(&refs);
    assert_eq!(together.len(), batch.len());
    let fmt = |r: &Result<(), IngestError>| format!("{r:?}");
    for (i, (a, b)) in singly.iter().zip(&together).enumerate() {
        assert_eq!(fmt(a), fmt(b), "frame {i}");
    }
    let codes: BTreeSet<&str> =
        singly.iter().filter_map(|r| r.as_ref().err().map(IngestError::code)).collect();
    for code in ["replayed_envelope", "malformed_envelope"] {
        assert!(codes.contains(code), "the batch exercises {code}: {codes:?}");
    }
    let accepted = singly.iter().filter(|r| r.is_ok()).count();
    assert!(accepted > 250, "{accepted} accepted");
    assert_eq!(one.staged_reports(), many.staged_reports());
    let acks = one.commit(now).unwrap();
    assert_eq!(acks, many.commit(now).unwrap());
    // Refused reports are answered per report, in the acknowledgements.
    let refused: BTreeSet<&str> =
        acks.iter().flat_map(|a| a.refused.iter().map(|r| r.refusal.code())).collect();
    for code in ["unknown_metric", "time_outside_window"] {
        assert!(refused.contains(code), "the batch exercises {code}: {refused:?}");
    }
    assert_eq!(one.partition_states(), many.partition_states());
    let records = |a: &Aggregator| {
        a.store()
            .as_sqlite()
            .expect("a SQLite store")
            .connection()
            .query_row("SELECT COUNT(*) FROM record", [], |r| r.get::<_, i64>(0))
            .unwrap()
    };
    assert_eq!(records(&one), records(&many));
    assert!(records(&one) > 10);
}

/// The example catalogue with `thermostat.fault-code` (a pseudonymous record) at another
/// time precision.
fn catalogue_with_precision(precision: &str) -> confiance::catalogue::Catalogue {
    let text = include_str!("../../examples/catalogue.toml");
    let at = text.find("[metrics.\"thermostat.fault-code\"]").unwrap();
    let (head, tail) = text.split_at(at);
    let tail = tail.replacen("time_precision = \"PT1H\"", &format!("time_precision = \"{precision}\""), 1);
    confiance::catalogue::Catalogue::from_toml_str(&format!("{head}{tail}")).unwrap()
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(128))]
    /// Issue #14, defect 1 (docs/catalogue.md, "Consent timing"): whatever the receipt's
    /// window (start, end, withdrawal), the instant of recording and the metric's bucket
    /// width, a record the device makes passes the aggregator's consent check at the
    /// record's stamp. Before, a record made on the day (or hour) consent was given was
    /// stamped before `valid_from` and refused as `NotYetValid`, with its whole envelope.
    #[test]
    fn device_consent_rule_implies_the_aggregators(
        width in 0usize..6,
        from in 0u64..3 * 86_400,
        until in proptest::option::of(1u64..3 * 86_400),
        withdraw in proptest::option::of(1u64..3 * 86_400),
        instants in proptest::collection::vec(0u64..6 * 86_400, 1..12),
        seed in 0u64..1_000,
    ) {
        let precision = ["PT1M", "PT7M", "PT1H", "PT6H", "P1D", "P7D"][width];
        let cat = catalogue_with_precision(precision);
        let mut rng = SeededRng::seed_from_u64(seed);
        let mut keys = KeyStore::new(0);
        let config = keys.generate(AeadId::ChaCha20Poly1305, Timestamp::EPOCH, Timestamp::MAX, &mut rng).unwrap();
        // A device following `cat` (the fixture's recorder follows the example catalogue).
        let mut parts_rng = SeededRng::seed_from_u64(seed);
        let parts = confiance::recorder::RecorderParts {
            catalogue: cat.clone(),
            consent: ConsentState::new(DeviceKey::generate(&mut parts_rng)),
            pseudonyms: confiance::pseudonym::DeviceSecret::generate(&mut parts_rng),
            controller: id("calora"),
            key_configs: vec![config],
            rng: parts_rng,
        };
        let mut d = Recorder::new(parts, MemoryStorage::default());
        let base = T0 - 86_400;
        let valid_from = Timestamp::from_secs(base + from);
        let valid_until = until.map(|u| valid_from.saturating_add_secs(u));
        let mut request = ConsentRequest::new(
            id("calora"),
            id("service"),
            Scope::metrics([id::<MetricId>("thermostat.fault-code")]),
            "P90D".parse().unwrap(),
        )
        .valid_from(valid_from);
        if let Some(u) = valid_until {
            request = request.valid_until(u);
        }
        let bytes = d.give_consent(request, Timestamp::from_secs(base)).unwrap();
        let mut ledger = confiance_aggregator::ledger::Ledger::in_memory(cat.clone()).unwrap();
        let receipt = ledger.ingest_receipt(&bytes, Timestamp::from_secs(base)).unwrap();
        let withdrawn_at = withdraw.map(|w| valid_from.saturating_add_secs(w));
        let mut instants = instants;
        instants.sort_unstable();
        let mut withdrawn = false;
        for i in instants {
            let now = Timestamp::from_secs(base + i);
            if let Some(w) = withdrawn_at && !withdrawn && w <= now {
                // (Refused by the device after the receipt's end: nothing to withdraw.)
                if let Ok(wd) = d.withdraw_consent(&receipt, w) {
                    ledger.ingest_withdrawal(&wd, w).unwrap();
                }
                withdrawn = true;
            }
            let _ = d.record_service(&id("thermostat.fault-code"), Value::Int(3), now);
            for frame in d.flush(now) {
                let opened = keys.open(&frame, now, &cat.digest()).unwrap();
                let (_, reports): (_, Vec<Report>) = envelope::decode_body(&opened.plaintext, &Default::default()).unwrap();
                for r in reports {
                    let decision = ledger.check_at(&id("calora"), &r.metric, &id("service"), &d.subject(), r.time, None);
                    proptest::prop_assert!(decision.allowed(), "{precision}: recorded at {now}, stamped {}: {decision:?}", r.time);
                }
                d.acknowledge(&frame);
            }
        }
    }
}

/// Issue #14, defect 2: one bad report refused its whole envelope, and nothing told the
/// device which refusals were final. Now each report is answered on its own — kept,
/// refused for good (with its code) or refused for now — and the recorder drops the
/// first (counted per metric and code, never sent again) and sends the second again,
/// later, in a new envelope.
#[test]
fn each_report_is_answered_on_its_own_and_the_device_acts_on_the_answer() {
    let mut w = world(13);
    let now = Timestamp::from_secs(T0);
    let mut d = device(&mut w, 80, "calora");
    give(&mut w, &mut d, "calora", "product-improvement", &["thermostat.mode"]);
    let fault: MetricId = id("thermostat.fault-code");
    // Receipt a reaches the aggregator; receipt b not yet (they travel separately).
    let a = give(&mut w, &mut d, "calora", "service", &["thermostat.fault-code"]);
    let t = Timestamp::from_secs(T0 - 10_000);
    let b_bytes = d
        .give_consent(
            ConsentRequest::new(
                id("calora"),
                id("service"),
                Scope::metrics([fault.clone()]),
                "P90D".parse().unwrap(),
            ),
            t,
        )
        .unwrap();
    let _ = d.record(&id("thermostat.mode"), &id("product-improvement"), Value::Category(1), now);
    let _ = d.record_service(&fault, Value::Int(3), now); // one record under a, one under b
    // a is withdrawn from before the records' time: the ledger refuses that record for good.
    let wd = d.withdraw_consent(&a, Timestamp::from_secs(T0 - 3_600)).unwrap();
    w.agg.receive_withdrawal(&wd, now).unwrap();
    // The statistic travels in an envelope of its own (an envelope carries one track).
    let mut frames = d.flush(now);
    assert_eq!(frames.len(), 2);
    let frame = frames.remove(1);
    let stat = w.agg.ingest(&frames[0], now).unwrap();
    assert_eq!((stat.reports, stat.refused.len()), (1, 0), "the statistic is kept: {stat:?}");
    d.acknowledge_refused(&frames[0], &stat.refused, now);
    let opened = w.agg.keys().open(&frame, now, &catalogue().digest()).unwrap();
    let (_, reports): (_, Vec<Report>) =
        envelope::decode_body(&opened.plaintext, &Default::default()).unwrap();
    assert_eq!(reports.len(), 2);
    let index = |receipt| reports.iter().position(|r| r.tag.receipt() == Some(&receipt)).unwrap() as u32;
    let b = confiance::consent::SignedReceipt::from_bytes(&b_bytes).unwrap().id();

    let ack = w.agg.ingest(&frame, now).unwrap();
    assert_eq!(ack.reports, 0, "both records refused: {ack:?}");
    let mut refused = ack.refused.clone();
    refused.sort_by_key(|r| r.index);
    let mut want = vec![
        Refused { index: index(a), refusal: Refusal::NotConsented, retry: false },
        Refused { index: index(b), refusal: Refusal::UnknownReceipt, retry: true },
    ];
    want.sort_by_key(|r| r.index);
    assert_eq!(refused, want);
    d.acknowledge_refused(&frame, &ack.refused, now);
    assert_eq!(d.pending_envelopes(), 0);
    assert_eq!(d.refusals().collect::<Vec<_>>(), [(&fault, Refusal::NotConsented, 1)]);
    assert_eq!((d.retrying(), d.counters().refused, d.counters().retried), (1, 1, 1));
    // Backoff: nothing goes out before an hour.
    assert!(d.flush(now.saturating_add_secs(3_599)).is_empty());

    // The answer was lost and the frame comes again: it stayed open (a retryable
    // refusal), so it is processed again.
    let again = w.agg.ingest(&frame, now).unwrap();
    assert_eq!((again.reports, again.refused.len()), (0, 2));

    // Receipt b arrives; an hour later the device sends the record again, alone, in a
    // new envelope, and it is kept. The record refused for good is never sent again.
    w.agg.receive_receipt(&b_bytes, now).unwrap();
    let later = now.saturating_add_secs(3_600);
    let frames = d.flush(later);
    assert_eq!(frames.len(), 1);
    assert_ne!(frames[0], frame);
    let opened = w.agg.keys().open(&frames[0], later, &catalogue().digest()).unwrap();
    // The body is the envelope's tokens (none here), then the batch.
    let (spent, resent) = envelope::decode_body::<Report>(&opened.plaintext, &Default::default()).unwrap();
    assert!(spent.is_empty());
    assert_eq!(resent, [reports[index(b) as usize].clone()], "the same report, same id");
    let ack = w.agg.ingest(&frames[0], later).unwrap();
    assert_eq!((ack.reports, ack.refused.len()), (1, 0));
    d.acknowledge_refused(&frames[0], &ack.refused, later);
    assert_eq!((d.retrying(), d.pending_envelopes()), (0, 0));
    assert!(d.flush(later.saturating_add_secs(7 * 86_400)).is_empty());
    // One record (b's) held, under its receipt.
    let held = w
        .agg
        .store()
        .as_sqlite()
        .expect("a SQLite store")
        .connection()
        .query_row("SELECT COUNT(*) FROM record", [], |r| r.get::<_, i64>(0))
        .unwrap();
    assert_eq!(held, 1);
}
