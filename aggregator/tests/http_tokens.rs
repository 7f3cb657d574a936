//! Report tokens over real HTTP on loopback: `GET /v1/token-keys` gives the scope key,
//! `POST /v1/tokens` answers a request signed by an enrolled device key with evaluations
//! the device verifies and unblinds, and the tokens admit an envelope at
//! `POST /v1/envelopes`; every refusal has its status, code and `retry` (docs/http.md).

use confiance::Timestamp;
use confiance::consent::{ConsentRequest, ConsentState, DeviceKey, Scope};
use confiance::envelope::AeadId;
use confiance::hazmat::{SeedableRng as _, SeededRng};
use confiance::ids::MetricId;
use confiance::pseudonym::DeviceSecret;
use confiance::recorder::{MemoryStorage, Recorder, RecorderParts, Value as RecValue};
use confiance::token::voprf::PublicKey;
use confiance::token::{PendingTokens, TokenPeriod, TokenRequest, TokenResponse, TokenScope, key_id};
use confiance_aggregator::issuer::IssuerSecret;
use confiance_aggregator::keys::KeyStore;
use confiance_aggregator::server::{hex, unhex};
use confiance_aggregator::service::{Aggregator, AggregatorConfig};

#[path = "support/fixtures.rs"]
mod fixtures;
#[path = "support/http_call.rs"]
mod http_call;
use fixtures::{catalogue, id};
use http_call::{call, now, refused, spawn_server};

const DAY: u64 = 86_400;

#[test]
fn tokens_over_http_issue_verify_spend_and_refuse() {
    let start = now();
    let mut rng = SeededRng::seed_from_u64(5);
    let mut keys = KeyStore::new(DAY);
    let config = keys
        .generate(AeadId::ChaCha20Poly1305, Timestamp::EPOCH, start.saturating_add_secs(30 * DAY), &mut rng)
        .unwrap();
    let mut agg = Aggregator::in_memory(catalogue(), keys, AggregatorConfig::default()).unwrap();
    agg.enable_tokens(IssuerSecret::from_bytes([9; 32])).unwrap();
    // A single-device subject (its device holds the subject key) with consent for
    // calora / product-improvement; the delegated-device case is tests/token_issuance.rs.
    let device = DeviceKey::from_bytes(&[2; 32]);
    let parts = RecorderParts {
        catalogue: catalogue(),
        consent: ConsentState::new(DeviceKey::from_bytes(&[2; 32])),
        pseudonyms: DeviceSecret::generate(&mut rng),
        controller: id("calora"),
        key_configs: vec![config],
        rng: SeededRng::seed_from_u64(6),
    };
    let mut d = Recorder::new(parts, MemoryStorage::default());
    let since = Timestamp::from_secs(start.as_secs() - DAY);
    let mode = id::<MetricId>("thermostat.mode");
    let bytes = d
        .give_consent(
            ConsentRequest::new(
                id("calora"),
                id("product-improvement"),
                Scope::metrics([mode.clone()]),
                "P90D".parse().unwrap(),
            )
            .valid_from(since),
            since,
        )
        .unwrap();
    agg.receive_receipt(&bytes, since).unwrap();
    d.require_tokens(true);

    let (base, stop) = spawn_server(agg, "confiance.test/tokens");
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();

    // The key directory: the current period's key by default, any period on demand.
    let url = |q: &str| format!("{base}/v1/token-keys?{q}");
    let k = call(&agent, "GET", &url("recipients=calora&purpose=product-improvement"), &[]);
    assert_eq!(k.0, 200, "{}", k.1);
    let period = TokenPeriod::at(now(), DAY);
    assert_eq!(k.1["period"].as_u64(), Some(period.0));
    assert_eq!(k.1["end"].as_u64().unwrap() - k.1["start"].as_u64().unwrap(), DAY);
    let pk_bytes: [u8; 32] = unhex(k.1["public_key"].as_str().unwrap()).unwrap().try_into().unwrap();
    let pk = PublicKey::from_bytes(&pk_bytes).unwrap();
    assert_eq!(k.1["key_id"].as_str(), Some(hex(&key_id(&pk)).as_str()));
    let next = call(
        &agent,
        "GET",
        &url(&format!("recipients=calora&purpose=product-improvement&period={}", period.0 + 1)),
        &[],
    );
    assert_ne!(next.1["public_key"], k.1["public_key"], "each period has its own key");
    refused(
        &call(&agent, "GET", &url("recipients=calora&purpose=no-such"), &[]),
        404,
        "unknown_purpose",
        None,
    );
    refused(
        &call(&agent, "GET", &url("recipients=calora&purpose=service"), &[]),
        404,
        "unknown_scope",
        Some(false),
    );
    refused(&call(&agent, "GET", &url("purpose=service"), &[]), 400, "missing_parameter", None);

    // A request signed by the device: evaluated, proved, unblinded by the recorder.
    let scope = TokenScope::new([id("calora")], id("product-improvement"), period);
    let post = |r: &TokenRequest| {
        call(&agent, "POST", &format!("{base}/v1/tokens"), &postcard::to_allocvec(r).unwrap())
    };
    let request = d.token_request(&device, scope.clone(), pk, 20).unwrap();
    let answer = post(&request);
    assert_eq!(answer.0, 200, "{}", answer.1);
    let response: TokenResponse = postcard::from_bytes(&answer.2).unwrap();
    assert_eq!(d.take_token_response(&response), 20, "the proof verifies under the published key");

    // Refusals: status, code, retry — and nothing counted (the quota is intact after).
    let stranger = DeviceKey::from_bytes(&[7; 32]);
    let (_, r) = PendingTokens::request(&stranger, scope.clone(), pk, 1, &mut rng).unwrap();
    refused(&post(&r), 403, "not_enrolled", Some(true));
    let (_, mut r) = PendingTokens::request(&device, scope.clone(), pk, 1, &mut rng).unwrap();
    r.signature[0] ^= 1;
    refused(&post(&r), 403, "bad_signature", Some(false));
    let later = TokenScope { period: TokenPeriod(period.0 + 2), ..scope.clone() };
    let (_, r) = PendingTokens::request(&device, later, pk, 1, &mut rng).unwrap();
    refused(&post(&r), 409, "period_not_open", Some(true));
    let (_, r) = PendingTokens::request(&device, scope.clone(), pk, 5, &mut rng).unwrap();
    refused(&post(&r), 429, "over_quota", Some(true));
    let garbage = call(&agent, "POST", &format!("{base}/v1/tokens"), b"not a request");
    refused(&garbage, 400, "malformed_token_request", Some(false));
    let (pending, r) = PendingTokens::request(&device, scope.clone(), pk, 4, &mut rng).unwrap();
    let last = post(&r);
    assert_eq!(last.0, 200, "the refusals counted nothing: 20 + 4 is the quota");
    assert_eq!(pending.finalize(&postcard::from_bytes(&last.2).unwrap()).unwrap().len(), 4);

    // A token admits the device's envelope.
    d.record(&mode, &id("product-improvement"), RecValue::Category(1), now()).unwrap();
    let frames = d.flush(now());
    assert_eq!((frames.len(), d.tokens_held(&scope)), (1, 19));
    let ok = call(&agent, "POST", &format!("{base}/v1/envelopes"), &frames[0]);
    assert_eq!((ok.0, ok.1["reports"].as_u64()), (201, Some(1)), "{}", ok.1);

    stop();
}
