//! The device SDK in about fifty lines: a thermostat that asks its owner for consent,
//! records statistics (noised on the device) and a service record (pseudonymous, under a
//! signed receipt), seals them and hands the frames to its host to send.
//!
//! Run: `cargo run --example thermostat`
//!
//! Everything between the two `---` rules is device code; around it, the example plays
//! the server's part (a key to seal to, an aggregator that opens what the device sent).

use confiance::Timestamp;
use confiance::catalogue::Catalogue;
use confiance::consent::{ConsentRequest, ConsentState, DeviceKey, Scope, SubjectKey};
use confiance::envelope::AeadId;
use confiance::ids::{MetricId, PurposeId, RecipientId};
use confiance::pseudonym::DeviceSecret;
use confiance::recorder::{MemoryStorage, Recorder, RecorderParts, Value};
use confiance::rng::OsRng;
use confiance_aggregator::keys::KeyStore;
use confiance_aggregator::service::{Aggregator, AggregatorConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let catalogue = Catalogue::from_toml_str(include_str!("catalogue.toml"))?;
    let now = Timestamp::parse_rfc3339("2026-12-01T08:00:00Z")?;
    let mut rng = OsRng::new();
    // The server publishes a key configuration; the device seals to it.
    let mut keys = KeyStore::new(30 * 86_400);
    let key_config =
        keys.generate(AeadId::ChaCha20Poly1305, now, now.saturating_add_secs(30 * 86_400), &mut rng)?;

    // --- device ---------------------------------------------------------------------------
    // The owner's phone app holds the subject key (the subject id is its hash) and
    // enrolls the thermostat's key; the delegation goes to the device and to the brand.
    let owner = SubjectKey::generate(&mut rng);
    let device_key = DeviceKey::generate(&mut rng);
    let delegation = owner.delegate(device_key.public_key(), now, None, now)?;
    let delegation_bytes = delegation.to_bytes();
    let parts = RecorderParts {
        catalogue: catalogue.clone(),
        consent: ConsentState::delegated(device_key, delegation)?,
        pseudonyms: DeviceSecret::generate(&mut rng),
        controller: RecipientId::new("calora")?,
        key_configs: vec![key_config],
        rng: OsRng::new(),
    };
    // The host gives the recorder somewhere to persist its queue and outbox (flash, a
    // file); `MemoryStorage` stands in for it here.
    let mut thermostat = Recorder::new(parts, MemoryStorage::default());

    // The owner agrees (in the app) to statistics for product improvement and to the
    // boiler's fault codes for service, held 90 days and 1 year. Each call returns a
    // signed receipt for the host to send to the brand.
    let (calora, mode, fault) = (
        RecipientId::new("calora")?,
        MetricId::new("thermostat.mode")?,
        MetricId::new("thermostat.fault-code")?,
    );
    let improvement = PurposeId::new("product-improvement")?;
    let stats = Scope::metrics([mode.clone()]);
    let receipt = thermostat.give_consent(
        ConsentRequest::new(calora.clone(), improvement.clone(), stats, "P90D".parse()?),
        now,
    )?;
    let service = Scope::metrics([fault.clone()]);
    let record_receipt = thermostat.give_consent(
        ConsentRequest::new(calora, PurposeId::new("service")?, service, "P1Y".parse()?),
        now,
    )?;

    // Recording never fails and never panics: what cannot be recorded is counted (here
    // the catalogue's budget of ε = 8 a day, at ε = 1 a report, stops 8 of the 24).
    for hour in 0..24u64 {
        let t = now.saturating_add_secs(hour * 3_600);
        let _ = thermostat.record(&mode, &improvement, Value::Category(if hour < 7 { 1 } else { 2 }), t);
    }
    let _ = thermostat.record_service(&fault, Value::Int(42), now);
    let later = now.saturating_add_secs(86_400);
    let frames = thermostat.flush(later); // sealed envelopes, ready to send
    println!("device: {:?}", thermostat.counters());
    // --- end of device code ---------------------------------------------------------------

    // The server side: consent first, then the envelopes; each acknowledgement lets the
    // device drop the frame from its outbox.
    let mut agg = Aggregator::in_memory(catalogue, keys, AggregatorConfig::default())?;
    agg.receive_delegation(&delegation_bytes, later)?;
    agg.receive_receipt(&receipt, later)?;
    agg.receive_receipt(&record_receipt, later)?;
    for frame in &frames {
        let ack = agg.ingest(frame, later)?;
        thermostat.acknowledge(frame);
        println!("server: envelope of {} bytes acknowledged, {} reports", frame.len(), ack.reports);
    }
    println!("device: {} envelopes still waiting for an acknowledgement", thermostat.pending_envelopes());
    Ok(())
}
