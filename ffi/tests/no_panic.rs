//! The C boundary never panics, never unwinds and never touches memory through a bad
//! handle: arbitrary sequences of calls, on live, freed, NULL and forged handles, with
//! arbitrary ids, values, instants and buffer sizes, only ever return a status — and the
//! status says what happened.

#![allow(unsafe_code, reason = "the test calls the C ABI as C does: raw pointers, each valid for its call")]

use std::ffi::{CString, c_char};

use confiance::Timestamp;
use confiance::catalogue::Catalogue;
use confiance::consent::{SignedRevocation, SubjectKey};
use confiance::envelope::{AeadId, KeyConfig, KeyId, SecretKey};
use confiance::ids::{PurposeId, RecipientId};
use confiance::token::{TokenPeriod, TokenScope, voprf};
use confiance_ffi::*;
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

fn no_storage() -> ConfianceStorage {
    ConfianceStorage { context: std::ptr::null_mut(), load: None, save: None }
}

fn new_recorder(catalogue: &[u8], config: &[u8], limits: u32) -> (ConfianceStatus, *mut ConfianceRecorder) {
    let (key, secret) = ([7u8; 32], [9u8; 32]);
    let controller = CString::new("calora").unwrap();
    let mut out = std::ptr::null_mut();
    // SAFETY: every pointer valid for its length.
    let s = unsafe {
        confiance_recorder_new(
            catalogue.as_ptr(),
            catalogue.len(),
            key.as_ptr(),
            secret.as_ptr(),
            controller.as_ptr(),
            config.as_ptr(),
            config.len(),
            no_storage(),
            limits,
            &raw mut out,
        )
    };
    (s, out)
}

#[derive(Clone, Debug)]
enum Call {
    Record {
        metric: String,
        purpose: String,
        kind: u32,
        value: i64,
        now: u64,
    },
    Service {
        metric: String,
        kind: u32,
        value: i64,
        now: u64,
    },
    Consent {
        recipient: String,
        purpose: String,
        metrics: Vec<String>,
        hold: String,
        from: u64,
        until: u64,
        now: u64,
        cap: usize,
    },
    Withdraw {
        id: [u8; 32],
        at: u64,
        cap: usize,
    },
    Flush {
        now: u64,
    },
    Envelope {
        index: usize,
        cap: usize,
    },
    Acknowledge {
        bytes: Vec<u8>,
    },
    Counters,
    ErrorCount {
        metric: String,
        cause: u32,
    },
    Strict(u32),
    KeyConfig(Vec<u8>),
    RequireTokens(u32),
    TokensToFetch {
        now: u64,
        every: u64,
    },
    TokenToFetch {
        index: usize,
        cap: usize,
    },
    KeyQuery {
        scope: Vec<u8>,
        cap: usize,
    },
    TokenRequest {
        scope: Vec<u8>,
        key: Vec<u8>,
        count: u32,
        cap: usize,
    },
    TakeTokenResponse(Vec<u8>),
    ForgetTokenRequests(Vec<u8>),
    TokensHeld(Vec<u8>),
    Enrollment {
        from: u64,
        until: u64,
        now: u64,
        cap: usize,
    },
    SubjectId,
    Free,
}

/// Scope bytes: a scope of the catalogue (today's, or another period's), or anything.
fn scope_bytes() -> impl Strategy<Value = Vec<u8>> {
    let scope = |period: u64| {
        TokenScope::new(
            [RecipientId::new("calora").unwrap()],
            PurposeId::new("product-improvement").unwrap(),
            TokenPeriod(period),
        )
        .to_bytes()
    };
    prop_oneof![
        Just(scope(1_800_000_000 / 86_400)),
        any::<u64>().prop_map(scope),
        prop::collection::vec(any::<u8>(), 0..48),
    ]
}

/// Scope keys: a valid one (raw or hex), or anything.
fn scope_key() -> impl Strategy<Value = Vec<u8>> {
    let (_, key) = voprf::derive_key_pair(&[3; 32], b"no_panic").unwrap();
    let raw = key.to_bytes().to_vec();
    let hex: Vec<u8> = raw.iter().flat_map(|b| format!("{b:02x}").into_bytes()).collect();
    prop_oneof![Just(raw), Just(hex), prop::collection::vec(any::<u8>(), 0..70)]
}

