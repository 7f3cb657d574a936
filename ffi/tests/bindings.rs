//! The UniFFI face (`confiance_ffi::bindings`) called as the foreign languages call it:
//! arbitrary sequences of calls with arbitrary ids, values, instants and bytes never
//! panic (a panic would reach Kotlin, Swift or Python as an internal error), and a
//! storage that fails is counted, never raised.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use confiance::Timestamp;
use confiance::catalogue::Catalogue;
use confiance::envelope::{AeadId, KeyConfig, KeyId, SecretKey};
use confiance_ffi::bindings::{
    ConfianceError, ConsentRequest, HostStorage, LimitsPreset, Recorder, Value, random_secret, receipt_id,
    revoke_device, subject_id_of_key,
};
use proptest::prelude::*;

fn catalogue_bytes() -> Vec<u8> {
    Catalogue::from_toml_str(include_str!("../../examples/catalogue.toml")).unwrap().canonical_bytes()
}

fn key_config() -> Vec<u8> {
    let server = SecretKey::derive(b"ffi test aggregator");
    KeyConfig::new(KeyId(1), AeadId::ChaCha20Poly1305, server.public_key(), Timestamp::EPOCH, Timestamp::MAX)
        .unwrap()
        .to_bytes()
        .to_vec()
}

/// Keeps the state in memory, or fails every call.
#[derive(Clone, Default)]
struct Memory {
    state: Arc<Mutex<Option<Vec<u8>>>>,
    broken: bool,
}

impl HostStorage for Memory {
    fn load(&self) -> Result<Option<Vec<u8>>, ConfianceError> {
        if self.broken {
            return Err(ConfianceError::StorageFailed { detail: "broken".into() });
        }
        Ok(self.state.lock().unwrap().clone())
    }

    fn save(&self, bytes: Vec<u8>) -> Result<(), ConfianceError> {
        if self.broken {
            return Err(ConfianceError::StorageFailed { detail: "broken".into() });
        }
        *self.state.lock().unwrap() = Some(bytes);
        Ok(())
    }
}

fn recorder(storage: Memory) -> Arc<Recorder> {
    Recorder::new(
        catalogue_bytes(),
        random_secret(),
        random_secret(),
        "calora".into(),
        Some(key_config()),
        LimitsPreset::Microcontroller,
        Box::new(storage),
    )
    .unwrap()
}

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

const START: u64 = 1_800_000_000;

#[test]
fn strict_errors_are_typed_and_change_nothing() {
    let r = recorder(Memory::default());
    r.set_strict(true);
    let request = |hold: &str| ConsentRequest {
        recipient: "calora".into(),
        purpose: "product-improvement".into(),
        metrics: vec!["thermostat.mode".into()],
        hold: hold.into(),
        valid_from: None,
        valid_until: None,
    };
    assert!(matches!(r.give_consent(request("P5Y"), at(START)), Err(ConfianceError::HoldTooLong { .. })));
    let receipt = r.give_consent(request("P90D"), at(START)).unwrap();
    let before = r.counters();
    let rec = |m: &str, p: &str, v| r.record(m.into(), p.into(), v, at(START));
    assert!(matches!(
        rec("thermostat.mood", "product-improvement", Value::Category { index: 1 }),
        Err(ConfianceError::UnknownMetric { .. })
    ));
    assert!(matches!(
        rec("thermostat.mode", "product-improvement", Value::Bool { value: true }),
        Err(ConfianceError::WrongValue { .. })
    ));
    assert!(matches!(
        rec("thermostat.mode", "product-improvement", Value::Category { index: 6 }),
        Err(ConfianceError::LabelOutOfRange { .. })
    ));
    assert!(matches!(
        r.record_service("thermostat.mode".into(), Value::Category { index: 1 }, at(START)),
        Err(ConfianceError::WrongTrack { .. })
    ));
    assert_eq!(r.counters(), before);
    rec("thermostat.mode", "product-improvement", Value::Category { index: 1 }).unwrap();
    let frames = r.flush(at(START + 60)).unwrap();
    assert_eq!(frames.len(), 1);
    // An envelope the outbox does not hold is no failure: `false`, and nothing changes.
    assert!(!r.acknowledge(b"no such envelope".to_vec()));
    assert_eq!(r.pending_envelopes(), 1);
    assert!(r.acknowledge(frames[0].clone()));
    assert!(!r.acknowledge(frames[0].clone()), "acknowledged twice, after a retried upload");
    assert_eq!(r.pending_envelopes(), 0);
    let id = receipt_id(receipt).unwrap();
    r.withdraw_consent(id.clone(), at(START + 120)).unwrap();
    assert!(matches!(r.withdraw_consent(id, at(START + 180)), Err(ConfianceError::UnknownReceipt { .. })));
}

