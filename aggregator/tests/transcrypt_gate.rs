//! The consent gate of transcryption cannot be walked around (issue #21): each path an
//! audit found is refused with its own error and an audit event, and two colluding
//! recipients — or one recipient across epochs — link no more devices than chance.
//!
//! Every test here fails on the code before the fix (main at 7bd3e39), where
//! `Aggregator::transcrypt` took a bare ciphertext and a subject named by the caller.

use std::collections::HashMap;

use confiance::Timestamp;
use confiance::consent::{ConsentState, DeviceKey, Grant, Scope};
use confiance::hazmat::{SeedableRng as _, SeededRng};
use confiance::ids::{MetricId, PurposeId, ReceiptId, SubjectId};
use confiance::pseudonym::{
    Ciphertext, DeviceSecret, Epoch, PseudonymError, SystemPublicKey, TranscryptionRequest, hazmat as eg,
};
use confiance_aggregator::audit::AuditEvent;
use confiance_aggregator::keys::KeyStore;
use confiance_aggregator::ledger::Ledger;
use confiance_aggregator::service::{Aggregator, AggregatorConfig, TranscryptRefusal};
use confiance_aggregator::transcrypt::{
    ConsentQuery, Domain, DomainTranscryptor, RecipientKey, TranscryptError, Transcryptor, TranscryptorId,
    TranscryptorSecret, system_public_key, transcrypt_chain,
};
use curve25519_dalek::{RistrettoPoint, Scalar};
use rand_core::Rng as _;

#[path = "support/fixtures.rs"]
mod fixtures;
use fixtures::{catalogue, id};

const T0: u64 = 1_800_000_000;
const NOW: Timestamp = Timestamp::from_secs(T0);

fn metric() -> MetricId {
    id("car.charging-kwh")
}

fn purpose() -> PurposeId {
    id("grid-balancing")
}

/// A single-device subject: its consent state (holding its key) and pseudonym secret.
struct Device {
    consent: ConsentState,
    secret: DeviceSecret,
}

impl Device {
    fn new(rng: &mut SeededRng) -> Self {
        Self { consent: ConsentState::new(DeviceKey::generate(rng)), secret: DeviceSecret::generate(rng) }
    }

    fn subject(&self) -> SubjectId {
        self.consent.subject()
    }

    /// Signed receipt bytes for `recipient` (charging energy, grid balancing).
    fn consent_to(&mut self, recipient: &str, rng: &mut SeededRng) -> Vec<u8> {
        thread_local! {
            static CATALOGUE: confiance::catalogue::Catalogue = catalogue();
        }
        let t = Timestamp::from_secs(T0 - 10_000);
        let grant = Grant {
            recipient: id(recipient),
            purpose: purpose(),
            scope: Scope::metrics([metric()]),
            valid_from: t,
            valid_until: None,
            hold: "P90D".parse().unwrap(),
        };
        CATALOGUE.with(|c| self.consent.give(c, grant, t, rng).unwrap().to_bytes())
    }

    fn request(
        &self,
        pk: &SystemPublicKey,
        receipt: ReceiptId,
        domain: &Domain,
        rng: &mut SeededRng,
    ) -> TranscryptionRequest {
        self.consent.transcryption_request(
            &self.secret,
            pk,
            receipt,
            domain.recipient().clone(),
            domain.epoch(),
            rng,
        )
    }
}

/// Two transcryptors and the recipients' domain states.
struct Chain {
    pk: SystemPublicKey,
    domains: HashMap<Domain, (Vec<DomainTranscryptor>, RecipientKey)>,
}

impl Chain {
    fn new(n: u32, domains: &[Domain], rng: &mut SeededRng) -> Self {
        let ts: Vec<Transcryptor> = (1..=n)
            .map(|i| {
                Transcryptor::new(TranscryptorId(i), TranscryptorSecret::from_bytes([i as u8 + 0x30; 32]))
            })
            .collect();
        let refs: Vec<&Transcryptor> = ts.iter().collect();
        let (pk, _) = system_public_key(&refs, rng).unwrap();
        let domains = domains
            .iter()
            .map(|d| {
                let dts: Vec<DomainTranscryptor> = ts.iter().map(|t| t.for_domain(d)).collect();
                let shares: Vec<_> = dts.iter().map(DomainTranscryptor::recipient_key_share).collect();
                (d.clone(), (dts, RecipientKey::from_shares(&shares).unwrap()))
            })
            .collect();
        Self { pk, domains }
    }

    fn chain(&self, d: &Domain) -> Vec<&DomainTranscryptor> {
        self.domains[d].0.iter().collect()
    }

