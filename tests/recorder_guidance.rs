//! The device API guides its user: consent requests are checked against the catalogue
//! before they are signed, every mistake is counted per metric and cause, and strict mode
//! returns each one as a typed error.

use confiance::Timestamp;
use confiance::catalogue::Catalogue;
use confiance::consent::{ConsentError, ConsentRequest, ConsentState, DeviceKey, Grant, Scope};
use confiance::envelope::{AeadId, KeyConfig, KeyId, SecretKey};
use confiance::hazmat::{SeedableRng as _, SeededRng};
use confiance::ids::{MetricId, PurposeId, RecipientId};
use confiance::pseudonym::DeviceSecret;
use confiance::recorder::{
    Cause, MAX_ERROR_COUNTERS, MemoryStorage, NoConsentReason, NullStorage, RecordError, Recorder,
    RecorderParts, Storage, Value, ValueKind,
};

/// 2027-01-15T08:00:00Z, the start of an hour and of a day.
const NOW: u64 = 1_800_000_000;

fn id<T: std::str::FromStr>(s: &str) -> T
where
    T::Err: std::fmt::Debug,
{
    s.parse().unwrap()
}

fn catalogue() -> Catalogue {
    Catalogue::from_toml_str(include_str!("../examples/catalogue.toml")).unwrap()
}

fn recorder_with<S: Storage>(catalogue: Catalogue, storage: S) -> Recorder<SeededRng, S> {
    let mut rng = SeededRng::seed_from_u64(17);
    let server = SecretKey::derive(b"guidance test aggregator");
    let config = KeyConfig::new(
        KeyId(1),
        AeadId::ChaCha20Poly1305,
        server.public_key(),
        Timestamp::EPOCH,
        Timestamp::MAX,
    )
    .unwrap();
    let parts = RecorderParts {
        catalogue,
        consent: ConsentState::new(DeviceKey::from_bytes(&[17; 32])),
        pseudonyms: DeviceSecret::generate(&mut rng),
        controller: id("calora"),
        key_configs: vec![config],
        rng,
    };
    Recorder::new(parts, storage)
}

fn request(recipient: &str, purpose: &str, metrics: &[&str], hold: &str) -> ConsentRequest {
    ConsentRequest::new(
        id(recipient),
        id(purpose),
        Scope::metrics(metrics.iter().map(|m| id::<MetricId>(m))),
        id(hold),
    )
}

fn at(secs: u64) -> Timestamp {
    Timestamp::from_secs(secs)
}