/// Consent (90-day hold) to `thermostat.setpoint` for product improvement, and one
/// reading of it, at `START`.
fn consent_and_record_a_setpoint(r: &Recorder) {
    let request = ConsentRequest {
        recipient: "calora".into(),
        purpose: "product-improvement".into(),
        metrics: vec!["thermostat.setpoint".into()],
        hold: "P90D".into(),
        valid_from: None,
        valid_until: None,
    };
    r.give_consent(request, at(START)).unwrap();
    r.record(
        "thermostat.setpoint".into(),
        "product-improvement".into(),
        Value::Int { value: 200 },
        at(START),
    )
    .unwrap();
}

#[test]
fn a_failing_storage_is_counted_not_raised() {
    let r = recorder(Memory { broken: true, ..Memory::default() });
    consent_and_record_a_setpoint(&r);
    let c = r.counters();
    assert_eq!(c.recorded, 1);
    assert!(c.storage_failed >= 2, "{c:?}");
}

#[derive(Clone, Debug)]
enum Call {
    Record(String, String, Value, u64),
    Service(String, Value, u64),
    Consent(String, String, Vec<String>, String, Option<u64>, Option<u64>, u64),
    Withdraw(Vec<u8>, u64),
    WithdrawLast(u64),
    Flush(u64),
    Acknowledge(Vec<u8>),
    AcknowledgeFirst,
    KeyConfig(Vec<u8>),
    Strict(bool),
    Counters,
    RequireTokens(bool),
    TokensToFetch(u64, u64),
    /// A token request for the `usize`-th scope planned last (or for the bytes), with a
    /// key (`None`: a valid one) and a count.
    TokenRequest(Result<usize, Vec<u8>>, Option<Vec<u8>>, u32),
    TakeTokenResponse(Vec<u8>),
    Forget(Result<usize, Vec<u8>>),
    Held(Result<usize, Vec<u8>>),
    Enrollment(u64, Option<u64>, u64),
    SubjectId,
    /// The owner's calls, which take no recorder: a revocation (subject key, device
    /// public key, at, now) and a subject id of a key.
    Revoke(Vec<u8>, Vec<u8>, u64, u64),
    SubjectIdOfKey(Vec<u8>),
}

/// A key: 32 arbitrary bytes, or a wrong length.
fn key_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![proptest::collection::vec(any::<u8>(), 32), proptest::collection::vec(any::<u8>(), 0..40)]
}

/// A planned scope (by its index in the last plan) or arbitrary bytes.
fn scope() -> impl Strategy<Value = Result<usize, Vec<u8>>> {
    prop_oneof![(0usize..3).prop_map(Ok), proptest::collection::vec(any::<u8>(), 0..48).prop_map(Err)]
}

fn id() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("thermostat.mode".to_owned()),
        Just("thermostat.fault-code".to_owned()),
        Just("thermostat.setpoint".to_owned()),
        Just("product-improvement".to_owned()),
        Just("service".to_owned()),
        Just("calora".to_owned()),
        ".{0,12}",
    ]
}

fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<bool>().prop_map(|value| Value::Bool { value }),
        (0u32..10).prop_map(|index| Value::Category { index }),
        any::<u32>().prop_map(|index| Value::Category { index }),
        any::<i64>().prop_map(|value| Value::Int { value }),
    ]
}

fn instant() -> impl Strategy<Value = u64> {
    prop_oneof![START..START + 10 * 86_400, any::<u64>().prop_map(|s| s % (1 << 40))]
}