    /// What the recipient of `d` reads from a transcryption's last step.
    fn open(&self, d: &Domain, steps: &[confiance_aggregator::transcrypt::Step]) -> RistrettoPoint {
        let p = self.domains[d].1.decrypt_unverified(&steps.last().unwrap().output).unwrap();
        confiance::pseudonym::decode_point(p.as_bytes()).unwrap()
    }
}

fn aggregator() -> Aggregator {
    Aggregator::in_memory(catalogue(), KeyStore::new(86_400), AggregatorConfig::default()).unwrap()
}

fn refused(r: Result<Vec<confiance_aggregator::transcrypt::Step>, TranscryptRefusal>) -> TranscryptError {
    match r {
        Err(TranscryptRefusal::Failed(e)) => e,
        other => panic!("not refused: {other:?}"),
    }
}

fn last_refusal(agg: &Aggregator) -> Option<String> {
    let log = agg.store().audit_log().unwrap();
    log.export(log.size()).unwrap().into_iter().rev().find_map(|e| match e.event {
        AuditEvent::TranscryptionRefused { code, .. } => Some(code),
        _ => None,
    })
}

fn voltis() -> Domain {
    Domain::new(id("voltis"))
}

fn gridco() -> Domain {
    Domain::new(id("gridco"))
}

/// Path 1 of the audit: with consent for voltis only, a request sent to gridco's chain,
/// or a gridco request under the voltis receipt, is refused (the old code returned
/// gridco the device's real gridco pseudonym while the ledger recorded voltis).
#[test]
fn the_chain_domain_must_be_the_consented_recipient() {
    let mut rng = SeededRng::seed_from_u64(1);
    let mut agg = aggregator();
    let chain = Chain::new(2, &[voltis(), gridco()], &mut rng);
    let mut dev = Device::new(&mut rng);
    let receipt = agg.receive_receipt(&dev.consent_to("voltis", &mut rng), NOW).unwrap();
    let s = dev.subject();

    let to_voltis = dev.request(&chain.pk, receipt, &voltis(), &mut rng);
    let r = agg.transcrypt(&chain.chain(&gridco()), &to_voltis, &metric(), &purpose(), &s, NOW, &mut rng);
    assert_eq!(refused(r), TranscryptError::DomainMismatch);
    assert_eq!(last_refusal(&agg).as_deref(), Some("domain-mismatch"));

    let to_gridco = dev.request(&chain.pk, receipt, &gridco(), &mut rng);
    let r = agg.transcrypt(&chain.chain(&gridco()), &to_gridco, &metric(), &purpose(), &s, NOW, &mut rng);
    assert_eq!(refused(r), TranscryptError::ReceiptMismatch);
    assert_eq!(last_refusal(&agg).as_deref(), Some("receipt-mismatch"));
    assert!(agg.ledger().unconsented_disclosures(Timestamp::EPOCH, Timestamp::MAX).is_empty());

    // The request as signed goes through on voltis's chain.
    assert!(
        agg.transcrypt(&chain.chain(&voltis()), &to_voltis, &metric(), &purpose(), &s, NOW, &mut rng).is_ok()
    );
}

/// Path 2: a victim's ciphertext cannot ride on another subject's consent — neither the
/// victim's own signed request named under the consenting subject, nor the victim's
/// ciphertext re-signed by the consenting subject's device.
#[test]
fn a_ciphertext_of_one_subject_under_anothers_consent_is_refused() {
    let mut rng = SeededRng::seed_from_u64(2);
    let mut agg = aggregator();
    let chain = Chain::new(2, &[voltis()], &mut rng);
    let victim = Device::new(&mut rng);
    let mut other = owned_device(&mut rng);
    let receipt = agg.receive_receipt(&other.consent_to("voltis", &mut rng), NOW).unwrap();
    let c = chain.chain(&voltis());

    let victims = victim.request(&chain.pk, receipt, &voltis(), &mut rng);
    let r = agg.transcrypt(&c, &victims, &metric(), &purpose(), &other.subject(), NOW, &mut rng);
    assert_eq!(refused(r), TranscryptError::DeviceNotAuthorised);
    assert_eq!(last_refusal(&agg).as_deref(), Some("device-not-authorised"));

    let resigned = eg::sign_request_for_ciphertext(
        &DeviceKey::from_bytes(&[0; 32]),
        victims.ciphertext(),
        receipt,
        id("voltis"),
        None,
        &mut rng,
    );
    // Re-signed by a key that is not the consenting device's: the proof (checked before
    // the ledger is asked) fails, as the signer does not know the plaintext.
    let r = agg.transcrypt(&c, &resigned, &metric(), &purpose(), &other.subject(), NOW, &mut rng);
    assert_eq!(refused(r), TranscryptError::BadPlaintextProof);
    // The consenting device itself re-signing the victim's ciphertext: it does not know
    // the plaintext's logarithm.
    let resigned = other_device_signs(&other, victims.ciphertext(), receipt, &voltis(), &mut rng);
    let r = agg.transcrypt(&c, &resigned, &metric(), &purpose(), &other.subject(), NOW, &mut rng);
    assert_eq!(refused(r), TranscryptError::BadPlaintextProof);
    assert_eq!(last_refusal(&agg).as_deref(), Some("bad-plaintext-proof"));
}

