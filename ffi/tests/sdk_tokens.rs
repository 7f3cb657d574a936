//! Report tokens and enrolment through both faces of the library — the C ABI and the
//! UniFFI bindings — against a real aggregator with tokens on (in process; `.ci/run`
//! runs the C example and the Python tests against `confiance serve --token-secret`): the
//! device enrols, reports wait for a token (counted), the planned scope is fetched,
//! requested, answered and unblinded, the envelope spends a token and is accepted, and
//! every kind of bad input gets its status and changes nothing. Then the owner's side:
//! a lost device revoked from the owner's app, refused by the aggregator from then; the
//! subject id each side reads, the one subject access lists the device under; and an
//! envelope acknowledged twice.

#![allow(unsafe_code, reason = "the test calls the C ABI as C does: raw pointers, each valid for its call")]

use std::ffi::{CStr, CString};
use std::time::{Duration, UNIX_EPOCH};

use confiance::Timestamp;
use confiance::catalogue::Catalogue;
use confiance::consent::{SignedReceipt, SignedRevocation, SubjectKey};
use confiance::envelope::AeadId;
use confiance::hazmat::{SeedableRng as _, SeededRng};
use confiance::ids::{DevicePublicKey, PurposeId, RecipientId, SubjectId};
use confiance::token::{TokenPeriod, TokenRequest, TokenResponse, TokenScope, voprf};
use confiance_aggregator::issuer::{IssueError, IssuerSecret, PolicyRefusal};
use confiance_aggregator::keys::KeyStore;
use confiance_aggregator::ledger::{EnrollError, LedgerError};
use confiance_aggregator::service::{Aggregator, AggregatorConfig, ServiceError};
use confiance_ffi::bindings::{self, ConfianceError};
use confiance_ffi::*;

const DAY: u64 = 86_400;
/// 8 h into a day: the plan at a 6-hour cadence asks 4 tokens (16 h left: +6, +12 h and
/// the flush after the day's end, plus the rounding).
const NOW: u64 = 1_800_000_000;

fn catalogue() -> Catalogue {
    Catalogue::from_toml_str(include_str!("../../examples/catalogue.toml")).unwrap()
}

/// An aggregator with tokens on, and its key config's bytes.
fn aggregator() -> (Aggregator, Vec<u8>) {
    let mut keys = KeyStore::new(DAY);
    let mut rng = SeededRng::seed_from_u64(1);
    let config = keys.generate(
        AeadId::ChaCha20Poly1305,
        Timestamp::EPOCH,
        Timestamp::from_secs(NOW + 90 * DAY),
        &mut rng,
    );
    let mut agg = Aggregator::in_memory(catalogue(), keys, AggregatorConfig::default()).unwrap();
    agg.enable_tokens(IssuerSecret::from_bytes([9; 32])).unwrap();
    (agg, config.unwrap().to_bytes().to_vec())
}

/// The scope the device's `thermostat.mode` statistics (to calora, product-improvement)
/// spend tokens of today.
fn today() -> TokenScope {
    TokenScope::new(
        [RecipientId::new("calora").unwrap()],
        PurposeId::new("product-improvement").unwrap(),
        TokenPeriod::at(Timestamp::from_secs(NOW), DAY),
    )
}

/// The issuer's answer to `request` (postcard bytes), as `POST /v1/tokens` gives it.
fn issue(agg: &mut Aggregator, request: &[u8]) -> Vec<u8> {
    issue_at(agg, request, NOW).unwrap()
}

/// The issuer's answer to `request` at `now`, or why it refused.
fn issue_at(agg: &mut Aggregator, request: &[u8], now: u64) -> Result<Vec<u8>, IssueError> {
    let request: TokenRequest = postcard::from_bytes(request).unwrap();
    let response = agg.issue_tokens(&request, Timestamp::from_secs(now), &mut SeededRng::seed_from_u64(2))?;
    Ok(postcard::to_allocvec(&response).unwrap())
}

/// Bytes that decode as a response to `good`'s request but whose proof does not verify.
fn forged(good: &[u8]) -> Vec<u8> {
    let mut r: TokenResponse = postcard::from_bytes(good).unwrap();
    r.proof.1[0] ^= 1;
    postcard::to_allocvec(&r).unwrap()
}

/// Scope bytes that are not a scope of the catalogue: truncated, another purpose, a
/// recipient repeated (decodes, but not canonical), no recipient.
fn bad_scopes() -> Vec<Vec<u8>> {
    let good = today().to_bytes();
    let other = TokenScope { purpose: PurposeId::new("no-such-purpose").unwrap(), ..today() };
    let nobody = TokenScope { recipients: Default::default(), ..today() };
    // Two recipients `calora` where the canonical bytes have one.
    let mut repeated = vec![2];
    repeated.extend_from_slice(&good[1..8]);
    repeated.extend_from_slice(&good[1..]);
    vec![good[..good.len() - 1].to_vec(), other.to_bytes(), repeated, nobody.to_bytes(), Vec::new()]
}

// ---- the C ABI -------------------------------------------------------------------------

/// The recorder and the state its storage keeps (boxed: the storage's context points
/// at it).
struct C(
    *mut ConfianceRecorder,
    #[allow(dead_code, reason = "kept alive for the storage callbacks, which reach it through a pointer")]
    #[allow(clippy::box_collection, reason = "the storage's context points at the Vec, which must not move")]
    Box<Vec<u8>>,
);

/// The host's storage callbacks on a `Vec<u8>` context: a storage that keeps nothing
/// would keep `thermostat.mode` (it has an ε budget) from being recorded at all.
unsafe extern "C" fn load(context: *mut std::ffi::c_void, bytes: *mut *const u8, len: *mut usize) -> i32 {
    // SAFETY: the context is the test's `Vec<u8>`, the out-pointers the library's.
    unsafe {
        let state = &*context.cast::<Vec<u8>>();
        bytes.write(state.as_ptr());
        len.write(state.len());
    }
    0
}