fn id_text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("thermostat.mode".to_owned()),
        Just("thermostat.setpoint".to_owned()),
        Just("thermostat.fault-code".to_owned()),
        Just("calora".to_owned()),
        Just("product-improvement".to_owned()),
        Just("service".to_owned()),
        "[a-z.\\-]{0,12}",
        "\\PC{0,6}",
    ]
}

fn call() -> impl Strategy<Value = Call> {
    let t = prop_oneof![Just(1_800_000_000u64), any::<u64>(), 0u64..10];
    prop_oneof![
        (id_text(), id_text(), 0u32..4, any::<i64>(), t.clone()).prop_map(
            |(metric, purpose, kind, value, now)| Call::Record { metric, purpose, kind, value, now }
        ),
        (id_text(), 0u32..4, any::<i64>(), t.clone()).prop_map(|(metric, kind, value, now)| Call::Service {
            metric,
            kind,
            value,
            now
        }),
        (
            id_text(),
            id_text(),
            prop::collection::vec(id_text(), 0..3),
            prop_oneof![Just("P90D".to_owned()), Just("P5Y".to_owned()), "\\PC{0,6}"],
            t.clone(),
            t.clone(),
            t.clone(),
            0usize..2048
        )
            .prop_map(|(recipient, purpose, metrics, hold, from, until, now, cap)| Call::Consent {
                recipient,
                purpose,
                metrics,
                hold,
                from,
                until,
                now,
                cap
            }),
        (any::<[u8; 32]>(), t.clone(), 0usize..512).prop_map(|(id, at, cap)| Call::Withdraw { id, at, cap }),
        t.clone().prop_map(|now| Call::Flush { now }),
        (0usize..4, 0usize..4096).prop_map(|(index, cap)| Call::Envelope { index, cap }),
        prop::collection::vec(any::<u8>(), 0..64).prop_map(|bytes| Call::Acknowledge { bytes }),
        Just(Call::Counters),
        (id_text(), any::<u32>()).prop_map(|(metric, cause)| Call::ErrorCount { metric, cause }),
        (0u32..3).prop_map(Call::Strict),
        prop::collection::vec(any::<u8>(), 0..80).prop_map(Call::KeyConfig),
        (0u32..3).prop_map(Call::RequireTokens),
        (t.clone(), prop_oneof![Just(21_600u64), any::<u64>()])
            .prop_map(|(now, every)| Call::TokensToFetch { now, every }),
        (0usize..3, 0usize..128).prop_map(|(index, cap)| Call::TokenToFetch { index, cap }),
        (scope_bytes(), 0usize..96).prop_map(|(scope, cap)| Call::KeyQuery { scope, cap }),
        (scope_bytes(), scope_key(), prop_oneof![1u32..8, any::<u32>()], 0usize..1024)
            .prop_map(|(scope, key, count, cap)| Call::TokenRequest { scope, key, count, cap }),
        prop::collection::vec(any::<u8>(), 0..200).prop_map(Call::TakeTokenResponse),
        scope_bytes().prop_map(Call::ForgetTokenRequests),
        scope_bytes().prop_map(Call::TokensHeld),
        (t.clone(), t.clone(), t, 0usize..256).prop_map(|(from, until, now, cap)| Call::Enrollment {
            from,
            until,
            now,
            cap
        }),
        Just(Call::SubjectId),
        Just(Call::Free),
    ]
}

/// `s`, having checked that `len` is what a call into a buffer of `cap` bytes says: the
/// bytes written when it fits, more than `cap` when it does not.
fn sized(s: ConfianceStatus, len: usize, cap: usize) -> ConfianceStatus {
    match s {
        ConfianceStatus::Ok => assert!(len <= cap),
        ConfianceStatus::BufferTooSmall => assert!(len > cap),
        _ => {}
    }
    s
}