#[test]
fn strict_mode_returns_each_error_and_counts_nothing() {
    let mut r = recorder_with(catalogue(), MemoryStorage::default());
    r.set_strict(true);
    assert!(r.is_strict());
    let now = at(NOW);
    let (improvement, research) = (id::<PurposeId>("product-improvement"), id::<PurposeId>("research"));
    let (mode, setpoint, fault) = (
        id::<MetricId>("thermostat.mode"),
        id::<MetricId>("thermostat.setpoint"),
        id::<MetricId>("thermostat.fault-code"),
    );
    let day_before = at(NOW - 86_400);
    r.give_consent(request("calora", "product-improvement", &["thermostat.mode"], "P90D"), day_before)
        .unwrap();

    let typo = id::<MetricId>("thermostat.mdoe");
    assert_eq!(r.record(&typo, &improvement, Value::Category(1), now), Err(RecordError::UnknownMetric(typo)));
    assert_eq!(
        r.record(&fault, &improvement, Value::Int(1), now),
        Err(RecordError::WrongTrack(fault.clone()))
    );
    assert_eq!(r.record_service(&mode, Value::Category(1), now), Err(RecordError::WrongTrack(mode.clone())));
    assert_eq!(
        r.record(&mode, &improvement, Value::Bool(true), now),
        Err(RecordError::WrongValue { metric: mode.clone(), expected: ValueKind::Category })
    );
    assert_eq!(
        r.record(&mode, &improvement, Value::Category(6), now),
        Err(RecordError::LabelOutOfRange { metric: mode.clone(), index: 6, labels: 6 })
    );
    assert_eq!(
        r.record(&setpoint, &improvement, Value::Int(400), now),
        Err(RecordError::OutOfRange { metric: setpoint.clone(), value: 400, min: 50, max: 300 })
    );
    assert_eq!(
        r.record(&mode, &research, Value::Category(1), now),
        Err(RecordError::PurposeNotAllowed { metric: mode.clone(), purpose: research.clone() })
    );
    assert_eq!(
        r.record(&setpoint, &improvement, Value::Int(200), now),
        Err(RecordError::NoConsent { metric: setpoint.clone(), reason: NoConsentReason::NotGiven })
    );
    assert_eq!(
        r.record_service(&fault, Value::Int(3), now),
        Err(RecordError::NoConsent { metric: fault.clone(), reason: NoConsentReason::NotGiven })
    );
    // The budget of `thermostat.mode` is ε = 8 a day at ε = 1 a report: the ninth is refused.
    for i in 0..8 {
        r.record(&mode, &improvement, Value::Category(i % 6), now).unwrap();
    }
    assert_eq!(
        r.record(&mode, &improvement, Value::Category(1), now),
        Err(RecordError::BudgetExhausted(mode.clone()))
    );
    // Nothing of the above was counted or queued: only the eight good reports.
    assert_eq!(r.errors().count(), 0);
    let c = r.counters();
    assert_eq!(
        (c.recorded, c.unknown_metric, c.invalid_value, c.no_consent, c.budget_exhausted),
        (8, 0, 0, 0, 0)
    );
    assert_eq!(r.queued(), 8);

    // The reasons for no consent.
    let withdrawn =
        r.give_consent(request("gridco", "grid-balancing", &["thermostat.setpoint"], "P90D"), day_before);
    let withdrawn = confiance::consent::SignedReceipt::from_bytes(&withdrawn.unwrap()).unwrap().id();
    r.withdraw_consent(&withdrawn, at(NOW - 3_600)).unwrap();
    let grid = id::<PurposeId>("grid-balancing");
    assert_eq!(
        r.record(&setpoint, &grid, Value::Int(200), now),
        Err(RecordError::NoConsent { metric: setpoint.clone(), reason: NoConsentReason::Ended })
    );
    let later = request("lab-eu", "research", &["thermostat.setpoint"], "P90D").valid_from(at(NOW + 86_400));
    r.give_consent(later, now).unwrap();
    assert_eq!(
        r.record(&setpoint, &research, Value::Int(200), now),
        Err(RecordError::NoConsent { metric: setpoint.clone(), reason: NoConsentReason::NotYetInForce })
    );
    // Half past: the service record's hourly bucket started at NOW. Consent given now is
    // in force now but not at the bucket's start, which the aggregator checks.
    let half_past = at(NOW + 1_800);
    r.give_consent(request("calora", "service", &["thermostat.fault-code"], "P90D"), half_past).unwrap();
    assert_eq!(
        r.record_service(&fault, Value::Int(3), half_past),
        Err(RecordError::NoConsent { metric: fault.clone(), reason: NoConsentReason::StartedThisBucket })
    );
    r.record_service(&fault, Value::Int(3), at(NOW + 3_600)).unwrap();

    // A budgeted metric on a storage that keeps nothing: its charge cannot be kept.
    let mut null = recorder_with(catalogue(), NullStorage);
    null.set_strict(true);
    null.give_consent(request("calora", "product-improvement", &["thermostat.mode"], "P90D"), day_before)
        .unwrap();
    assert_eq!(
        null.record(&mode, &improvement, Value::Category(1), now),
        Err(RecordError::BudgetUnsaved(mode))
    );
    assert_eq!(null.counters().budget_unsaved, 0);
}

