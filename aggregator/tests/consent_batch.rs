//! Batched consent messages and delegations (`Aggregator::receive_consent_batch`,
//! `Aggregator::receive_delegations`) verify their signatures on every core, then record
//! in order: each answer, the ledger and the audit log must be exactly those of the same
//! messages received one at a time — bad signatures, duplicates and withdrawals of
//! receipts recorded earlier in the same batch included.

use confiance::Timestamp;
use confiance::consent::{ConsentRequest, DeviceKey, Scope, SignedReceipt, SubjectKey};
use confiance::envelope::AeadId;
use confiance::hazmat::{SeedableRng as _, SeededRng};
use confiance::ids::MetricId;
use confiance_aggregator::keys::KeyStore;
use confiance_aggregator::service::{Aggregator, AggregatorConfig, ConsentMessage, ServiceError};

#[path = "support/fixtures.rs"]
mod fixtures;
use fixtures::{catalogue, id, recorder};

const T0: u64 = 1_800_000_000;

fn aggregator() -> Aggregator {
    let mut keys = KeyStore::new(86_400);
    keys.generate(
        AeadId::ChaCha20Poly1305,
        Timestamp::EPOCH,
        Timestamp::MAX,
        &mut SeededRng::seed_from_u64(1),
    )
    .unwrap();
    Aggregator::in_memory(catalogue(), keys, AggregatorConfig::default()).unwrap()
}

/// The audit log's events, for comparing two aggregators.
fn events(agg: &Aggregator) -> Vec<String> {
    let log = agg.store().audit_log().unwrap();
    log.export(log.size()).unwrap().iter().map(|e| format!("{e:?}")).collect()
}

/// A signed message with one byte of its signature (at its end) flipped.
fn forged(bytes: &[u8]) -> Vec<u8> {
    let mut b = bytes.to_vec();
    *b.last_mut().unwrap() ^= 1;
    b
}

#[test]
fn a_consent_batch_answers_as_its_messages_one_at_a_time() {
    let when = Timestamp::from_secs(T0);
    let mut devices: Vec<_> = (0..6u64).map(|seed| recorder(40 + seed, "calora", Vec::new())).collect();
    let mut bytes = Vec::new();
    for d in &mut devices {
        for (purpose, metric) in
            [("product-improvement", "thermostat.mode"), ("service", "thermostat.fault-code")]
        {
            let request = ConsentRequest::new(
                id("calora"),
                id(purpose),
                Scope::metrics([id::<MetricId>(metric)]),
                "P60D".parse().unwrap(),
            );
            bytes.push(d.give_consent(request, when).unwrap());
        }
    }
    let later = Timestamp::from_secs(T0 + 3_600);
    let first = SignedReceipt::from_bytes(&bytes[0]).unwrap().id();
    let withdrawal = devices[0].withdraw_consent(&first, later).unwrap();
    let forged_receipt = forged(&bytes[3]);
    let truncated = bytes[4][..bytes[4].len() - 9].to_vec();
    let mut messages: Vec<(ConsentMessage<'_>, Timestamp)> =
        bytes.iter().map(|b| (ConsentMessage::Receipt(b), when)).collect();
    messages.extend([
        (ConsentMessage::Receipt(&bytes[2]), when),
        (ConsentMessage::Receipt(&forged_receipt), when),
        (ConsentMessage::Receipt(&truncated), when),
        (ConsentMessage::Withdrawal(&withdrawal), later),
        (ConsentMessage::Withdrawal(&withdrawal), later),
    ]);
    // More messages than the batch verifies without starting threads.
    assert!(messages.len() >= 16);

    let mut batched = aggregator();
    let got: Vec<Result<String, String>> = batched
        .receive_consent_batch(&messages)
        .unwrap()
        .into_iter()
        .map(|r| r.map(|id| id.to_string()).map_err(|e| e.to_string()))
        .collect();
    let mut single = aggregator();
    let want: Vec<Result<String, String>> = messages
        .iter()
        .map(|(m, t)| {
            let r = match m {
                ConsentMessage::Receipt(b) => single.receive_receipt(b, *t),
                ConsentMessage::Withdrawal(b) => single.receive_withdrawal(b, *t),
            };
            r.map(|id| id.to_string()).map_err(|e| match e {
                ServiceError::Ledger(e) => e.to_string(),
                other => panic!("not a ledger refusal: {other}"),
            })
        })
        .collect();
    assert_eq!(got, want);
    // What the batch refused, and what it kept.
    assert_eq!(got.iter().filter(|r| r.is_ok()).count(), 13, "12 receipts and one withdrawal: {got:?}");
    assert!(got[12].is_err() && got[13].is_err() && got[14].is_err() && got[16].is_err());
    assert_eq!(events(&batched), events(&single));
}

#[test]
fn a_delegation_batch_answers_as_its_delegations_one_at_a_time() {
    let mut rng = SeededRng::seed_from_u64(7);
    let when = Timestamp::from_secs(T0);
    let mut bytes = Vec::new();
    for _ in 0..10 {
        let owner = SubjectKey::generate(&mut rng);
        let device = DeviceKey::generate(&mut rng);
        bytes.push(owner.delegate(device.public_key(), when, None, when).unwrap().to_bytes());
    }
    let forged_delegation = forged(&bytes[5]);
    let mut batch: Vec<(&[u8], Timestamp)> = bytes.iter().map(|b| (b.as_slice(), when)).collect();
    batch.extend([(bytes[1].as_slice(), when), (forged_delegation.as_slice(), when)]);

    let mut batched = aggregator();
    let got: Vec<Result<String, String>> = batched
        .receive_delegations(&batch)
        .unwrap()
        .into_iter()
        .map(|r| r.map(|id| format!("{id:?}")).map_err(|e| e.to_string()))
        .collect();
    let mut single = aggregator();
    let want: Vec<Result<String, String>> = batch
        .iter()
        .map(|(b, t)| {
            single.receive_delegation(b, *t).map(|id| format!("{id:?}")).map_err(|e| match e {
                ServiceError::Ledger(e) => e.to_string(),
                other => panic!("not a ledger refusal: {other}"),
            })
        })
        .collect();
    assert_eq!(got, want);
    assert_eq!(got.iter().filter(|r| r.is_ok()).count(), 10, "{got:?}");
    assert_eq!(events(&batched), events(&single));
}