/// `device`'s key signing a ciphertext it did not make (its proof made with zero
/// witnesses, the best it can do without the plaintext's logarithm).
fn other_device_signs(
    device: &Device,
    ct: &Ciphertext,
    receipt: ReceiptId,
    domain: &Domain,
    rng: &mut SeededRng,
) -> TranscryptionRequest {
    // The consent state does not lend its key; the test devices keep a copy of the
    // seed for this purpose.
    let key = DeviceKey::from_bytes(&device_seed(device));
    eg::sign_request_for_ciphertext(&key, ct, receipt, domain.recipient().clone(), domain.epoch(), rng)
}

thread_local! {
    static SEEDS: std::cell::RefCell<HashMap<SubjectId, [u8; 32]>> = std::cell::RefCell::new(HashMap::new());
}

fn device_seed(device: &Device) -> [u8; 32] {
    SEEDS.with(|s| s.borrow()[&device.subject()])
}

/// A device whose key seed the test keeps (to play a recipient that owns a device).
fn owned_device(rng: &mut SeededRng) -> Device {
    let mut seed = [0u8; 32];
    rng.fill_bytes(&mut seed);
    let d = Device {
        consent: ConsentState::new(DeviceKey::from_bytes(&seed)),
        secret: DeviceSecret::generate(rng),
    };
    SEEDS.with(|s| s.borrow_mut().insert(d.subject(), seed));
    d
}

/// Path 3: a recipient that owns a consenting device re-encrypts a pseudonym it received
/// and submits it for the other recipient's domain; on the old code both recipients then
/// held `s_A·s_B·M` and linked every device. Now the proof of plaintext knowledge fails.
/// Scaled `(5B, 5C, Y)` and shifted `+Enc(G)` ciphertexts: the signature breaks, and
/// re-signed they fail the proof.
#[test]
fn pseudonyms_sent_back_in_and_malleated_ciphertexts_are_refused() {
    let mut rng = SeededRng::seed_from_u64(3);
    let mut agg = aggregator();
    let chain = Chain::new(2, &[voltis(), gridco()], &mut rng);
    let mut honest = Device::new(&mut rng);
    let rv = agg.receive_receipt(&honest.consent_to("voltis", &mut rng), NOW).unwrap();
    let mut mallory = owned_device(&mut rng);
    let mg = agg.receive_receipt(&mallory.consent_to("gridco", &mut rng), NOW).unwrap();
    let mv = agg.receive_receipt(&mallory.consent_to("voltis", &mut rng), NOW).unwrap();

    let req = honest.request(&chain.pk, rv, &voltis(), &mut rng);
    let steps = agg
        .transcrypt(&chain.chain(&voltis()), &req, &metric(), &purpose(), &honest.subject(), NOW, &mut rng)
        .unwrap();
    let p_voltis = chain.open(&voltis(), &steps);

    // Sent back in, for gridco, by mallory's device.
    let back = Ciphertext::encrypt(&p_voltis, &chain.pk, &mut rng);
    let sent = other_device_signs(&mallory, &back, mg, &gridco(), &mut rng);
    let r = agg.transcrypt(
        &chain.chain(&gridco()),
        &sent,
        &metric(),
        &purpose(),
        &mallory.subject(),
        NOW,
        &mut rng,
    );
    assert_eq!(refused(r), TranscryptError::BadPlaintextProof);

    // Scaled and shifted versions of the honest request, keeping its signature.
    let (b, c, y) = req.ciphertext().points();
    let five = Scalar::from(5u8);
    let g = Ciphertext::encrypt(&curve25519_dalek::constants::RISTRETTO_BASEPOINT_POINT, &chain.pk, &mut rng);
    let (gb, gc, _) = g.points();
    let scaled = Ciphertext::from_points(five * b, five * c, *y).unwrap();
    let shifted = Ciphertext::from_points(b + gb, c + gc, *y).unwrap();
    for ct in [scaled, shifted] {
        let mut bytes = req.to_bytes();
        bytes[1..97].copy_from_slice(&ct.to_bytes());
        let forged = TranscryptionRequest::from_bytes(&bytes).unwrap();
        assert_eq!(forged.verify(), Err(PseudonymError::BadSignature));
        let r = agg.transcrypt(
            &chain.chain(&voltis()),
            &forged,
            &metric(),
            &purpose(),
            &honest.subject(),
            NOW,
            &mut rng,
        );
        assert_eq!(refused(r), TranscryptError::BadSignature);
        // Re-signed by mallory for its own voltis consent: no proof.
        let resigned = other_device_signs(&mallory, &ct, mv, &voltis(), &mut rng);
        let r = agg.transcrypt(
            &chain.chain(&voltis()),
            &resigned,
            &metric(),
            &purpose(),
            &mallory.subject(),
            NOW,
            &mut rng,
        );
        assert_eq!(refused(r), TranscryptError::BadPlaintextProof);
    }
    assert_eq!(last_refusal(&agg).as_deref(), Some("bad-plaintext-proof"));
    // A request for epoch 0 is refused by the same recipient's epoch-1 chain.
    let epochs = Chain::new(
        1,
        &[Domain::with_epoch(id("voltis"), Epoch(0)), Domain::with_epoch(id("voltis"), Epoch(1))],
        &mut rng,
    );
    let e0 = honest.request(&epochs.pk, rv, &Domain::with_epoch(id("voltis"), Epoch(0)), &mut rng);
    let r = agg.transcrypt(
        &epochs.chain(&Domain::with_epoch(id("voltis"), Epoch(1))),
        &e0,
        &metric(),
        &purpose(),
        &honest.subject(),
        NOW,
        &mut rng,
    );
    assert_eq!(refused(r), TranscryptError::DomainMismatch);
}