unsafe extern "C" fn save(context: *mut std::ffi::c_void, bytes: *const u8, len: usize) -> i32 {
    // SAFETY: as in `load`; `bytes` valid for `len` bytes during the call.
    unsafe { *context.cast::<Vec<u8>>() = std::slice::from_raw_parts(bytes, len).to_vec() };
    0
}

impl C {
    fn new(config: &[u8]) -> Self {
        Self::make(config, None).unwrap()
    }

    /// A recorder of device key `[7; 32]`, its own subject or delegated by `delegation`.
    fn make(config: &[u8], delegation: Option<&[u8]>) -> Result<Self, ConfianceStatus> {
        let catalogue = catalogue().canonical_bytes();
        let controller = CString::new("calora").unwrap();
        let mut state = Box::new(Vec::new());
        let storage =
            ConfianceStorage { context: (&raw mut *state).cast(), load: Some(load), save: Some(save) };
        let mut h = std::ptr::null_mut();
        let (n, catalogue, key, secret) = (catalogue.len(), catalogue.as_ptr(), [7u8; 32], [8u8; 32]);
        // SAFETY: every pointer valid for its length.
        let s = unsafe {
            match delegation {
                None => confiance_recorder_new(
                    catalogue,
                    n,
                    key.as_ptr(),
                    secret.as_ptr(),
                    controller.as_ptr(),
                    config.as_ptr(),
                    config.len(),
                    storage,
                    CONFIANCE_LIMITS_PHONE,
                    &raw mut h,
                ),
                Some(d) => confiance_recorder_new_delegated(
                    catalogue,
                    n,
                    key.as_ptr(),
                    secret.as_ptr(),
                    d.as_ptr(),
                    d.len(),
                    controller.as_ptr(),
                    config.as_ptr(),
                    config.len(),
                    storage,
                    CONFIANCE_LIMITS_PHONE,
                    &raw mut h,
                ),
            }
        };
        if s == ConfianceStatus::Ok { Ok(Self(h, state)) } else { Err(s) }
    }

    /// Consent to calora for `thermostat.mode`, product-improvement: the receipt.
    fn consent(&self) -> Vec<u8> {
        let (r, p, hold, m) = (c("calora"), c("product-improvement"), c("P90D"), c("thermostat.mode"));
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
        // Room enough: a consent given into a buffer too small is given all the same.
        let mut buf = vec![0u8; 4096];
        let mut len = 0;
        // SAFETY: live request and buffers.
        let s = unsafe {
            confiance_give_consent(self.0, &raw const request, NOW, buf.as_mut_ptr(), buf.len(), &raw mut len)
        };
        assert_eq!(s, ConfianceStatus::Ok);
        buf.truncate(len);
        buf
    }

    fn record(&self, now: u64) {
        let (m, p) = (c("thermostat.mode"), c("product-improvement"));
        let v = ConfianceValue { kind: CONFIANCE_VALUE_CATEGORY, value: 2 };
        // SAFETY: live strings.
        assert_eq!(unsafe { confiance_record(self.0, m.as_ptr(), p.as_ptr(), v, now) }, ConfianceStatus::Ok);
    }

    fn flush(&self, now: u64) -> Vec<Vec<u8>> {
        let mut n = 0;
        // SAFETY: live out-pointer.
        assert_eq!(unsafe { confiance_flush(self.0, now, &raw mut n) }, ConfianceStatus::Ok);
        // SAFETY: live buffers.
        (0..n)
            .map(|i| out(|b, cap, len| unsafe { confiance_envelope(self.0, i, b, cap, len) }).unwrap())
            .collect()
    }

    fn counters(&self) -> ConfianceCounters {
        let mut c = ConfianceCounters::default();
        // SAFETY: live out-pointer.
        assert_eq!(unsafe { confiance_counters(self.0, &raw mut c) }, ConfianceStatus::Ok);
        c
    }

    /// The planned fetches: (scope bytes, count).
    fn to_fetch(&self, now: u64) -> Vec<(Vec<u8>, u32)> {
        let mut n = 0;
        // SAFETY: live out-pointer.
        let s = unsafe { confiance_tokens_to_fetch(self.0, now, 6 * 3_600, &raw mut n) };
        assert_eq!(s, ConfianceStatus::Ok);
        (0..n)
            .map(|i| {
                let mut count = 0;
                // SAFETY: live buffers.
                let scope = out(|b, cap, len| unsafe {
                    confiance_token_to_fetch(self.0, i, b, cap, len, &raw mut count)
                })
                .unwrap();
                (scope, count)
            })
            .collect()
    }

    fn request(&self, scope: &[u8], key: &[u8], count: u32) -> Result<Vec<u8>, ConfianceStatus> {
        // SAFETY: live buffers.
        out(|b, cap, len| unsafe {
            confiance_token_request(
                self.0,
                scope.as_ptr(),
                scope.len(),
                key.as_ptr(),
                key.len(),
                count,
                b,
                cap,
                len,
            )
        })
    }

    fn take(&self, response: &[u8]) -> Result<u32, ConfianceStatus> {
        let mut added = 0;
        // SAFETY: live buffer and out-pointer.
        let s = unsafe {
            confiance_take_token_response(self.0, response.as_ptr(), response.len(), &raw mut added)
        };
        if s == ConfianceStatus::Ok { Ok(added) } else { Err(s) }
    }

    fn held(&self, scope: &[u8]) -> Result<u32, ConfianceStatus> {
        let mut held = 0;
        // SAFETY: live buffer and out-pointer.
        let s = unsafe { confiance_tokens_held(self.0, scope.as_ptr(), scope.len(), &raw mut held) };
        if s == ConfianceStatus::Ok { Ok(held) } else { Err(s) }
    }
}