/// Runs `call` on `h`; returns its status.
fn run(h: *mut ConfianceRecorder, call: &Call) -> ConfianceStatus {
    let c = |s: &str| CString::new(s.replace('\0', "")).unwrap();
    // SAFETY: for every call below, the buffers and strings are live and sized as passed.
    unsafe {
        match call {
            Call::Record { metric, purpose, kind, value, now } => confiance_record(
                h,
                c(metric).as_ptr(),
                c(purpose).as_ptr(),
                ConfianceValue { kind: *kind, value: *value },
                *now,
            ),
            Call::Service { metric, kind, value, now } => confiance_record_service(
                h,
                c(metric).as_ptr(),
                ConfianceValue { kind: *kind, value: *value },
                *now,
            ),
            Call::Consent { recipient, purpose, metrics, hold, from, until, now, cap } => {
                let (recipient, purpose, hold) = (c(recipient), c(purpose), c(hold));
                let metrics: Vec<CString> = metrics.iter().map(|m| c(m)).collect();
                let ptrs: Vec<*const c_char> = metrics.iter().map(|m| m.as_ptr()).collect();
                let request = ConfianceConsentRequest {
                    recipient: recipient.as_ptr(),
                    purpose: purpose.as_ptr(),
                    metrics: ptrs.as_ptr(),
                    metric_count: ptrs.len(),
                    hold: hold.as_ptr(),
                    valid_from: *from,
                    valid_until: *until,
                };
                let mut buf = vec![0u8; *cap];
                let mut len = 0;
                let s = confiance_give_consent(
                    h,
                    &raw const request,
                    *now,
                    buf.as_mut_ptr(),
                    buf.len(),
                    &raw mut len,
                );
                if s == ConfianceStatus::Ok {
                    assert!(len <= *cap && len > 0);
                }
                s
            }
            Call::Withdraw { id, at, cap } => {
                let mut buf = vec![0u8; *cap];
                let mut len = 0;
                confiance_withdraw_consent(h, id.as_ptr(), *at, buf.as_mut_ptr(), buf.len(), &raw mut len)
            }
            Call::Flush { now } => {
                let mut n = 0;
                confiance_flush(h, *now, &raw mut n)
            }
            Call::Envelope { index, cap } => {
                let mut buf = vec![0u8; *cap];
                let mut len = 0;
                let s = confiance_envelope(h, *index, buf.as_mut_ptr(), buf.len(), &raw mut len);
                if s == ConfianceStatus::BufferTooSmall {
                    assert!(len > *cap);
                }
                s
            }
            Call::Acknowledge { bytes } => {
                // Fewer bytes than any envelope: never in the outbox, a notice.
                let s = confiance_acknowledge(h, bytes.as_ptr(), bytes.len());
                assert!(matches!(s, ConfianceStatus::UnknownEnvelope | ConfianceStatus::BadHandle), "{s:?}");
                s
            }
            Call::Counters => {
                let mut out = ConfianceCounters::default();
                confiance_counters(h, &raw mut out)
            }
            Call::ErrorCount { metric, cause } => {
                let mut n = 0;
                confiance_error_count(h, c(metric).as_ptr(), *cause, &raw mut n)
            }
            Call::Strict(s) => confiance_set_strict(h, *s),
            Call::KeyConfig(b) => confiance_set_key_config(h, b.as_ptr(), b.len()),
            Call::RequireTokens(r) => confiance_require_tokens(h, *r),
            Call::TokensToFetch { now, every } => {
                let mut n = 0;
                confiance_tokens_to_fetch(h, *now, *every, &raw mut n)
            }
            Call::TokenToFetch { index, cap } => {
                let (mut buf, mut len, mut count) = (vec![0u8; *cap], 0, 0);
                let s =
                    confiance_token_to_fetch(h, *index, buf.as_mut_ptr(), *cap, &raw mut len, &raw mut count);
                sized(s, len, *cap)
            }
            Call::KeyQuery { scope, cap } => {
                let (mut buf, mut len) = (vec![0u8; *cap], 0);
                let s = confiance_token_key_query(
                    h,
                    scope.as_ptr(),
                    scope.len(),
                    buf.as_mut_ptr().cast(),
                    *cap,
                    &raw mut len,
                );
                if s == ConfianceStatus::Ok {
                    assert_eq!(buf[len - 1], 0, "NUL-terminated");
                }
                sized(s, len, *cap)
            }
            Call::TokenRequest { scope, key, count, cap } => {
                let (mut buf, mut len) = (vec![0u8; *cap], 0);
                let s = confiance_token_request(
                    h,
                    scope.as_ptr(),
                    scope.len(),
                    key.as_ptr(),
                    key.len(),
                    *count,
                    buf.as_mut_ptr(),
                    *cap,
                    &raw mut len,
                );
                sized(s, len, *cap)
            }
            Call::TakeTokenResponse(b) => {
                let mut added = 0;
                confiance_take_token_response(h, b.as_ptr(), b.len(), &raw mut added)
            }
            Call::ForgetTokenRequests(b) => confiance_forget_token_requests(h, b.as_ptr(), b.len()),
            Call::TokensHeld(b) => {
                let mut held = 0;
                confiance_tokens_held(h, b.as_ptr(), b.len(), &raw mut held)
            }
            Call::Enrollment { from, until, now, cap } => {
                let (mut buf, mut len) = (vec![0u8; *cap], 0);
                let s = confiance_enrollment(h, *from, *until, *now, buf.as_mut_ptr(), *cap, &raw mut len);
                sized(s, len, *cap)
            }
            Call::SubjectId => {
                let mut id = [0xffu8; CONFIANCE_SUBJECT_ID_LEN];
                let s = confiance_subject_id(h, id.as_mut_ptr().cast());
                if s == ConfianceStatus::Ok {
                    let hex = std::ffi::CStr::from_bytes_with_nul(&id).unwrap().to_str().unwrap();
                    assert!(hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()), "{hex}");
                }
                s
            }
            Call::Free => confiance_recorder_free(h),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_calls_on_arbitrary_handles_only_return_statuses(
        calls in prop::collection::vec((0usize..4, call()), 1..40),
        // Far above any id the library hands out (they count up from 1).
        forged in (usize::MAX / 2)..usize::MAX,
    ) {
        let (catalogue, config) = (catalogue_bytes(), key_config());
        let (s, live) = new_recorder(&catalogue, &config, CONFIANCE_LIMITS_PHONE);
        prop_assert_eq!(s, ConfianceStatus::Ok);
        let (s, freed) = new_recorder(&catalogue, &config, CONFIANCE_LIMITS_MICROCONTROLLER);
        prop_assert_eq!(s, ConfianceStatus::Ok);
        prop_assert_eq!(confiance_recorder_free(freed), ConfianceStatus::Ok);
        let forged = forged as *mut ConfianceRecorder;
        let handles = [live, freed, std::ptr::null_mut(), forged];
        let mut live_freed = false;
        for (which, call) in &calls {
            let h = handles[*which];
            let s = run(h, call);
            prop_assert_ne!(s, ConfianceStatus::Panic);
            let is_live = *which == 0 && !live_freed;
            if !is_live {
                // A freed, NULL or forged handle is refused.
                prop_assert_eq!(s, ConfianceStatus::BadHandle);
            }
            if is_live && matches!(call, Call::Free) {
                prop_assert_eq!(s, ConfianceStatus::Ok);
                live_freed = true;
            }
        }
        if !live_freed {
            prop_assert_eq!(confiance_recorder_free(live), ConfianceStatus::Ok);
        }
        prop_assert_eq!(confiance_recorder_free(live), ConfianceStatus::BadHandle, "double free refused");
    }
}

#[test]
fn bad_arguments_get_their_status_and_change_nothing() {
    let (catalogue, config) = (catalogue_bytes(), key_config());
    let (s, _) = new_recorder(b"not a catalogue", &config, CONFIANCE_LIMITS_PHONE);
    assert_eq!(s, ConfianceStatus::BadCatalogue);
    let (s, _) = new_recorder(&catalogue, &config[..10], CONFIANCE_LIMITS_PHONE);
    assert_eq!(s, ConfianceStatus::BadKeyConfig);
    let (s, _) = new_recorder(&catalogue, &config, 7);
    assert_eq!(s, ConfianceStatus::BadArgument);
    let (s, h) = new_recorder(&catalogue, &config, CONFIANCE_LIMITS_MICROCONTROLLER);
    assert_eq!(s, ConfianceStatus::Ok);
    assert_eq!(confiance_set_strict(h, 1), ConfianceStatus::Ok);
    let now = 1_800_000_000;
    let record = |metric: &str, purpose: &str, kind: u32, value: i64| {
        let (m, p) = (CString::new(metric).unwrap(), CString::new(purpose).unwrap());
        // SAFETY: live strings.
        unsafe { confiance_record(h, m.as_ptr(), p.as_ptr(), ConfianceValue { kind, value }, now) }
    };
    assert_eq!(
        record("thermostat.mdoe", "product-improvement", CONFIANCE_VALUE_CATEGORY, 1),
        ConfianceStatus::UnknownMetric
    );
    assert_eq!(
        record("thermostat.fault-code", "service", CONFIANCE_VALUE_INT, 1),
        ConfianceStatus::WrongTrack
    );
    assert_eq!(
        record("thermostat.mode", "product-improvement", CONFIANCE_VALUE_BOOL, 1),
        ConfianceStatus::WrongValue
    );
    assert_eq!(
        record("thermostat.mode", "product-improvement", CONFIANCE_VALUE_CATEGORY, 6),
        ConfianceStatus::LabelOutOfRange
    );
    assert_eq!(
        record("thermostat.setpoint", "product-improvement", CONFIANCE_VALUE_INT, 9_999),
        ConfianceStatus::ValueOutOfRange
    );
    assert_eq!(
        record("thermostat.mode", "research", CONFIANCE_VALUE_CATEGORY, 1),
        ConfianceStatus::PurposeNotAllowed
    );
    assert_eq!(
        record("thermostat.mode", "product-improvement", CONFIANCE_VALUE_CATEGORY, 1),
        ConfianceStatus::NoConsent
    );
    assert_eq!(record("thermostat.mode", "product-improvement", 9, 1), ConfianceStatus::BadArgument);
    assert_eq!(
        record("Not An Id", "product-improvement", CONFIANCE_VALUE_BOOL, 1),
        ConfianceStatus::BadArgument
    );
    // NULL strings and out-pointers.
    // SAFETY: NULL is what is being tested; the other pointers are live.
    unsafe {
        let p = CString::new("product-improvement").unwrap();
        assert_eq!(
            confiance_record(h, std::ptr::null(), p.as_ptr(), ConfianceValue { kind: 0, value: 0 }, now),
            ConfianceStatus::NullArgument
        );
        assert_eq!(confiance_flush(h, now, std::ptr::null_mut()), ConfianceStatus::NullArgument);
        assert_eq!(confiance_counters(h, std::ptr::null_mut()), ConfianceStatus::NullArgument);
    }
    // A hold longer than the metric's maximum is refused before anything is signed.
    let (r, p, hold, m) = (
        CString::new("calora").unwrap(),
        CString::new("product-improvement").unwrap(),
        CString::new("P5Y").unwrap(),
        CString::new("thermostat.mode").unwrap(),
    );
    let metrics = [m.as_ptr()];
    let request = ConfianceConsentRequest {
        recipient: r.as_ptr(),
        purpose: p.as_ptr(),
        metrics: metrics.as_ptr(),
        metric_count: 1,
        hold: hold.as_ptr(),
        valid_from: 0,
        valid_until: 0,
    };
    let mut buf = [0u8; 1024];
    let mut len = 0;
    // SAFETY: live request and buffers.
    let s = unsafe {
        confiance_give_consent(h, &raw const request, now, buf.as_mut_ptr(), buf.len(), &raw mut len)
    };
    assert_eq!(s, ConfianceStatus::HoldTooLong);
    let mut counters = ConfianceCounters::default();
    // SAFETY: live out-pointer.
    assert_eq!(unsafe { confiance_counters(h, &raw mut counters) }, ConfianceStatus::Ok);
    assert_eq!(counters, ConfianceCounters::default(), "strict mode counted nothing");
    assert_eq!(confiance_recorder_free(h), ConfianceStatus::Ok);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// The enrolment calls that take no handle — the owner's delegation and revocation, a
    /// device's public key, a subject id of a key, a recorder made from a delegation —
    /// only return statuses on arbitrary bytes and instants; a recorder is made only from
    /// a delegation of its own key, and a revocation revokes the key it was given.
    #[test]
    fn enrolment_calls_on_arbitrary_bytes_only_return_statuses(
        subject in any::<[u8; 32]>(),
        device in any::<[u8; 32]>(),
        from in prop_oneof![Just(0u64), any::<u64>()],
        until in prop_oneof![Just(0u64), any::<u64>()],
        now in any::<u64>(),
        cap in 0usize..256,
        noise in prop::collection::vec(any::<u8>(), 0..200),
        flip in any::<prop::sample::Index>(),
    ) {
        let mut public = [0u8; 32];
        // SAFETY: live 32-byte buffers.
        prop_assert_eq!(unsafe { confiance_public_key(device.as_ptr(), public.as_mut_ptr()) }, ConfianceStatus::Ok);
        let (mut buf, mut len) = (vec![0u8; cap], 0);
        // SAFETY: live buffers.
        let s = unsafe {
            confiance_delegate(subject.as_ptr(), public.as_ptr(), from, until, now, buf.as_mut_ptr(), cap, &raw mut len)
        };
        prop_assert!(
            matches!(s, ConfianceStatus::Ok | ConfianceStatus::BufferTooSmall | ConfianceStatus::ConsentRefused),
            "{:?}", s
        );
        prop_assert_eq!(sized(s, len, cap), s);
        let (mut rbuf, mut rlen) = (vec![0u8; cap], 0);
        // SAFETY: live buffers.
        let r = unsafe {
            confiance_revoke(subject.as_ptr(), public.as_ptr(), from, now, rbuf.as_mut_ptr(), cap, &raw mut rlen)
        };
        prop_assert!(matches!(r, ConfianceStatus::Ok | ConfianceStatus::BufferTooSmall), "{:?}", r);
        prop_assert_eq!(sized(r, rlen, cap), r);
        if r == ConfianceStatus::Ok {
            let revocation = SignedRevocation::from_bytes(&rbuf[..rlen]).unwrap();
            let owner = SubjectKey::from_bytes(&subject);
            prop_assert_eq!(revocation.revocation().device.0, public);
            prop_assert_eq!(revocation.revocation().subject(), owner.subject_id());
            prop_assert_eq!(revocation.revocation().at, Timestamp::from_secs(if from == 0 { now } else { from }));
        }
        let mut id = [0u8; CONFIANCE_SUBJECT_ID_LEN];
        // SAFETY: live buffers of 32 and CONFIANCE_SUBJECT_ID_LEN bytes.
        let s_id = unsafe { confiance_subject_id_of_key(subject.as_ptr(), id.as_mut_ptr().cast()) };
        prop_assert_eq!(s_id, ConfianceStatus::Ok);
        prop_assert_eq!(
            std::ffi::CStr::from_bytes_with_nul(&id).unwrap().to_str().unwrap(),
            SubjectKey::from_bytes(&subject).subject_id().to_string()
        );
        let (catalogue, config) = (catalogue_bytes(), key_config());
        let make = |delegation: &[u8], key: &[u8; 32]| {
            let controller = CString::new("calora").unwrap();
            let mut out = std::ptr::null_mut();
            // SAFETY: every pointer valid for its length.
            let s = unsafe {
                confiance_recorder_new_delegated(
                    catalogue.as_ptr(), catalogue.len(), key.as_ptr(), [9u8; 32].as_ptr(),
                    delegation.as_ptr(), delegation.len(), controller.as_ptr(),
                    config.as_ptr(), config.len(), no_storage(), CONFIANCE_LIMITS_PHONE, &raw mut out,
                )
            };
            if s == ConfianceStatus::Ok {
                assert_eq!(confiance_recorder_free(out), ConfianceStatus::Ok);
            }
            s
        };
        // Arbitrary bytes, and a real delegation with one byte changed, are refused.
        prop_assert_eq!(make(&noise, &device), ConfianceStatus::BadDelegation);
        if s == ConfianceStatus::Ok {
            buf.truncate(len);
            prop_assert_eq!(make(&buf, &device), ConfianceStatus::Ok);
            prop_assert_eq!(make(&buf, &subject), if subject == device { ConfianceStatus::Ok } else { ConfianceStatus::BadDelegation });
            let mut changed = buf.clone();
            changed[flip.index(buf.len())] ^= 1;
            prop_assert_eq!(make(&changed, &device), ConfianceStatus::BadDelegation);
        }
    }
}