#[test]
fn errors_are_counted_per_metric_and_cause_and_survive_a_restart() {
    let mut storage = MemoryStorage::default();
    let now = at(NOW);
    let (improvement, research) = (id::<PurposeId>("product-improvement"), id::<PurposeId>("research"));
    let (mode, setpoint, fault) = (
        id::<MetricId>("thermostat.mode"),
        id::<MetricId>("thermostat.setpoint"),
        id::<MetricId>("thermostat.fault-code"),
    );
    let typo = id::<MetricId>("thermostat.mdoe");
    {
        let mut r = recorder_with(catalogue(), &mut storage);
        assert!(!r.is_strict(), "lenient by default");
        r.give_consent(
            request("calora", "product-improvement", &["thermostat.mode"], "P90D"),
            at(NOW - 86_400),
        )
        .unwrap();
        for _ in 0..3 {
            assert_eq!(r.record(&typo, &improvement, Value::Category(1), now), Ok(()));
        }
        r.record(&fault, &improvement, Value::Int(1), now).unwrap();
        r.record(&mode, &improvement, Value::Bool(true), now).unwrap();
        r.record(&mode, &improvement, Value::Category(9), now).unwrap();
        r.record(&mode, &improvement, Value::Category(9), now).unwrap();
        r.record(&setpoint, &improvement, Value::Int(-1), now).unwrap();
        r.record(&setpoint, &improvement, Value::Int(200), now).unwrap();
        r.record(&mode, &research, Value::Category(1), now).unwrap();
        r.record_service(&fault, Value::Int(1), now).unwrap();
        for i in 0..10 {
            r.record(&mode, &improvement, Value::Category(i % 6), now).unwrap();
        }
        let expected = vec![
            (&mode, Cause::WrongValue, 1),
            (&mode, Cause::LabelOutOfRange, 2),
            (&mode, Cause::PurposeNotAllowed, 1),
            (&mode, Cause::BudgetExhausted, 2),
            (&typo, Cause::UnknownMetric, 3),
            (&fault, Cause::WrongTrack, 1),
            (&fault, Cause::NoConsent(NoConsentReason::NotGiven), 1),
            (&setpoint, Cause::OutOfRange, 1),
            (&setpoint, Cause::NoConsent(NoConsentReason::NotGiven), 1),
        ];
        let mut got: Vec<_> = r.errors().collect();
        let mut want = expected.clone();
        got.sort();
        want.sort();
        assert_eq!(got, want);
        // The global counters still add up: 4 unknown or wrong-track, 4 invalid values,
        // 3 without consent (one of them the wrong purpose), 2 over budget.
        let c = r.counters();
        assert_eq!((c.unknown_metric, c.invalid_value, c.no_consent, c.budget_exhausted), (4, 4, 3, 2));
        assert_eq!(c.recorded, 8);
        r.persist();
    }
    // A restart keeps them (they ride after the saved state).
    let r = recorder_with(catalogue(), &mut storage);
    assert_eq!(r.errors().map(|(_, _, n)| n).sum::<u32>(), 13);
    assert!(r.errors().any(|(m, c, n)| *m == typo && c == Cause::UnknownMetric && n == 3));
    assert_eq!(r.counters().storage_failed, 0);
}

#[test]
fn error_counters_are_bounded() {
    let mut r = recorder_with(catalogue(), MemoryStorage::default());
    let improvement = id::<PurposeId>("product-improvement");
    for i in 0..100 {
        let typo = id::<MetricId>(&format!("typo.{i}"));
        r.record(&typo, &improvement, Value::Bool(true), at(NOW)).unwrap();
    }
    assert_eq!(r.errors().count(), MAX_ERROR_COUNTERS);
    assert_eq!(r.counters().unknown_metric, 100, "the global counter counts every one");
}

#[test]
fn the_consent_request_refuses_an_over_long_hold_and_changes_nothing() {
    let mut r = recorder_with(catalogue(), MemoryStorage::default());
    let now = at(NOW);
    let mode = id::<MetricId>("thermostat.mode");
    // `thermostat.mode` is held at most P1Y, under purpose and catalogue limits of P2Y
    // and P5Y.
    for hold in ["P5Y", "P2Y", "P13M", "P366D", "P1Y1D"] {
        assert_eq!(
            r.give_consent(request("calora", "product-improvement", &["thermostat.mode"], hold), now),
            Err(ConsentError::HoldTooLong { metric: mode.clone(), max: id("P1Y") }),
            "{hold}"
        );
    }
    assert_eq!(r.consent().list().count(), 0, "nothing signed, nothing kept");
    // A hold until an instant: within a year of the start, or not.
    let until = |secs: u64| format!("until:{}", at(secs).to_rfc3339());
    let too_late = request("calora", "product-improvement", &["thermostat.mode"], &until(NOW + 400 * 86_400));
    assert!(matches!(r.give_consent(too_late, now), Err(ConsentError::HoldTooLong { .. })));
    // A category scope is held to the shortest maximum among the metrics it covers:
    // `energy` for gridco and grid balancing covers heating minutes (P6M) and more.
    let energy =
        ConsentRequest::new(id("gridco"), id("grid-balancing"), Scope::categories([id("energy")]), id("P1Y"));
    assert!(matches!(
        r.give_consent(energy, now),
        Err(ConsentError::HoldTooLong { metric, .. }) if metric.as_str() == "thermostat.heating-minutes"
    ));
    // The lower-level consent state checks the same.
    let mut state = ConsentState::new(DeviceKey::from_bytes(&[3; 32]));
    let grant = Grant {
        recipient: id("calora"),
        purpose: id("product-improvement"),
        scope: Scope::metrics([mode.clone()]),
        valid_from: now,
        valid_until: None,
        hold: id("P5Y"),
    };
    let mut rng = SeededRng::seed_from_u64(3);
    assert!(matches!(state.give(&catalogue(), grant, now, &mut rng), Err(ConsentError::HoldTooLong { .. })));
    // Holds within the maximum are signed: a year (as months too), less, until an
    // instant within it, until an event (then the maximum still bounds it).
    let holds = [
        "P1Y".to_owned(),
        "P12M".to_owned(),
        "P90D".to_owned(),
        until(NOW + 300 * 86_400),
        "event:contract-end".to_owned(),
    ];
    for hold in &holds {
        r.give_consent(request("calora", "product-improvement", &["thermostat.mode"], hold), now)
            .unwrap_or_else(|e| panic!("{hold}: {e}"));
    }
    assert_eq!(r.consent().list().count(), 5);
}