impl Drop for C {
    fn drop(&mut self) {
        assert_eq!(confiance_recorder_free(self.0), ConfianceStatus::Ok);
    }
}

fn c(s: &str) -> CString {
    CString::new(s).unwrap()
}

/// Calls `f(buf, cap, len)` with no room, then with the room it asked for: the bytes.
fn out(mut f: impl FnMut(*mut u8, usize, *mut usize) -> ConfianceStatus) -> Result<Vec<u8>, ConfianceStatus> {
    let mut len = 0;
    match f(std::ptr::null_mut(), 0, &raw mut len) {
        ConfianceStatus::Ok => return Ok(Vec::new()),
        ConfianceStatus::BufferTooSmall => {}
        s => return Err(s),
    }
    let mut buf = vec![0u8; len];
    match f(buf.as_mut_ptr(), buf.len(), &raw mut len) {
        ConfianceStatus::Ok => {
            buf.truncate(len);
            Ok(buf)
        }
        s => Err(s),
    }
}

#[test]
fn a_c_device_enrols_fetches_tokens_and_spends_them() {
    let (mut agg, config) = aggregator();
    let d = C::new(&config);
    let t = Timestamp::from_secs(NOW);
    // Enrolment: the device's delegation of itself, accepted by the ledger.
    // SAFETY: live buffers.
    let enrollment = out(|b, cap, len| unsafe { confiance_enrollment(d.0, 0, 0, NOW, b, cap, len) }).unwrap();
    agg.receive_delegation(&enrollment, t).unwrap();
    agg.receive_receipt(&d.consent(), t).unwrap();
    assert_eq!(confiance_require_tokens(d.0, 1), ConfianceStatus::Ok);

    // Without a token the statistic waits, counted.
    d.record(NOW);
    assert!(d.flush(NOW).is_empty());
    assert_eq!((d.counters().waiting_for_token, d.counters().envelopes_sealed), (1, 0));

    // The plan: today's scope, 4 tokens; its key query.
    let plan = d.to_fetch(NOW);
    assert_eq!(plan, vec![(today().to_bytes(), 4)]);
    let scope = &plan[0].0;
    // SAFETY: live buffers.
    let query = out(|b, cap, len| unsafe {
        confiance_token_key_query(d.0, scope.as_ptr(), scope.len(), b.cast(), cap, len)
    })
    .unwrap();
    let expected = format!("recipients=calora&purpose=product-improvement&period={}", NOW / DAY);
    assert_eq!(CStr::from_bytes_with_nul(&query).unwrap().to_str().unwrap(), expected);

    // The key as served (hex), the request, the answer.
    let key = agg.token_public_key(&today()).unwrap().to_bytes();
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    let request = d.request(scope, hex.as_bytes(), 4).unwrap();
    assert!(d.to_fetch(NOW).is_empty(), "asked for: not planned again");
    let response = issue(&mut agg, &request);

    // Bad answers: refused, nothing added.
    assert_eq!(d.take(b"not a response"), Err(ConfianceStatus::BadTokenResponse));
    assert_eq!(d.take(&forged(&response)), Err(ConfianceStatus::BadTokenResponse));
    assert_eq!(d.held(scope), Ok(0));
    assert_eq!(d.counters().token_failed, 1, "the forged proof is counted");

    assert_eq!(d.take(&response), Ok(4));
    assert_eq!(d.held(scope), Ok(4));
    assert_eq!(d.take(&response), Err(ConfianceStatus::BadTokenResponse), "answered already");
    assert_eq!(d.held(scope), Ok(4));

    // The waiting report goes out with one token, and the aggregator keeps it.
    let frames = d.flush(NOW + 60);
    assert_eq!(frames.len(), 1);
    assert_eq!(d.held(scope), Ok(3));
    let ack = agg.ingest(&frames[0], Timestamp::from_secs(NOW + 60)).unwrap();
    assert_eq!((ack.reports, ack.refused.len()), (1, 0));
}

