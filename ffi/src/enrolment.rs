//! Enrolment across the boundary, shared by the C ABI and the UniFFI face: the issuer
//! answers token requests only from a device the ledger has enrolled (docs/privacy.md,
//! "Trust model"). A device is either its own subject (its device key is the subject
//! key: it enrols by posting the delegation of its key by itself) or delegated by a
//! subject that holds its own key (the owner's phone app signs a delegation of the
//! device's key, posts it to `POST /v1/delegations` and hands it to the device, which is
//! made with it).

use confiance::Timestamp;
use confiance::consent::{ConsentError, ConsentState, DeviceKey, SignedDelegation, SubjectKey};
use confiance::ids::DevicePublicKey;

/// The device's consent state: its own subject, or the subject that delegated it by
/// `delegation` (the signed delegation's bytes).
///
/// # Errors
/// The delegation's bytes or signature are bad, or it delegates another device key.
pub(crate) fn consent_state(
    device: &[u8; 32],
    delegation: Option<&[u8]>,
) -> Result<ConsentState, ConsentError> {
    let key = DeviceKey::from_bytes(device);
    match delegation {
        None => Ok(ConsentState::new(key)),
        Some(bytes) => ConsentState::delegated(key, SignedDelegation::from_bytes(bytes)?),
    }
}

/// The device's enrolment as its own subject: the delegation of its key by itself, for
/// `POST /v1/delegations`. Once the ledger has it, the issuer answers the device's
/// token requests whatever the purpose's legal basis, and subject access lists the
/// device. Ed25519 signatures are deterministic: the same arguments give the same bytes.
pub(crate) fn self_delegation(
    device: &DeviceKey,
    valid_from: Timestamp,
    valid_until: Option<Timestamp>,
    now: Timestamp,
) -> Result<Vec<u8>, ConsentError> {
    delegate(&device.to_bytes(), device.public_key(), valid_from, valid_until, now)
}

/// The delegation of `device` by the subject whose key's seed is `subject`, signed at
/// `now`: what the owner's app posts to `POST /v1/delegations` and hands to the device.
pub(crate) fn delegate(
    subject: &[u8; 32],
    device: DevicePublicKey,
    valid_from: Timestamp,
    valid_until: Option<Timestamp>,
    now: Timestamp,
) -> Result<Vec<u8>, ConsentError> {
    Ok(SubjectKey::from_bytes(subject).delegate(device, valid_from, valid_until, now)?.to_bytes())
}

/// The Ed25519 public key of the device key whose seed is `device`: what the owner's app
/// delegates.
pub(crate) fn public_key(device: &[u8; 32]) -> DevicePublicKey {
    DeviceKey::from_bytes(device).public_key()
}

/// The revocation of `device` by the subject whose key's seed is `subject`, from `at` on,
/// signed at `now`: what the owner's app posts to `POST /v1/revocations` when the device
/// is lost, stolen or sold (docs/privacy.md, "Lost device"). From `at` on, and for
/// anything that reaches the ledger after it, the device's receipts, withdrawals and
/// token requests are refused (`delegation_revoked`).
pub(crate) fn revoke(subject: &[u8; 32], device: DevicePublicKey, at: Timestamp, now: Timestamp) -> Vec<u8> {
    SubjectKey::from_bytes(subject).revoke(device, at, now).to_bytes()
}

/// The subject id named by the subject key whose seed is `subject`, as the HTTP API
/// takes it (64 lowercase hex digits: `GET /v1/subjects/{subject}/access`).
pub(crate) fn subject_id_of_key(subject: &[u8; 32]) -> String {
    SubjectKey::from_bytes(subject).subject_id().to_string()
}