/// Devices of the collusion tests.
const DEVICES: usize = 10_000;

/// What colluding recipients of `domains[0]` and `domains[1]` can link, over
/// [`DEVICES`] honest devices that each send one signed request to each domain through
/// one honest, checking transcryptor (the ledger is the real one).
///
/// The colluders pool the two pseudonym lists (each in an order of its own) and own an
/// enrolled device consenting to both recipients. They submit, for each pseudonym they
/// received, its re-encryption for the other domain signed by their device; and for a
/// sample of captured honest requests, the request re-addressed to the other domain.
/// Every accepted submission joins their pool; they link two pseudonyms when the
/// feed-back outputs agree, and match the rest by sorted order (a fixed function of
/// their pool). Returns (accepted submissions, correctly linked devices).
fn collusion(domains: [Domain; 2], seed: u64) -> (usize, usize) {
    let mut rng = SeededRng::seed_from_u64(seed);
    let chain = Chain::new(1, &domains, &mut rng);
    let mut ledger = Ledger::in_memory(catalogue()).unwrap();
    let recipients: Vec<String> = {
        let mut r: Vec<String> = domains.iter().map(|d| d.recipient().as_str().to_owned()).collect();
        r.dedup();
        r
    };
    let ingest = |ledger: &mut Ledger, d: &mut Device, rng: &mut SeededRng| -> HashMap<String, ReceiptId> {
        recipients
            .iter()
            .map(|r| (r.clone(), ledger.ingest_receipt(&d.consent_to(r, rng), NOW).unwrap()))
            .collect()
    };
    let query = |d: &Domain, s: SubjectId| ConsentQuery {
        recipient: d.recipient().clone(),
        metric: metric(),
        purpose: purpose(),
        subject: s,
        at: NOW,
    };
    let mut mallory = owned_device(&mut rng);
    let mallory_receipts = ingest(&mut ledger, &mut mallory, &mut rng);

    // Honest traffic: pseudonym k of each list belongs to device truth[j][k].
    let mut lists: [Vec<(RistrettoPoint, usize)>; 2] = [Vec::new(), Vec::new()];
    let mut captured: Vec<(TranscryptionRequest, SubjectId)> = Vec::new();
    for dev_ix in 0..DEVICES {
        let mut dev = Device::new(&mut rng);
        let receipts = ingest(&mut ledger, &mut dev, &mut rng);
        for (j, d) in domains.iter().enumerate() {
            let req = dev.request(&chain.pk, receipts[d.recipient().as_str()], d, &mut rng);
            let steps =
                transcrypt_chain(&chain.chain(d), &req, &ledger, &query(d, dev.subject()), &mut rng).unwrap();
            lists[j].push((chain.open(d, &steps), dev_ix));
            if dev_ix % 100 == 0 && j == 0 {
                captured.push((req, dev.subject()));
            }
        }
    }
    // Each recipient receives its list in an order of its own.
    for list in &mut lists {
        for i in (1..list.len()).rev() {
            list.swap(i, (rng.next_u64() % (i as u64 + 1)) as usize);
        }
    }

    // Submissions.
    let mut accepted = 0;
    let mut fed_back: [HashMap<[u8; 32], usize>; 2] = [HashMap::new(), HashMap::new()];
    for (j, list) in lists.iter().enumerate() {
        let other = &domains[1 - j];
        for (k, (p, _)) in list.iter().enumerate() {
            let ct = Ciphertext::encrypt(p, &chain.pk, &mut rng);
            let receipt = mallory_receipts[other.recipient().as_str()];
            let req = other_device_signs(&mallory, &ct, receipt, other, &mut rng);
            if let Ok(steps) = transcrypt_chain(
                &chain.chain(other),
                &req,
                &ledger,
                &query(other, mallory.subject()),
                &mut rng,
            ) {
                accepted += 1;
                fed_back[j].insert(chain.open(other, &steps).compress().to_bytes(), k);
            }
        }
    }
    for (req, subject) in &captured {
        let mut bytes = req.to_bytes();
        let fixed = confiance::pseudonym::REQUEST_FIXED_LEN;
        bytes.truncate(fixed);
        bytes.extend_from_slice(domains[1].recipient().as_str().as_bytes());
        if domains[1].epoch().is_some() {
            bytes[290..298].copy_from_slice(&domains[1].epoch().unwrap().0.to_be_bytes());
        }
        if let Ok(moved) = TranscryptionRequest::from_bytes(&bytes)
            && transcrypt_chain(
                &chain.chain(&domains[1]),
                &moved,
                &ledger,
                &query(&domains[1], *subject),
                &mut rng,
            )
            .is_ok()
        {
            accepted += 1;
        }
    }

    // Linking: equal feed-back outputs first, then sorted order for the rest.
    let mut link: HashMap<usize, usize> = HashMap::new();
    for (point, &ka) in &fed_back[0] {
        if let Some(&kb) = fed_back[1].get(point) {
            link.insert(ka, kb);
        }
    }
    let linked_b: std::collections::HashSet<usize> = link.values().copied().collect();
    let mut rest_a: Vec<usize> = (0..DEVICES).filter(|k| !link.contains_key(k)).collect();
    let mut rest_b: Vec<usize> = (0..DEVICES).filter(|k| !linked_b.contains(k)).collect();
    rest_a.sort_by_key(|&k| lists[0][k].0.compress().to_bytes());
    rest_b.sort_by_key(|&k| lists[1][k].0.compress().to_bytes());
    link.extend(rest_a.into_iter().zip(rest_b));
    let correct = link.iter().filter(|&(&ka, &kb)| lists[0][ka].1 == lists[1][kb].1).count();
    (accepted, correct)
}