fn call() -> impl Strategy<Value = Call> {
    prop_oneof![
        (id(), id(), value(), instant()).prop_map(|(m, p, v, t)| Call::Record(m, p, v, t)),
        (id(), value(), instant()).prop_map(|(m, v, t)| Call::Service(m, v, t)),
        (
            id(),
            id(),
            proptest::collection::vec(id(), 0..3),
            prop_oneof![Just("P90D".to_owned()), Just("P5Y".to_owned()), ".{0,8}"],
            proptest::option::of(instant()),
            proptest::option::of(instant()),
            instant()
        )
            .prop_map(|(r, p, m, h, f, u, t)| Call::Consent(r, p, m, h, f, u, t)),
        (proptest::collection::vec(any::<u8>(), 0..40), instant()).prop_map(|(b, t)| Call::Withdraw(b, t)),
        instant().prop_map(Call::WithdrawLast),
        instant().prop_map(Call::Flush),
        proptest::collection::vec(any::<u8>(), 0..64).prop_map(Call::Acknowledge),
        Just(Call::AcknowledgeFirst),
        proptest::collection::vec(any::<u8>(), 0..64).prop_map(Call::KeyConfig),
        any::<bool>().prop_map(Call::Strict),
        Just(Call::Counters),
        any::<bool>().prop_map(Call::RequireTokens),
        (instant(), prop_oneof![Just(21_600u64), any::<u64>()]).prop_map(|(t, e)| Call::TokensToFetch(t, e)),
        (
            scope(),
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..70)),
            prop_oneof![1u32..8, any::<u32>()]
        )
            .prop_map(|(s, k, n)| Call::TokenRequest(s, k, n)),
        proptest::collection::vec(any::<u8>(), 0..200).prop_map(Call::TakeTokenResponse),
        scope().prop_map(Call::Forget),
        scope().prop_map(Call::Held),
        (instant(), proptest::option::of(instant()), instant())
            .prop_map(|(f, u, t)| Call::Enrollment(f, u, t)),
        Just(Call::SubjectId),
        (key_bytes(), key_bytes(), instant(), instant()).prop_map(|(s, d, a, t)| Call::Revoke(s, d, a, t)),
        key_bytes().prop_map(Call::SubjectIdOfKey),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Every call returns (a value or a typed error); none panics.
    #[test]
    fn arbitrary_calls_never_panic(calls in proptest::collection::vec(call(), 1..40), broken in any::<bool>()) {
        let r = recorder(Memory { broken, ..Memory::default() });
        let mut receipts = Vec::new();
        let mut frames = Vec::new();
        let mut plan: Vec<Vec<u8>> = Vec::new();
        // A valid scope key (the issuer's is not needed: a response is arbitrary bytes here).
        let (_, key) = confiance::token::voprf::derive_key_pair(&[3; 32], b"bindings").unwrap();
        let scope_of = |plan: &[Vec<u8>], s: Result<usize, Vec<u8>>| match s {
            Ok(i) => plan.get(i).cloned().unwrap_or_default(),
            Err(b) => b,
        };
        for c in calls {
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match c {
                Call::Record(m, p, v, t) => drop(r.record(m, p, v, at(t))),
                Call::Service(m, v, t) => drop(r.record_service(m, v, at(t))),
                Call::Consent(rc, p, metrics, hold, from, until, t) => {
                    let request = ConsentRequest {
                        recipient: rc, purpose: p, metrics, hold,
                        valid_from: from.map(at), valid_until: until.map(at),
                    };
                    if let Ok(receipt) = r.give_consent(request, at(t)) {
                        receipts.push(receipt);
                    }
                }
                Call::Withdraw(b, t) => drop(r.withdraw_consent(b, at(t))),
                Call::WithdrawLast(t) => {
                    if let Some(receipt) = receipts.last() {
                        drop(r.withdraw_consent(receipt_id(receipt.clone()).unwrap(), at(t)));
                    }
                }
                Call::Flush(t) => frames = r.flush(at(t)).unwrap(),
                // Fewer bytes than any envelope: never in the outbox.
                Call::Acknowledge(b) => assert!(!r.acknowledge(b)),
                Call::AcknowledgeFirst => {
                    if let Some(f) = frames.first() {
                        let pending = r.pending_envelopes();
                        let removed = r.acknowledge(f.clone());
                        assert_eq!(r.pending_envelopes() + u64::from(removed), pending);
                    }
                }
                Call::KeyConfig(b) => drop(r.set_key_config(b)),
                Call::Strict(s) => r.set_strict(s),
                Call::Counters => drop((r.counters(), r.errors(), r.pending_envelopes())),
                Call::RequireTokens(on) => r.require_tokens(on),
                Call::TokensToFetch(t, every) => {
                    if let Ok(p) = r.tokens_to_fetch(at(t), every) {
                        plan = p.into_iter().map(|f| f.scope).collect();
                    }
                }
                Call::TokenRequest(s, k, n) => {
                    let k = k.unwrap_or_else(|| key.to_bytes().to_vec());
                    drop(r.token_request(scope_of(&plan, s), k, n));
                }
                Call::TakeTokenResponse(b) => drop(r.take_token_response(b)),
                Call::Forget(s) => drop(r.forget_token_requests(scope_of(&plan, s))),
                Call::Held(s) => drop(r.tokens_held(scope_of(&plan, s))),
                Call::Enrollment(f, u, t) => drop(r.enrollment(at(f), u.map(at), at(t))),
                Call::SubjectId => assert_eq!(r.subject_id().len(), 64),
                Call::Revoke(s, d, a, t) => {
                    let ok = s.len() == 32 && d.len() == 32;
                    assert_eq!(revoke_device(s, d, at(a), at(t)).is_ok(), ok);
                }
                Call::SubjectIdOfKey(s) => {
                    let ok = s.len() == 32;
                    assert_eq!(subject_id_of_key(s).map(|id| id.len()).ok(), ok.then_some(64));
                }
            }));
            prop_assert!(outcome.is_ok());
        }
    }
}