#[test]
fn c_token_calls_refuse_bad_input_and_change_nothing() {
    let (mut agg, config) = aggregator();
    let d = C::new(&config);
    agg.receive_receipt(&d.consent(), Timestamp::from_secs(NOW)).unwrap();
    assert_eq!(confiance_require_tokens(d.0, 1), ConfianceStatus::Ok);
    d.record(NOW);
    let scope = today().to_bytes();
    let key = agg.token_public_key(&today()).unwrap().to_bytes();

    for bad in bad_scopes() {
        assert_eq!(d.request(&bad, &key, 4), Err(ConfianceStatus::BadTokenScope));
        assert_eq!(d.held(&bad), Err(ConfianceStatus::BadTokenScope));
        // SAFETY: live buffer.
        let s = unsafe { confiance_forget_token_requests(d.0, bad.as_ptr(), bad.len()) };
        assert_eq!(s, ConfianceStatus::BadTokenScope);
    }
    let not_a_point = [0xffu8; 32];
    for bad_key in [&key[..31], &not_a_point[..], b"zz".repeat(32).as_slice()] {
        assert_eq!(d.request(&scope, bad_key, 4), Err(ConfianceStatus::BadTokenKey));
    }
    assert_eq!(d.request(&scope, &key, 0), Err(ConfianceStatus::BadArgument));
    assert_eq!(d.request(&scope, &key, 1025), Err(ConfianceStatus::BadArgument));
    // A buffer one byte short: the size needed, and no request kept.
    let needed = d.request(&scope, &key, 4).unwrap().len();
    // SAFETY: the forget takes the request just made back; live buffers.
    unsafe { confiance_forget_token_requests(d.0, scope.as_ptr(), scope.len()) };
    let mut buf = vec![0u8; needed - 1];
    let mut len = 0;
    // SAFETY: live buffers.
    let s = unsafe {
        confiance_token_request(
            d.0,
            scope.as_ptr(),
            scope.len(),
            key.as_ptr(),
            32,
            4,
            buf.as_mut_ptr(),
            needed - 1,
            &raw mut len,
        )
    };
    assert_eq!((s, len), (ConfianceStatus::BufferTooSmall, needed));
    assert_eq!(d.to_fetch(NOW), vec![(scope.clone(), 4)], "nothing asked for");
    // Forgetting a refused request plans the scope again.
    let request = d.request(&scope, &key, 4).unwrap();
    assert!(d.to_fetch(NOW).is_empty());
    // SAFETY: live buffer.
    let s = unsafe { confiance_forget_token_requests(d.0, scope.as_ptr(), scope.len()) };
    assert_eq!(s, ConfianceStatus::Ok);
    assert_eq!(d.to_fetch(NOW), vec![(scope.clone(), 4)]);
    // Then its answer is for no request waiting: refused, nothing added.
    assert_eq!(d.take(&issue(&mut agg, &request)), Err(ConfianceStatus::BadTokenResponse));
    // A request blinded against another (valid) key: the issuer answers with the scope's
    // key, which the device refuses.
    let (_, other) = voprf::derive_key_pair(&[5; 32], b"not the issuer").unwrap();
    let request = d.request(&scope, &other.to_bytes(), 4).unwrap();
    assert_eq!(d.take(&issue(&mut agg, &request)), Err(ConfianceStatus::BadTokenResponse));
    assert_eq!(d.held(&scope), Ok(0));
    // Out of range, NULL.
    let mut count = 0;
    let mut len = 0;
    // SAFETY: live out-pointers; NULL is what is tested.
    unsafe {
        assert_eq!(
            confiance_token_to_fetch(d.0, 5, std::ptr::null_mut(), 0, &raw mut len, &raw mut count),
            ConfianceStatus::OutOfRange
        );
        assert_eq!(
            confiance_tokens_to_fetch(d.0, NOW, 60, std::ptr::null_mut()),
            ConfianceStatus::NullArgument
        );
        assert_eq!(
            confiance_take_token_response(d.0, std::ptr::null(), 0, &raw mut count),
            ConfianceStatus::NullArgument
        );
        assert_eq!(
            confiance_enrollment(d.0, 0, 0, NOW, std::ptr::null_mut(), 0, std::ptr::null_mut()),
            ConfianceStatus::NullArgument
        );
    }
    // An enrolment that ends before it starts.
    // SAFETY: live buffers.
    let inverted = out(|b, cap, len| unsafe { confiance_enrollment(d.0, NOW, NOW - 1, NOW, b, cap, len) });
    assert_eq!(inverted, Err(ConfianceStatus::ConsentRefused));
    // Nothing of the above added a token or sealed a report.
    assert_eq!(d.counters().envelopes_sealed, 0);
}

// ---- UniFFI ----------------------------------------------------------------------------

struct NoStorage;

impl bindings::HostStorage for NoStorage {
    fn load(&self) -> Result<Option<Vec<u8>>, ConfianceError> {
        Ok(None)
    }

    fn save(&self, _: Vec<u8>) -> Result<(), ConfianceError> {
        Ok(())
    }
}

/// Consent to calora for `thermostat.mode`, product-improvement, at [`NOW`]: the receipt.
fn uniffi_consent(d: &bindings::Recorder) -> Vec<u8> {
    let consent = bindings::ConsentRequest {
        recipient: "calora".into(),
        purpose: "product-improvement".into(),
        metrics: vec!["thermostat.mode".into()],
        hold: "P90D".into(),
        valid_from: None,
        valid_until: None,
    };
    d.give_consent(consent, UNIX_EPOCH + Duration::from_secs(NOW)).unwrap()
}

/// A `thermostat.mode` reading at `now`.
fn uniffi_record(d: &bindings::Recorder, now: u64) {
    let (mode, purpose) = ("thermostat.mode".into(), "product-improvement".into());
    d.record(mode, purpose, bindings::Value::Category { index: 1 }, UNIX_EPOCH + Duration::from_secs(now))
        .unwrap();
}

