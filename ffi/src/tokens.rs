//! Report tokens across the boundary, shared by the C ABI and the UniFFI
//! face: a token scope travels as its canonical bytes (`TokenScope::to_bytes`, docs/wire-format.md
//! §10.1), which the host passes back as it got them; the scope key as the 32 bytes of
//! `pkS` or the 64 hex digits `GET /v1/token-keys` serves; requests and responses as the
//! postcard bytes of `POST /v1/tokens` (§10.2). Every check here runs before the recorder
//! is touched, so that bad input changes nothing.

use confiance::catalogue::Catalogue;
use confiance::consent::DeviceKey;
use confiance::recorder::{Recorder, Storage};
use confiance::token::{TokenRequest, TokenResponse, TokenScope, voprf};

/// Why token input was refused; nothing changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TokenInputError {
    /// The scope bytes are not a canonical scope, or name no recipient, or a recipient or
    /// purpose the catalogue does not have.
    Scope,
    /// The scope key is neither 32 bytes nor 64 hex digits of a canonical element.
    Key,
    /// A token count of 0 or above the VOPRF batch limit.
    Count,
    /// The response bytes do not decode, or answer no request waiting (another key,
    /// another count, a proof that does not verify).
    Response,
}

impl TokenInputError {
    /// The words a foreign exception carries.
    pub(crate) const fn detail(self) -> &'static str {
        match self {
            Self::Scope => "not the canonical bytes of a token scope of this catalogue",
            Self::Key => "not a token scope key (32 bytes, or 64 hex digits, of a ristretto255 element)",
            Self::Count => "a token request asks for 1 to 1024 tokens",
            Self::Response => "not a token response to a request waiting here (bytes, key, count or proof)",
        }
    }
}

/// The scope whose canonical bytes are `bytes`, if it is one of `catalogue`'s: one or more
/// recipients and a purpose the catalogue names. Bytes that decode but are not canonical
/// (recipients unsorted or repeated, trailing bytes) are refused: the host passes back
/// the bytes it was given.
pub(crate) fn scope(catalogue: &Catalogue, bytes: &[u8]) -> Result<TokenScope, TokenInputError> {
    let scope: TokenScope = match postcard::take_from_bytes(bytes) {
        Ok((scope, [])) => scope,
        _ => return Err(TokenInputError::Scope),
    };
    let known = !scope.recipients.is_empty()
        && catalogue.purpose(&scope.purpose).is_some()
        && scope.recipients.iter().all(|r| catalogue.recipient(r).is_some());
    if !known || scope.to_bytes() != bytes {
        return Err(TokenInputError::Scope);
    }
    Ok(scope)
}

/// The scope key from the 32 bytes of `pkS` or their 64 hex digits (either case).
pub(crate) fn key(bytes: &[u8]) -> Result<voprf::PublicKey, TokenInputError> {
    let raw: [u8; 32] = match bytes.len() {
        32 => bytes.try_into().map_err(|_| TokenInputError::Key)?,
        64 => {
            let mut out = [0u8; 32];
            for (o, pair) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                let digit = |c: u8| char::from(c).to_digit(16);
                let (Some(hi), Some(lo)) = (digit(pair[0]), digit(pair[1])) else {
                    return Err(TokenInputError::Key);
                };
                *o = u8::try_from(hi * 16 + lo).map_err(|_| TokenInputError::Key)?;
            }
            out
        }
        _ => return Err(TokenInputError::Key),
    };
    voprf::PublicKey::from_bytes(&raw).map_err(|_| TokenInputError::Key)
}

/// The query string of `GET /v1/token-keys` for `scope`:
/// `recipients=a,b&purpose=p&period=n` (ids need no escaping: `[a-z0-9_.-]`).
pub(crate) fn key_query(scope: &TokenScope) -> String {
    let recipients: Vec<&str> = scope.recipients.iter().map(|r| r.as_str()).collect();
    format!("recipients={}&purpose={}&period={}", recipients.join(","), scope.purpose, scope.period.0)
}

/// How many bytes a request for `count` tokens of `scope` takes (its layout has fixed
/// sizes but for the scope and the count's varint): known before anything is drawn or
/// kept, so that a buffer too small changes nothing.
pub(crate) fn request_len(device: &DeviceKey, scope: &TokenScope, count: usize) -> usize {
    let shape = TokenRequest {
        device_key: device.public_key(),
        scope: scope.clone(),
        blinded: vec![[0; 32]; count],
        signature: [0; 64],
    };
    postcard::to_allocvec(&shape).map_or(0, |b| b.len())
}

/// A request for `count` tokens of `scope` under `key`, signed by `device`, kept as
/// pending by `recorder`: the postcard bytes for `POST /v1/tokens`.
pub(crate) fn request<R: rand_core::CryptoRng, S: Storage>(
    recorder: &mut Recorder<R, S>,
    device: &DeviceKey,
    scope: TokenScope,
    key: voprf::PublicKey,
    count: usize,
) -> Result<Vec<u8>, TokenInputError> {
    if count == 0 || count > voprf::MAX_BATCH {
        return Err(TokenInputError::Count);
    }
    // `None` only for a count out of range (checked) or an input hashing to the identity
    // (probability 2^-252): the recorder counts it.
    let request = recorder.token_request(device, scope, key, count).ok_or(TokenInputError::Count)?;
    postcard::to_allocvec(&request).map_err(|_| TokenInputError::Count)
}

/// Gives the issuer's answer (postcard bytes) to `recorder`; how many tokens it added.
pub(crate) fn take_response<R: rand_core::CryptoRng, S: Storage>(
    recorder: &mut Recorder<R, S>,
    bytes: &[u8],
) -> Result<usize, TokenInputError> {
    let response: TokenResponse = match postcard::take_from_bytes(bytes) {
        Ok((response, [])) => response,
        _ => return Err(TokenInputError::Response),
    };
    // A response the recorder refuses is counted there (`token_failed`); nothing else changes.
    match recorder.take_token_response(&response) {
        0 => Err(TokenInputError::Response),
        n => Ok(n),
    }
}