/// Every recorder counter reaches Kotlin, Swift and Python, not only the ones the
/// bindings were first written with: a report whose hold ended while it sat in the queue
/// is dropped at the flush and shows as `expired` (it was missing from the bindings, so a
/// host could not tell such a loss from nothing sent).
#[test]
fn a_report_expired_in_the_queue_shows_in_the_counters() {
    let r = recorder(Memory::default());
    consent_and_record_a_setpoint(&r);
    // Ten years on, far past the 90-day hold: nobody may keep it any more.
    let sent = r.flush(at(START + 10 * 365 * 86_400)).unwrap();
    assert!(sent.is_empty(), "an expired report was sealed");
    let c = r.counters();
    assert_eq!((c.recorded, c.expired, c.envelopes_sealed), (1, 1, 0), "{c:?}");
    assert_eq!((c.waiting_for_token, c.token_failed), (0, 0), "{c:?}");
}

/// The field names of a struct's `Debug` output, in order.
fn debug_fields(debug: &str) -> Vec<String> {
    let inner = &debug[debug.find('{').unwrap() + 1..debug.rfind('}').unwrap()];
    inner
        .split(',')
        .filter_map(|f| f.split(':').next())
        .map(|f| f.trim().to_owned())
        .filter(|f| !f.is_empty())
        .collect()
}

/// The bindings' and the C ABI's counters have exactly the recorder's fields, in its
/// order: three counters added to the recorder with report tokens and holds were missing
/// from both, and nothing failed.
#[test]
fn the_foreign_counters_have_every_recorder_counter() {
    let rust = debug_fields(&format!("{:?}", confiance::recorder::Counters::default()));
    assert!(rust.len() >= 17 && rust.iter().any(|f| f == "expired"), "{rust:?}");
    let uniffi = debug_fields(&format!("{:?}", recorder(Memory::default()).counters()));
    let c = debug_fields(&format!("{:?}", confiance_ffi::ConfianceCounters::default()));
    assert_eq!(uniffi, rust, "bindings::Counters");
    assert_eq!(c, rust, "ConfianceCounters");
}