#[test]
fn a_uniffi_device_enrols_fetches_tokens_and_spends_them() {
    let (mut agg, config) = aggregator();
    let at = |s: u64| UNIX_EPOCH + Duration::from_secs(s);
    let d = bindings::Recorder::new(
        catalogue().canonical_bytes(),
        vec![7; 32],
        vec![8; 32],
        "calora".into(),
        Some(config),
        bindings::LimitsPreset::Phone,
        Box::new(NoStorage),
    )
    .unwrap();
    let t = Timestamp::from_secs(NOW);
    agg.receive_delegation(&d.enrollment(at(NOW), None, at(NOW)).unwrap(), t).unwrap();
    agg.receive_receipt(&uniffi_consent(&d), t).unwrap();
    d.require_tokens(true);
    uniffi_record(&d, NOW);
    assert!(d.flush(at(NOW)).unwrap().is_empty());
    assert_eq!(d.counters().waiting_for_token, 1);

    let plan = d.tokens_to_fetch(at(NOW), 6 * 3_600).unwrap();
    assert_eq!(plan.len(), 1);
    let f = &plan[0];
    assert_eq!((f.scope.clone(), f.count, f.period), (today().to_bytes(), 4, NOW / DAY));
    assert_eq!(
        (f.recipients.clone(), f.purpose.as_str()),
        (vec!["calora".to_owned()], "product-improvement")
    );
    assert_eq!(f.key_query, format!("recipients=calora&purpose=product-improvement&period={}", NOW / DAY));

    let key = agg.token_public_key(&today()).unwrap().to_bytes().to_vec();
    // Bad input: typed, and nothing changes.
    for bad in bad_scopes() {
        assert!(matches!(
            d.token_request(bad.clone(), key.clone(), 4),
            Err(ConfianceError::BadTokenScope { .. })
        ));
        assert!(matches!(d.tokens_held(bad.clone()), Err(ConfianceError::BadTokenScope { .. })));
        assert!(matches!(d.forget_token_requests(bad), Err(ConfianceError::BadTokenScope { .. })));
    }
    assert!(matches!(
        d.token_request(f.scope.clone(), vec![1; 32], 4),
        Err(ConfianceError::BadTokenKey { .. })
    ));
    assert!(matches!(
        d.token_request(f.scope.clone(), key.clone(), 0),
        Err(ConfianceError::BadArgument { .. })
    ));
    assert_eq!(d.tokens_to_fetch(at(NOW), 6 * 3_600).unwrap(), plan, "nothing asked for yet");

    let request = d.token_request(f.scope.clone(), key, f.count).unwrap();
    let response = issue(&mut agg, &request);
    assert!(matches!(d.take_token_response(b"junk".to_vec()), Err(ConfianceError::BadTokenResponse { .. })));
    assert!(matches!(d.take_token_response(forged(&response)), Err(ConfianceError::BadTokenResponse { .. })));
    assert_eq!(d.tokens_held(f.scope.clone()).unwrap(), 0);
    assert_eq!(d.take_token_response(response).unwrap(), 4);
    assert_eq!(d.tokens_held(f.scope.clone()).unwrap(), 4);

    let frames = d.flush(at(NOW + 60)).unwrap();
    assert_eq!((frames.len(), d.tokens_held(f.scope.clone()).unwrap()), (1, 3));
    let ack = agg.ingest(&frames[0], Timestamp::from_secs(NOW + 60)).unwrap();
    assert_eq!((ack.reports, ack.refused.len()), (1, 0));
    assert!(matches!(
        d.enrollment(at(NOW), Some(at(NOW - 1)), at(NOW)),
        Err(ConfianceError::ConsentRefused { .. })
    ));
}

// ---- a device delegated by its owner ---------------------------------------------------

/// The public key of the device key `device`, through the C ABI.
fn c_public_key(device: [u8; 32]) -> [u8; 32] {
    let mut public = [0u8; 32];
    // SAFETY: live 32-byte buffers.
    assert_eq!(unsafe { confiance_public_key(device.as_ptr(), public.as_mut_ptr()) }, ConfianceStatus::Ok);
    public
}

/// The owner's subject key (on the phone app) and the delegation of the device's key
/// `[7; 32]`, made through the C ABI.
fn c_delegation(device: [u8; 32]) -> Vec<u8> {
    let public = c_public_key(device);
    // SAFETY: live buffers.
    out(|b, cap, len| unsafe {
        confiance_delegate([1u8; 32].as_ptr(), public.as_ptr(), 0, 0, NOW, b, cap, len)
    })
    .unwrap()
}

#[test]
fn a_c_device_delegated_by_its_owner_reports_for_the_owner_with_tokens() {
    let (mut agg, config) = aggregator();
    let t = Timestamp::from_secs(NOW);
    let delegation = c_delegation([7; 32]);
    // Bad delegations: refused, no recorder made.
    assert_eq!(C::make(&config, Some(b"not a delegation")).err(), Some(ConfianceStatus::BadDelegation));
    let other = c_delegation([6; 32]);
    assert_eq!(
        C::make(&config, Some(&other)).err(),
        Some(ConfianceStatus::BadDelegation),
        "another device's"
    );
    let mut tampered = delegation.clone();
    *tampered.last_mut().unwrap() ^= 1;
    assert_eq!(C::make(&config, Some(&tampered)).err(), Some(ConfianceStatus::BadDelegation));

    let d = C::make(&config, Some(&delegation)).unwrap();
    // Its receipt names the owner; the ledger refuses it until the delegation is in.
    let receipt = d.consent();
    let owner = SubjectKey::from_bytes(&[1; 32]).subject_id();
    assert_eq!(SignedReceipt::from_bytes(&receipt).unwrap().receipt().subject, owner);
    let refused = agg.receive_receipt(&receipt, t).unwrap_err();
    assert!(
        matches!(&refused, ServiceError::Ledger(LedgerError::Enroll(EnrollError::NotEnrolled))),
        "not enrolled yet: {refused}"
    );
    // Its enrolment is the delegation it was made with.
    // SAFETY: live buffers.
    let enrollment = out(|b, cap, len| unsafe { confiance_enrollment(d.0, 0, 0, NOW, b, cap, len) }).unwrap();
    assert_eq!(enrollment, delegation);
    agg.receive_delegation(&enrollment, t).unwrap();
    agg.receive_receipt(&receipt, t).unwrap();

    // Tokens for it, spent, and its envelope kept.
    assert_eq!(confiance_require_tokens(d.0, 1), ConfianceStatus::Ok);
    d.record(NOW);
    let (scope, count) = d.to_fetch(NOW).pop().unwrap();
    let key = agg.token_public_key(&today()).unwrap().to_bytes();
    let response = issue(&mut agg, &d.request(&scope, &key, count).unwrap());
    assert_eq!(d.take(&response), Ok(count));
    let frames = d.flush(NOW + 60);
    let ack = agg.ingest(&frames[0], Timestamp::from_secs(NOW + 60)).unwrap();
    assert_eq!((frames.len(), ack.reports, ack.refused.len()), (1, 1, 0));
}