/// The statistic is the number of devices the colluders link correctly. By chance — a
/// matching that is a fixed function of values independent of the devices' identities —
/// it is the number of fixed points of a uniform random permutation: mean 1, variance 1,
/// P(≥ 11) = Σ_{k≥11} e⁻¹/k! ≈ 1.0·10⁻⁸. The tolerance is ≤ 10 links; the feed-back
/// attack on the old code linked every device (10⁴). Every submission must be refused.
const MAX_LINKS: usize = 10;

#[test]
fn two_colluding_recipients_link_no_more_than_chance() {
    let (accepted, correct) = collusion([voltis(), gridco()], 21);
    println!("voltis × gridco: {correct} of {DEVICES} devices linked, {accepted} submissions accepted");
    assert_eq!(accepted, 0, "submissions accepted");
    assert!(correct <= MAX_LINKS, "{correct} devices linked across voltis and gridco");
}

#[test]
fn one_recipient_links_no_more_than_chance_across_epochs() {
    let (accepted, correct) = collusion(
        [Domain::with_epoch(id("voltis"), Epoch(0)), Domain::with_epoch(id("voltis"), Epoch(1))],
        22,
    );
    println!("voltis epoch 0 × 1: {correct} of {DEVICES} devices linked, {accepted} submissions accepted");
    assert_eq!(accepted, 0, "submissions accepted");
    assert!(correct <= MAX_LINKS, "{correct} devices linked across epochs");
}
