//! Admission control over real HTTP on loopback (docs/http.md): with a catalogue that
//! names a certifier, `POST /v1/device-certificates` takes a manufacturer's certificate,
//! `POST /v1/delegations` and `POST /v1/tokens` refuse an uncertified key with
//! `not_certified` (403, `retry: true`), every bad certificate has its code, and a
//! certified device goes end to end: certificate, delegation, receipt, tokens, envelope.

use confiance::Timestamp;
use confiance::catalogue::Catalogue;
use confiance::consent::{CertifierKey, ConsentRequest, ConsentState, DeviceKey, Scope, SubjectKey};
use confiance::envelope::AeadId;
use confiance::hazmat::{SeedableRng as _, SeededRng};
use confiance::ids::MetricId;
use confiance::pseudonym::DeviceSecret;
use confiance::recorder::{MemoryStorage, Recorder, RecorderParts, Value as RecValue};
use confiance::token::voprf::PublicKey;
use confiance::token::{TokenPeriod, TokenResponse, TokenScope};
use confiance_aggregator::issuer::IssuerSecret;
use confiance_aggregator::keys::KeyStore;
use confiance_aggregator::server::unhex;
use confiance_aggregator::service::{Aggregator, AggregatorConfig};

#[path = "support/fixtures.rs"]
mod fixtures;
#[path = "support/http_call.rs"]
mod http_call;
use fixtures::id;
use http_call::{call, now, refused, spawn_server};

const DAY: u64 = 86_400;

fn recorder(
    cat: &Catalogue,
    consent: ConsentState,
    config: confiance::envelope::KeyConfig,
    seed: u64,
) -> Recorder<SeededRng, MemoryStorage> {
    let mut rng = SeededRng::seed_from_u64(seed);
    let parts = RecorderParts {
        catalogue: cat.clone(),
        consent,
        pseudonyms: DeviceSecret::generate(&mut rng),
        controller: id("calora"),
        key_configs: vec![config],
        rng,
    };
    Recorder::new(parts, MemoryStorage::default())
}