#[test]
fn a_uniffi_device_delegated_by_its_owner_reports_for_the_owner_with_tokens() {
    let (mut agg, config) = aggregator();
    let at = |s: u64| UNIX_EPOCH + Duration::from_secs(s);
    let t = Timestamp::from_secs(NOW);
    let make = |delegation: Vec<u8>| {
        bindings::Recorder::delegated(
            catalogue().canonical_bytes(),
            vec![7; 32],
            vec![8; 32],
            delegation,
            "calora".into(),
            Some(config.clone()),
            bindings::LimitsPreset::Phone,
            Box::new(NoStorage),
        )
    };
    let owner = vec![1; 32];
    let delegate = |device: Vec<u8>| {
        bindings::delegate_device(
            owner.clone(),
            bindings::device_public_key(device).unwrap(),
            at(NOW),
            None,
            at(NOW),
        )
    };
    let delegation = delegate(vec![7; 32]).unwrap();
    assert!(matches!(make(b"junk".to_vec()), Err(ConfianceError::BadDelegation { .. })));
    assert!(matches!(make(delegate(vec![6; 32]).unwrap()), Err(ConfianceError::BadDelegation { .. })));
    assert!(matches!(bindings::device_public_key(vec![7; 31]), Err(ConfianceError::BadArgument { .. })));
    assert!(matches!(
        bindings::delegate_device(owner.clone(), vec![0; 32], at(NOW), Some(at(NOW - 1)), at(NOW)),
        Err(ConfianceError::ConsentRefused { .. })
    ));

    let d = make(delegation.clone()).unwrap();
    assert_eq!(d.enrollment(at(0), None, at(0)).unwrap(), delegation, "the delegation it was made with");
    agg.receive_delegation(&delegation, t).unwrap();
    let receipt = uniffi_consent(&d);
    let subject = SignedReceipt::from_bytes(&receipt).unwrap().receipt().subject;
    assert_eq!(subject, SubjectKey::from_bytes(&[1; 32]).subject_id());
    agg.receive_receipt(&receipt, t).unwrap();
    d.require_tokens(true);
    uniffi_record(&d, NOW);
    let f = d.tokens_to_fetch(at(NOW), 6 * 3_600).unwrap().pop().unwrap();
    let key = agg.token_public_key(&today()).unwrap().to_bytes().to_vec();
    let response = issue(&mut agg, &d.token_request(f.scope, key, f.count).unwrap());
    assert_eq!(d.take_token_response(response).unwrap(), f.count);
    let frames = d.flush(at(NOW + 60)).unwrap();
    let ack = agg.ingest(&frames[0], Timestamp::from_secs(NOW + 60)).unwrap();
    assert_eq!((frames.len(), ack.reports, ack.refused.len()), (1, 1, 0));
}

// ---- the owner's side: a lost device revoked, subject ids; acknowledgements ------------

/// Once its revocation is in, the aggregator refuses what the device sends: a receipt
/// (`delegation_revoked`, also for one signed before the revocation and arriving after)
/// and a token request (`delegation_revoked`, not to be retried).
fn assert_revoked(agg: &mut Aggregator, receipt: &[u8], token_request: &[u8], now: u64) {
    let refused = agg.receive_receipt(receipt, Timestamp::from_secs(now)).unwrap_err();
    assert!(
        matches!(&refused, ServiceError::Ledger(LedgerError::Enroll(EnrollError::DelegationRevoked))),
        "{refused}"
    );
    assert_eq!(issue_at(agg, token_request, now), Err(IssueError::Refused(PolicyRefusal::DelegationRevoked)));
}

#[test]
fn a_c_owner_revokes_a_lost_device_and_the_aggregator_refuses_it_from_then() {
    let (mut agg, config) = aggregator();
    let (t, lost) = (Timestamp::from_secs(NOW), NOW + 3_600);
    let delegation = c_delegation([7; 32]);
    let d = C::make(&config, Some(&delegation)).unwrap();
    agg.receive_delegation(&delegation, t).unwrap();
    agg.receive_receipt(&d.consent(), t).unwrap();
    assert_eq!(confiance_require_tokens(d.0, 1), ConfianceStatus::Ok);
    d.record(NOW);
    let (scope, count) = d.to_fetch(NOW).pop().unwrap();
    let key = agg.token_public_key(&today()).unwrap().to_bytes();
    assert!(issue_at(&mut agg, &d.request(&scope, &key, count).unwrap(), NOW).is_ok(), "enrolled: served");

    // The thermostat is lost; the owner's app revokes it from then.
    let public = c_public_key([7; 32]);
    let revoke = |subject: [u8; 32], at: u64| {
        // SAFETY: live buffers.
        out(|b, cap, len| unsafe {
            confiance_revoke(subject.as_ptr(), public.as_ptr(), at, lost, b, cap, len)
        })
    };
    let revocation = revoke([1; 32], lost).unwrap();
    let r = SignedRevocation::from_bytes(&revocation).unwrap();
    let owner = SubjectKey::from_bytes(&[1; 32]).subject_id();
    assert_eq!(
        (r.revocation().device, r.revocation().at, r.revocation().issued_at, r.revocation().subject()),
        (DevicePublicKey(public), Timestamp::from_secs(lost), Timestamp::from_secs(lost), owner)
    );
    assert_eq!(revoke([1; 32], 0).unwrap(), revocation, "`at` 0 is now; the same bytes again");
    // NULL keys or length: refused.
    let mut len = 0;
    // SAFETY: NULL is what is tested; the other pointers are live.
    unsafe {
        assert_eq!(
            confiance_revoke(
                std::ptr::null(),
                public.as_ptr(),
                0,
                lost,
                std::ptr::null_mut(),
                0,
                &raw mut len
            ),
            ConfianceStatus::NullArgument
        );
        assert_eq!(
            confiance_revoke(
                [1; 32].as_ptr(),
                public.as_ptr(),
                0,
                lost,
                std::ptr::null_mut(),
                0,
                std::ptr::null_mut()
            ),
            ConfianceStatus::NullArgument
        );
    }
    // Nobody but the owner revokes it: another subject key's revocation is refused.
    let stranger = revoke([2; 32], lost).unwrap();
    let refused = agg.receive_revocation(&stranger, Timestamp::from_secs(lost)).unwrap_err();
    assert!(
        matches!(&refused, ServiceError::Ledger(LedgerError::Enroll(EnrollError::NotEnrolled))),
        "{refused}"
    );
    assert_eq!(
        agg.receive_revocation(&revocation, Timestamp::from_secs(lost)).unwrap(),
        DevicePublicKey(public)
    );

    // From then, what the device sends is refused.
    let receipt = d.consent();
    let request = d.request(&scope, &key, 1).unwrap();
    assert_revoked(&mut agg, &receipt, &request, lost + 60);
}