#[test]
fn valid_from_defaults_to_the_instant_given_and_instants_are_named() {
    let mut r = recorder_with(catalogue(), MemoryStorage::default());
    let now = at(NOW);
    let end = at(NOW + 30 * 86_400);
    let bytes = r
        .give_consent(
            request("calora", "product-improvement", &["thermostat.mode"], "P90D").valid_until(end),
            now,
        )
        .unwrap();
    let receipt = confiance::consent::SignedReceipt::from_bytes(&bytes).unwrap();
    let terms = receipt.receipt();
    assert_eq!((terms.valid_from, terms.valid_until, terms.issued_at), (now, Some(end), now));
    let start = at(NOW + 86_400);
    let bytes = r
        .give_consent(
            request("calora", "product-improvement", &["thermostat.mode"], "P90D").valid_from(start),
            now,
        )
        .unwrap();
    let receipt = confiance::consent::SignedReceipt::from_bytes(&bytes).unwrap();
    assert_eq!((receipt.receipt().valid_from, receipt.receipt().issued_at), (start, now));
    // An end before the start is refused.
    let inverted =
        request("calora", "product-improvement", &["thermostat.mode"], "P90D").valid_until(at(NOW - 1));
    assert_eq!(r.give_consent(inverted, now), Err(ConsentError::InvertedValidity));
}

#[test]
fn a_purpose_that_rests_on_no_consent_needs_none() {
    // The example catalogue's contract purpose (`service`) serves pseudonymous records
    // only; here an anonymous statistic serves it.
    let toml = include_str!("../examples/catalogue.toml").replace(
        "purposes = [\"product-improvement\", \"grid-balancing\"]\nrecipients = [\"voltis\", \"gridco\"]",
        "purposes = [\"product-improvement\", \"grid-balancing\", \"service\"]\nrecipients = [\"voltis\", \"gridco\"]",
    );
    let catalogue = Catalogue::from_toml_str(&toml).unwrap();
    let kwh = id::<MetricId>("car.charging-kwh");
    assert!(catalogue.metric(&kwh).unwrap().purposes.contains(&id::<PurposeId>("service")));
    let mut r = recorder_with(catalogue, MemoryStorage::default());
    r.set_strict(true);
    r.record(&kwh, &id("service"), Value::Int(42), at(NOW)).unwrap();
    assert_eq!(
        r.record(&kwh, &id("product-improvement"), Value::Int(42), at(NOW)),
        Err(RecordError::NoConsent { metric: kwh, reason: NoConsentReason::NotGiven }),
        "a purpose resting on consent still needs it"
    );
    let frames = r.flush(at(NOW));
    assert_eq!(frames.len(), 1);
    let audience: Vec<RecipientId> = r.sent_log().next().unwrap().audience.clone();
    assert_eq!(audience, [id::<RecipientId>("gridco"), id("voltis")], "every recipient the catalogue allows");
}

#[test]
fn record_errors_say_what_to_fix() {
    let e = RecordError::LabelOutOfRange { metric: id("thermostat.mode"), index: 6, labels: 6 };
    assert_eq!(e.to_string(), "metric `thermostat.mode` has 6 labels; index 6 is past the last");
    let e = RecordError::NoConsent { metric: id("thermostat.mode"), reason: NoConsentReason::Ended };
    assert_eq!(
        e.to_string(),
        "no consent in force for metric `thermostat.mode`: consent was withdrawn or has expired"
    );
    assert_eq!(e.cause(), Cause::NoConsent(NoConsentReason::Ended));
    assert_eq!(e.metric().as_str(), "thermostat.mode");
}