#[test]
fn certificates_over_http_admit_certified_devices_only() {
    let start = now();
    let maker = CertifierKey::from_bytes(&[0xc1; 32]);
    let toml = include_str!("../../examples/catalogue.toml");
    let cat = Catalogue::from_toml_str(&format!(
        "{toml}\n[enrollment]\ncertifiers = [\"{}\"]\n",
        maker.public_key()
    ))
    .unwrap();
    let mut rng = SeededRng::seed_from_u64(5);
    let mut keys = KeyStore::new(DAY);
    let config = keys
        .generate(AeadId::ChaCha20Poly1305, Timestamp::EPOCH, start.saturating_add_secs(30 * DAY), &mut rng)
        .unwrap();
    let mut agg = Aggregator::in_memory(cat.clone(), keys, AggregatorConfig::default()).unwrap();
    agg.enable_tokens(IssuerSecret::from_bytes([9; 32])).unwrap();
    let (base, stop) = spawn_server(agg, "confiance.test/certificates");
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let post = |path: &str, body: &[u8]| call(&agent, "POST", &format!("{base}{path}"), body);

    // The catalogue served names the certifier: devices and auditors see the rule.
    let served = call(&agent, "GET", &format!("{base}/v1/catalogue"), &[]);
    assert!(served.1["toml"].as_str().unwrap().contains(&maker.public_key().to_string()), "{}", served.1);
    assert_eq!(served.1["digest"].as_str(), Some(cat.digest().to_string().as_str()));

    // An owner's phone delegates a device: refused until the device is certified.
    let t = now();
    let since = Timestamp::from_secs(t.as_secs() - DAY);
    let (owner, dev) = (SubjectKey::from_bytes(&[1; 32]), DeviceKey::from_bytes(&[2; 32]));
    let del = owner.delegate(dev.public_key(), since, None, since).unwrap();
    refused(&post("/v1/delegations", &del.to_bytes()), 403, "not_certified", Some(true));

    let key = dev.public_key();
    let later = Timestamp::from_secs(t.as_secs() + 365 * DAY);
    let stranger = CertifierKey::from_bytes(&[0xee; 32]).certify(key, "t3", since, later).unwrap();
    refused(&post("/v1/device-certificates", &stranger.to_bytes()), 403, "unknown_certifier", Some(false));
    let expired = maker.certify(key, "t3", Timestamp::from_secs(0), since).unwrap();
    refused(&post("/v1/device-certificates", &expired.to_bytes()), 403, "certificate_expired", Some(false));
    let early = maker.certify(key, "t3", Timestamp::from_secs(t.as_secs() + DAY), later).unwrap();
    refused(
        &post("/v1/device-certificates", &early.to_bytes()),
        403,
        "certificate_not_yet_valid",
        Some(true),
    );
    let good = maker.certify(key, "t3", since, later).unwrap();
    let mut tampered = good.to_bytes();
    tampered[40] ^= 1;
    refused(&post("/v1/device-certificates", &tampered), 403, "bad_signature", Some(false));
    refused(
        &post("/v1/device-certificates", b"not a certificate"),
        400,
        "malformed_certificate",
        Some(false),
    );
    let other = maker.certify(DeviceKey::from_bytes(&[3; 32]).public_key(), "t3", since, later).unwrap();
    assert_eq!(post("/v1/device-certificates", &other.to_bytes()).0, 201);
    refused(&post("/v1/delegations", &del.to_bytes()), 403, "not_certified", Some(true));

    let ok = post("/v1/device-certificates", &good.to_bytes());
    assert_eq!((ok.0, ok.1["certificate"].as_str()), (201, Some(good.id().to_string().as_str())), "{}", ok.1);
    refused(&post("/v1/device-certificates", &good.to_bytes()), 409, "duplicate_certificate", Some(false));
    assert_eq!(
        post("/v1/delegations", &del.to_bytes()).0,
        201,
        "nothing of the refused delegations was kept"
    );

    // The certified device consents, fetches tokens and reports.
    let mut d =
        recorder(&cat, ConsentState::delegated(DeviceKey::from_bytes(&[2; 32]), del).unwrap(), config, 6);
    let mode = id::<MetricId>("thermostat.mode");
    let grant = ConsentRequest::new(
        id("calora"),
        id("product-improvement"),
        Scope::metrics([mode.clone()]),
        "P90D".parse().unwrap(),
    )
    .valid_from(since);
    let receipt = d.give_consent(grant.clone(), since).unwrap();
    assert_eq!(post("/v1/receipts", &receipt).0, 201);
    d.require_tokens(true);
    let period = TokenPeriod::at(now(), DAY);
    let k = call(
        &agent,
        "GET",
        &format!("{base}/v1/token-keys?recipients=calora&purpose=product-improvement"),
        &[],
    );
    let pk = PublicKey::from_bytes(&unhex(k.1["public_key"].as_str().unwrap()).unwrap().try_into().unwrap())
        .unwrap();
    let scope = TokenScope::new([id("calora")], id("product-improvement"), period);
    let request = d.token_request(&dev, scope.clone(), pk, 3).unwrap();
    let answer = post("/v1/tokens", &postcard::to_allocvec(&request).unwrap());
    assert_eq!(answer.0, 200, "{}", answer.1);
    assert_eq!(d.take_token_response(&postcard::from_bytes::<TokenResponse>(&answer.2).unwrap()), 3);
    d.record(&mode, &id("product-improvement"), RecValue::Category(1), now()).unwrap();
    let frames = d.flush(now());
    assert_eq!(frames.len(), 1);
    let env = post("/v1/envelopes", &frames[0]);
    assert_eq!((env.0, env.1["reports"].as_u64()), (201, Some(1)), "{}", env.1);

    // A single-device subject: its receipt is accepted, its token request is not until
    // its own key is certified.
    let solo = DeviceKey::from_bytes(&[4; 32]);
    let mut s = recorder(&cat, ConsentState::new(DeviceKey::from_bytes(&[4; 32])), config, 7);
    assert_eq!(post("/v1/receipts", &s.give_consent(grant, since).unwrap()).0, 201);
    let request = s.token_request(&solo, scope.clone(), pk, 2).unwrap();
    let bytes = postcard::to_allocvec(&request).unwrap();
    refused(&post("/v1/tokens", &bytes), 403, "not_certified", Some(true));
    let cert = maker.certify(solo.public_key(), "t3", since, later).unwrap();
    assert_eq!(post("/v1/device-certificates", &cert.to_bytes()).0, 201);
    let answer = post("/v1/tokens", &bytes);
    assert_eq!(answer.0, 200, "the refusal counted nothing: {}", answer.1);
    assert_eq!(s.take_token_response(&postcard::from_bytes::<TokenResponse>(&answer.2).unwrap()), 2);

    stop();
}