#[test]
fn a_uniffi_owner_revokes_a_lost_device_and_the_aggregator_refuses_it_from_then() {
    let (mut agg, config) = aggregator();
    let at = |s: u64| UNIX_EPOCH + Duration::from_secs(s);
    let (t, lost) = (Timestamp::from_secs(NOW), NOW + 3_600);
    let owner = vec![1; 32];
    let public = bindings::device_public_key(vec![7; 32]).unwrap();
    let delegation =
        bindings::delegate_device(owner.clone(), public.clone(), at(NOW), None, at(NOW)).unwrap();
    let d = bindings::Recorder::delegated(
        catalogue().canonical_bytes(),
        vec![7; 32],
        vec![8; 32],
        delegation.clone(),
        "calora".into(),
        Some(config),
        bindings::LimitsPreset::Phone,
        Box::new(NoStorage),
    )
    .unwrap();
    agg.receive_delegation(&delegation, t).unwrap();
    agg.receive_receipt(&uniffi_consent(&d), t).unwrap();
    d.require_tokens(true);
    uniffi_record(&d, NOW);
    let f = d.tokens_to_fetch(at(NOW), 6 * 3_600).unwrap().pop().unwrap();
    let key = agg.token_public_key(&today()).unwrap().to_bytes().to_vec();
    let request = d.token_request(f.scope.clone(), key.clone(), f.count).unwrap();
    assert!(issue_at(&mut agg, &request, NOW).is_ok(), "enrolled: served");

    let revocation = bindings::revoke_device(owner.clone(), public.clone(), at(lost), at(lost)).unwrap();
    let r = SignedRevocation::from_bytes(&revocation).unwrap();
    assert_eq!(
        (r.revocation().device.0.to_vec(), r.revocation().at, r.revocation().subject()),
        (public.clone(), Timestamp::from_secs(lost), SubjectKey::from_bytes(&[1; 32]).subject_id())
    );
    // Bad input: typed.
    assert!(matches!(
        bindings::revoke_device(vec![1; 31], public.clone(), at(lost), at(lost)),
        Err(ConfianceError::BadArgument { .. })
    ));
    assert!(matches!(
        bindings::revoke_device(owner.clone(), vec![7; 33], at(lost), at(lost)),
        Err(ConfianceError::BadArgument { .. })
    ));
    assert!(matches!(
        bindings::revoke_device(owner, public.clone(), UNIX_EPOCH - Duration::from_secs(1), at(lost)),
        Err(ConfianceError::BadArgument { .. })
    ));
    let stranger = bindings::revoke_device(vec![2; 32], public, at(lost), at(lost)).unwrap();
    assert!(agg.receive_revocation(&stranger, Timestamp::from_secs(lost)).is_err(), "not the owner's");
    agg.receive_revocation(&revocation, Timestamp::from_secs(lost)).unwrap();

    let receipt = uniffi_consent(&d);
    let request = d.token_request(f.scope, key, 1).unwrap();
    assert_revoked(&mut agg, &receipt, &request, lost + 60);
}

/// The subject id the C recorder `h` reads.
fn c_subject_id(h: *mut ConfianceRecorder) -> String {
    let mut id = [0u8; CONFIANCE_SUBJECT_ID_LEN];
    // SAFETY: a live buffer of CONFIANCE_SUBJECT_ID_LEN bytes.
    assert_eq!(unsafe { confiance_subject_id(h, id.as_mut_ptr().cast()) }, ConfianceStatus::Ok);
    CStr::from_bytes_with_nul(&id).unwrap().to_str().unwrap().to_owned()
}

/// The subject id the owner's app reads from its key, through the C ABI.
fn c_subject_id_of_key(subject: [u8; 32]) -> String {
    let mut id = [0u8; CONFIANCE_SUBJECT_ID_LEN];
    // SAFETY: live buffers of 32 and CONFIANCE_SUBJECT_ID_LEN bytes.
    let s = unsafe { confiance_subject_id_of_key(subject.as_ptr(), id.as_mut_ptr().cast()) };
    assert_eq!(s, ConfianceStatus::Ok);
    CStr::from_bytes_with_nul(&id).unwrap().to_str().unwrap().to_owned()
}

/// The devices subject access lists under `subject` (as an auditor's
/// `GET /v1/subjects/{subject}/access` gives them), checking that the answer's subject
/// prints as `hex`.
fn listed_devices(agg: &Aggregator, subject: SubjectId, hex: &str) -> Vec<DevicePublicKey> {
    let access = agg.ledger().subject_access(&subject, Timestamp::from_secs(NOW), None);
    assert_eq!(access.subject.to_string(), hex);
    access.devices.iter().map(|d| d.device).collect()
}

#[test]
fn the_c_subject_id_is_the_one_subject_access_lists_the_device_under() {
    let t = Timestamp::from_secs(NOW);
    let public = DevicePublicKey(c_public_key([7; 32]));
    // A device its own subject: the hash of its own key, which its receipts name.
    let (mut agg, config) = aggregator();
    let d = C::new(&config);
    // SAFETY: live buffers.
    let enrollment = out(|b, cap, len| unsafe { confiance_enrollment(d.0, 0, 0, NOW, b, cap, len) }).unwrap();
    agg.receive_delegation(&enrollment, t).unwrap();
    let id = c_subject_id(d.0);
    let subject = SignedReceipt::from_bytes(&d.consent()).unwrap().receipt().subject;
    assert_eq!((id.len(), subject), (64, SubjectKey::from_bytes(&[7; 32]).subject_id()));
    assert_eq!(listed_devices(&agg, subject, &id), [public]);
    assert_eq!(c_subject_id_of_key([7; 32]), id, "its key is the subject key");
    drop(d);

    // A delegated device: its owner's, which the owner's app reads from its key.
    let (mut agg, config) = aggregator();
    let delegation = c_delegation([7; 32]);
    let d = C::make(&config, Some(&delegation)).unwrap();
    agg.receive_delegation(&delegation, t).unwrap();
    let id = c_subject_id(d.0);
    let owner = SubjectKey::from_bytes(&[1; 32]).subject_id();
    assert_eq!((c_subject_id_of_key([1; 32]), id.clone()), (owner.to_string(), owner.to_string()));
    assert_eq!(SignedReceipt::from_bytes(&d.consent()).unwrap().receipt().subject, owner);
    assert_eq!(listed_devices(&agg, owner, &id), [public]);
    // NULL: refused; a freed handle too.
    // SAFETY: NULL is what is tested.
    unsafe {
        assert_eq!(confiance_subject_id(d.0, std::ptr::null_mut()), ConfianceStatus::NullArgument);
        let mut id = [0 as std::ffi::c_char; CONFIANCE_SUBJECT_ID_LEN];
        assert_eq!(
            confiance_subject_id_of_key(std::ptr::null(), id.as_mut_ptr()),
            ConfianceStatus::NullArgument
        );
        assert_eq!(confiance_subject_id(std::ptr::null_mut(), id.as_mut_ptr()), ConfianceStatus::BadHandle);
    }
}

#[test]
fn the_uniffi_subject_id_is_the_one_subject_access_lists_the_device_under() {
    let at = |s: u64| UNIX_EPOCH + Duration::from_secs(s);
    let t = Timestamp::from_secs(NOW);
    let public = DevicePublicKey(c_public_key([7; 32]));
    let make = |config: Vec<u8>, delegation: Option<Vec<u8>>| {
        let (catalogue, storage) = (catalogue().canonical_bytes(), Box::new(NoStorage));
        let (key, secret, controller, limits) =
            (vec![7; 32], vec![8; 32], "calora".into(), bindings::LimitsPreset::Phone);
        match delegation {
            None => {
                bindings::Recorder::new(catalogue, key, secret, controller, Some(config), limits, storage)
            }
            Some(d) => bindings::Recorder::delegated(
                catalogue,
                key,
                secret,
                d,
                controller,
                Some(config),
                limits,
                storage,
            ),
        }
        .unwrap()
    };
    let (mut agg, config) = aggregator();
    let d = make(config, None);
    agg.receive_delegation(&d.enrollment(at(NOW), None, at(NOW)).unwrap(), t).unwrap();
    let subject = SignedReceipt::from_bytes(&uniffi_consent(&d)).unwrap().receipt().subject;
    assert_eq!(subject, SubjectKey::from_bytes(&[7; 32]).subject_id());
    assert_eq!(listed_devices(&agg, subject, &d.subject_id()), [public]);
    assert_eq!(bindings::subject_id_of_key(vec![7; 32]).unwrap(), d.subject_id());

    let (mut agg, config) = aggregator();
    let delegation =
        bindings::delegate_device(vec![1; 32], public.0.to_vec(), at(NOW), None, at(NOW)).unwrap();
    let d = make(config, Some(delegation.clone()));
    agg.receive_delegation(&delegation, t).unwrap();
    let owner = SubjectKey::from_bytes(&[1; 32]).subject_id();
    assert_eq!(d.subject_id(), owner.to_string());
    assert_eq!(bindings::subject_id_of_key(vec![1; 32]).unwrap(), owner.to_string());
    assert_eq!(listed_devices(&agg, owner, &d.subject_id()), [public]);
    assert!(matches!(bindings::subject_id_of_key(vec![1; 31]), Err(ConfianceError::BadArgument { .. })));
}

#[test]
fn a_c_envelope_acknowledged_twice_is_a_notice_not_a_failure() {
    let (_, config) = aggregator();
    let d = C::new(&config);
    d.consent();
    d.record(NOW);
    let frames = d.flush(NOW + 60);
    assert_eq!(frames.len(), 1);
    let pending = || {
        let mut n = 0;
        // SAFETY: a live out-pointer.
        assert_eq!(unsafe { confiance_pending_envelopes(d.0, &raw mut n) }, ConfianceStatus::Ok);
        n
    };
    // SAFETY: live buffers.
    let acknowledge = |frame: &[u8]| unsafe { confiance_acknowledge(d.0, frame.as_ptr(), frame.len()) };
    let truncated = &frames[0][..frames[0].len() - 1];
    assert_eq!(acknowledge(truncated), ConfianceStatus::UnknownEnvelope, "never sealed here");
    assert_eq!(pending(), 1, "and still pending");
    // POST /v1/envelopes answered 201:
    assert_eq!(acknowledge(&frames[0]), ConfianceStatus::Ok);
    assert_eq!(pending(), 0);
    // The upload was retried (the first 201 was lost): the second acknowledgement says so.
    assert_eq!(acknowledge(&frames[0]), ConfianceStatus::UnknownEnvelope);
    assert_eq!((pending(), d.counters().envelopes_sealed), (0, 1));
}
