//! Anonymous report tokens: the device's side of the Privacy Pass architecture
//! (RFC 9576) with an issuance protocol in the manner of RFC 9578's privately verifiable
//! tokens, on the RFC 9497 VOPRF over ristretto255 ([`voprf`]).
//!
//! A token says "an enrolled device that may report for this [`TokenScope`] (recipients,
//! purpose, period) sent this envelope", and nothing else. The device picks a random
//! nonce per token, blinds each token input and sends a [`TokenRequest`] signed with its
//! device key; the issuer answers with one evaluation per token and one batched DLEQ
//! proof ([`TokenResponse`]); the device checks the proof against the scope's key,
//! unblinds, and keeps [`Token`]s, each spent in one envelope. Because the issuer only
//! ever sees blinded elements, it cannot tell which of the tokens it issued an envelope
//! spends.
//!
//! ```
//! use confiance::consent::DeviceKey;
//! use confiance::ids::{PurposeId, RecipientId};
//! use confiance::token::{TokenPeriod, TokenScope, PendingTokens};
//!
//! let key = DeviceKey::from_bytes(&[3; 32]);
//! let scope = TokenScope::new(
//!     [RecipientId::new("acme")?],
//!     PurposeId::new("product-improvement")?,
//!     TokenPeriod(20_000),
//! );
//! # use confiance::hazmat::SeedableRng as _;
//! let mut rng = confiance::hazmat::SeededRng::seed_from_u64(9);
//! // The scope's public key, from the issuer's key directory.
//! let (_, scope_key) = confiance::token::voprf::derive_key_pair(&[1; 32], b"example")?;
//! let (pending, request) = PendingTokens::request(&key, scope, scope_key, 4, &mut rng)?;
//! assert_eq!(request.blinded.len(), 4);
//! assert!(request.verify_signature().is_ok());
//! # let _ = pending;
//! # Ok::<(), Box<dyn core::error::Error>>(())
//! ```

pub mod voprf;

use alloc::collections::BTreeSet;
use alloc::vec::Vec;
use core::fmt;

use curve25519_dalek::ristretto::RistrettoPoint;
use curve25519_dalek::scalar::Scalar;
use ed25519_dalek::{Signature, VerifyingKey};
use sha2::{Digest, Sha256};
use zeroize::Zeroize;

use crate::consent::DeviceKey;
use crate::ids::{DevicePublicKey, PurposeId, RecipientId};
use crate::time::Timestamp;

pub use voprf::VoprfError;

/// The first token type (RFC 9578 §5 numbering, from the private-use range):
/// VOPRF(ristretto255, SHA-512), privately verifiable, scope-bound, redeemed with the
/// RFC 9497 output (the authenticator). Still accepted; see [`TokenType`].
pub const TOKEN_TYPE: u16 = TokenType::Authenticator.code();
/// The token type devices make by default: the same issuance, redeemed with the unblinded
/// element `N = skS·HashToGroup(token_input)`, which the verifier checks a window at a
/// time. See [`TokenType`].
pub const TOKEN_TYPE_ELEMENT: u16 = TokenType::Element.code();
/// Bytes of the longest [`Token`] on the wire (type `0xC0F1`): type, nonce, scope digest,
/// key id, authenticator. [`Token::wire_len`] gives a token's own length.
pub const TOKEN_LEN: usize = TOKEN_INPUT_LEN + voprf::OUTPUT_LEN;
/// Bytes of a token of type `0xC0F2` on the wire: type, nonce, scope digest, key id,
/// unblinded element.
pub const ELEMENT_TOKEN_LEN: usize = TOKEN_INPUT_LEN + voprf::ELEMENT_LEN;
/// Bytes of a token input (what the VOPRF evaluates): type, nonce, scope digest, key id.
pub const TOKEN_INPUT_LEN: usize = 2 + 32 + 32 + 32;
/// Domain label of a scope digest.
const SCOPE_LABEL: &[u8] = b"confiance/token-scope/v1";
/// Domain label of a token request's signature.
const REQUEST_LABEL: &[u8] = b"confiance/token-request/v1";
/// Domain label of a key id.
const KEY_ID_LABEL: &[u8] = b"confiance/token-key-id/v1";

/// Why a token operation failed. The device side never panics on any of these; a
/// recorder counts them and keeps working.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenError {
    /// The VOPRF refused (bad proof, another key, malformed or identity element…).
    Voprf(VoprfError),
    /// The response answers a different number of tokens than were asked for.
    CountMismatch,
    /// A request for zero tokens or more than [`voprf::MAX_BATCH`].
    BadCount,
    /// The request's signature does not verify under its device key, or the key is not a
    /// valid Ed25519 point.
    BadSignature,
    /// Bytes that do not decode as a token.
    Malformed,
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Voprf(e) => write!(f, "voprf: {e}"),
            Self::CountMismatch => f.write_str("response has another number of tokens than asked"),
            Self::BadCount => f.write_str("token count must be between 1 and the batch limit"),
            Self::BadSignature => f.write_str("token request signature does not verify"),
            Self::Malformed => f.write_str("malformed token"),
        }
    }
}

impl From<VoprfError> for TokenError {
    fn from(e: VoprfError) -> Self {
        Self::Voprf(e)
    }
}

impl core::error::Error for TokenError {}

/// A token period: the index of a fixed-length window of time (`t / length`), the
/// length being the catalogue's [`Limits::token_period`](crate::catalogue::Limits).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub struct TokenPeriod(pub u64);

impl TokenPeriod {
    /// The period holding `t`, for periods of `length_secs` (≥ 1) seconds.
    ///
    /// ```
    /// use confiance::Timestamp;
    /// use confiance::token::TokenPeriod;
    /// assert_eq!(TokenPeriod::at(Timestamp::from_secs(86_400 * 3 + 5), 86_400), TokenPeriod(3));
    /// ```
    #[must_use]
    pub fn at(t: Timestamp, length_secs: u64) -> Self {
        Self(t.as_secs() / length_secs.max(1))
    }

    /// When this period starts.
    #[must_use]
    pub fn start(self, length_secs: u64) -> Timestamp {
        Timestamp::from_secs(self.0.saturating_mul(length_secs.max(1)))
    }

    /// When this period ends (the start of the next).
    #[must_use]
    pub fn end(self, length_secs: u64) -> Timestamp {
        Timestamp::from_secs(self.0.saturating_add(1).saturating_mul(length_secs.max(1)))
    }
}

/// What a token allows: reports for this purpose, to exactly these recipients, in this
/// period.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub struct TokenScope {
    /// The audience (sorted, distinct).
    pub recipients: BTreeSet<RecipientId>,
    /// The purpose.
    pub purpose: PurposeId,
    /// The period.
    pub period: TokenPeriod,
}

impl TokenScope {
    /// A scope.
    pub fn new(
        recipients: impl IntoIterator<Item = RecipientId>,
        purpose: PurposeId,
        period: TokenPeriod,
    ) -> Self {
        Self { recipients: recipients.into_iter().collect(), purpose, period }
    }

    /// The canonical bytes (postcard), which key derivation and the digest hash.
    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        postcard::to_allocvec(self).unwrap_or_default()
    }

    /// `SHA-256("confiance/token-scope/v1" ‖ bytes)`: the token's `challenge_digest`
    /// (RFC 9578 §5.1), binding each token to one scope.
    #[must_use]
    pub fn digest(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(SCOPE_LABEL);
        h.update(self.to_bytes());
        h.finalize().into()
    }
}

/// The key id of a scope key: `SHA-256("confiance/token-key-id/v1" ‖ pkS)` (RFC 9578
/// §5.1 `token_key_id`).
#[must_use]
pub fn key_id(pk: &voprf::PublicKey) -> [u8; 32] {
    key_id_of_bytes(&pk.to_bytes())
}

/// [`key_id`] of a public key already serialised.
///
/// ```
/// # use confiance::token::{key_id, key_id_of_bytes, voprf};
/// let (_, pk) = voprf::derive_key_pair(&[1; 32], b"example")?;
/// assert_eq!(key_id_of_bytes(&pk.to_bytes()), key_id(&pk));
/// # Ok::<(), voprf::VoprfError>(())
/// ```
#[must_use]
pub fn key_id_of_bytes(pk: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(KEY_ID_LABEL);
    h.update(pk);
    h.finalize().into()
}

/// How a token is redeemed, named by its 2-byte type (the first bytes of the token and of
/// its input, so a token of one type is never a token of the other). Issuance is the
/// same RFC 9497 VOPRF for both; the issuer cannot tell which type it evaluates.
///
/// ```
/// use confiance::token::TokenType;
/// assert_eq!(TokenType::from_code(0xC0F2), Some(TokenType::Element));
/// assert_eq!(TokenType::Element.wire_len(), 130);
/// assert_eq!(TokenType::Authenticator.wire_len(), 162);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum TokenType {
    /// `0xC0F1`: the token carries the RFC 9497 output `Finalize(token_input, N)` (64
    /// bytes); the verifier recomputes it with `Evaluate`, one token at a time.
    Authenticator,
    /// `0xC0F2`: the token carries the unblinded element `N = skS·HashToGroup(token_input)`
    /// (32 bytes, canonical ristretto255); the verifier checks a window of them with one
    /// multiplication by the secret key. What devices make by default.
    #[default]
    Element,
}

impl TokenType {
    /// The 2-byte code, big-endian on the wire.
    #[must_use]
    pub const fn code(self) -> u16 {
        match self {
            Self::Authenticator => 0xC0F1,
            Self::Element => 0xC0F2,
        }
    }

    /// The type of a code, if it is one of ours.
    #[must_use]
    pub const fn from_code(code: u16) -> Option<Self> {
        match code {
            0xC0F1 => Some(Self::Authenticator),
            0xC0F2 => Some(Self::Element),
            _ => None,
        }
    }

    /// Bytes of a token of this type on the wire.
    #[must_use]
    pub const fn wire_len(self) -> usize {
        match self {
            Self::Authenticator => TOKEN_LEN,
            Self::Element => ELEMENT_TOKEN_LEN,
        }
    }
}

/// What a token carries for its redemption, after its input.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub enum Redemption {
    /// Type `0xC0F1`: the RFC 9497 VOPRF output over the token input.
    Authenticator([u8; voprf::OUTPUT_LEN]),
    /// Type `0xC0F2`: the unblinded element `skS·HashToGroup(token_input)`, serialised.
    Element([u8; voprf::ELEMENT_LEN]),
}

impl Redemption {
    /// The token type this redemption is of.
    #[must_use]
    pub const fn token_type(&self) -> TokenType {
        match self {
            Self::Authenticator(_) => TokenType::Authenticator,
            Self::Element(_) => TokenType::Element,
        }
    }

    /// The bytes as on the wire.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Self::Authenticator(a) => a,
            Self::Element(n) => n,
        }
    }
}

impl fmt::Debug for Redemption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}(..)", self.token_type())
    }
}

/// `token_input = token_type ‖ nonce ‖ scope digest ‖ key id` (RFC 9578 §5.1), the input
/// the VOPRF evaluates.
#[must_use]
pub fn token_input(
    token_type: TokenType,
    nonce: &[u8; 32],
    scope_digest: &[u8; 32],
    key_id: &[u8; 32],
) -> [u8; TOKEN_INPUT_LEN] {
    let mut out = [0; TOKEN_INPUT_LEN];
    out[..2].copy_from_slice(&token_type.code().to_be_bytes());
    out[2..34].copy_from_slice(nonce);
    out[34..66].copy_from_slice(scope_digest);
    out[66..].copy_from_slice(key_id);
    out
}

/// A token, spent once in one envelope: RFC 9578 §5.3 layout, 162 bytes of type
/// `0xC0F1` or 130 of type `0xC0F2` (docs/wire-format.md §10.1).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Token {
    /// The device's random nonce (what the aggregator remembers once spent).
    pub nonce: [u8; 32],
    /// [`TokenScope::digest`] of its scope.
    pub scope_digest: [u8; 32],
    /// [`key_id`] of the scope key that issued it.
    pub key_id: [u8; 32],
    /// What the verifier checks against the input; it names the token's type.
    pub redemption: Redemption,
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token").field("nonce", &&self.nonce[..4]).finish_non_exhaustive()
    }
}

impl Token {
    /// The token's type.
    #[must_use]
    pub const fn token_type(&self) -> TokenType {
        self.redemption.token_type()
    }

    /// The token input its redemption covers (it starts with the token's type).
    #[must_use]
    pub fn input(&self) -> [u8; TOKEN_INPUT_LEN] {
        token_input(self.token_type(), &self.nonce, &self.scope_digest, &self.key_id)
    }

    /// Bytes of this token on the wire ([`TokenType::wire_len`] of its type).
    #[must_use]
    pub const fn wire_len(&self) -> usize {
        self.token_type().wire_len()
    }

    /// The wire bytes: `token_type (2, big-endian) ‖ nonce ‖ scope digest ‖ key id ‖
    /// authenticator (64)` for type `0xC0F1`, `… ‖ key id ‖ element (32)` for `0xC0F2`
    /// (docs/wire-format.md §10.1).
    ///
    /// ```
    /// use confiance::token::{Redemption, Token};
    /// let t = Token { nonce: [1; 32], scope_digest: [2; 32], key_id: [3; 32], redemption: Redemption::Element([4; 32]) };
    /// let bytes = t.to_bytes();
    /// assert_eq!((bytes.len(), &bytes[..2]), (130, &[0xc0, 0xf2][..]));
    /// assert_eq!(Token::from_bytes(&bytes), Ok(t));
    /// ```
    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.wire_len());
        out.extend_from_slice(&self.input());
        out.extend_from_slice(self.redemption.as_bytes());
        out
    }

    /// Decodes [`Token::to_bytes`].
    ///
    /// # Errors
    /// [`TokenError::Malformed`] for an unknown token type or a length not its type's.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, TokenError> {
        let code = match bytes {
            [a, b, ..] => u16::from_be_bytes([*a, *b]),
            _ => return Err(TokenError::Malformed),
        };
        let token_type = TokenType::from_code(code).ok_or(TokenError::Malformed)?;
        if bytes.len() != token_type.wire_len() {
            return Err(TokenError::Malformed);
        }
        let rest = &bytes[TOKEN_INPUT_LEN..];
        let redemption = match token_type {
            TokenType::Authenticator => {
                let mut a = [0; voprf::OUTPUT_LEN];
                a.copy_from_slice(rest);
                Redemption::Authenticator(a)
            }
            TokenType::Element => {
                let mut n = [0; voprf::ELEMENT_LEN];
                n.copy_from_slice(rest);
                Redemption::Element(n)
            }
        };
        let mut t = Self { nonce: [0; 32], scope_digest: [0; 32], key_id: [0; 32], redemption };
        t.nonce.copy_from_slice(&bytes[2..34]);
        t.scope_digest.copy_from_slice(&bytes[34..66]);
        t.key_id.copy_from_slice(&bytes[66..98]);
        Ok(t)
    }
}

/// Raw bytes (a postcard tuple: no length prefix), as long as the token's type says: a
/// decoder reads the 2-byte type first, then the rest of that type's length.
impl serde::Serialize for Token {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeTuple as _;
        let bytes = self.to_bytes();
        let mut t = s.serialize_tuple(bytes.len())?;
        for b in &bytes {
            t.serialize_element(b)?;
        }
        t.end()
    }
}

impl<'de> serde::Deserialize<'de> for Token {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Token;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{ELEMENT_TOKEN_LEN} or {TOKEN_LEN} token bytes, as the token type says")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Token, A::Error> {
                let mut bytes = [0u8; TOKEN_LEN];
                let mut len = 2;
                let mut i = 0;
                while i < len {
                    bytes[i] =
                        seq.next_element()?.ok_or_else(|| serde::de::Error::invalid_length(i, &self))?;
                    i += 1;
                    if i == 2 {
                        let code = u16::from_be_bytes([bytes[0], bytes[1]]);
                        len = TokenType::from_code(code)
                            .ok_or_else(|| serde::de::Error::custom("unknown token type"))?
                            .wire_len();
                    }
                }
                Token::from_bytes(&bytes[..len]).map_err(|_| serde::de::Error::custom("malformed token"))
            }
        }
        // The longest type's length: postcard reads only the elements the visitor asks
        // for, and a self-describing format hands over the token's own.
        d.deserialize_tuple(TOKEN_LEN, V)
    }
}

/// A token as an envelope carries it: the scope it is spent for and the token.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SpentToken {
    /// The scope (recipients, purpose, period) of the reports it covers.
    pub scope: TokenScope,
    /// The token.
    pub token: Token,
}

/// What the device sends the issuer: its device public key, the scope, one blinded
/// element per token, signed by the device key over
/// `"confiance/token-request/v1" ‖ postcard(device key, scope, blinded)`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TokenRequest {
    /// The device's Ed25519 public key (enrolled with the ledger).
    pub device_key: DevicePublicKey,
    /// The scope the tokens are for.
    pub scope: TokenScope,
    /// `blind·HashToGroup(token_input)` per token, serialised.
    pub blinded: Vec<[u8; 32]>,
    /// Ed25519 signature by the device key.
    #[serde(with = "sig_bytes")]
    pub signature: [u8; 64],
}

mod sig_bytes {
    pub(super) fn serialize<S: serde::Serializer>(b: &[u8; 64], s: S) -> Result<S::Ok, S::Error> {
        let (mut x, mut y) = ([0u8; 32], [0u8; 32]);
        x.copy_from_slice(&b[..32]);
        y.copy_from_slice(&b[32..]);
        serde::Serialize::serialize(&(x, y), s)
    }
    pub(super) fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<[u8; 64], D::Error> {
        let (a, b): ([u8; 32], [u8; 32]) = serde::Deserialize::deserialize(d)?;
        let mut out = [0; 64];
        out[..32].copy_from_slice(&a);
        out[32..].copy_from_slice(&b);
        Ok(out)
    }
}

fn request_message(device_key: &DevicePublicKey, scope: &TokenScope, blinded: &[[u8; 32]]) -> Vec<u8> {
    let mut msg = Vec::from(REQUEST_LABEL);
    let body = postcard::to_allocvec(&(device_key, scope, blinded)).unwrap_or_default();
    msg.extend_from_slice(&body);
    msg
}

impl TokenRequest {
    /// Checks the device key's signature.
    ///
    /// # Errors
    /// [`TokenError::BadSignature`].
    pub fn verify_signature(&self) -> Result<(), TokenError> {
        let vk = VerifyingKey::from_bytes(&self.device_key.0).map_err(|_| TokenError::BadSignature)?;
        let msg = request_message(&self.device_key, &self.scope, &self.blinded);
        vk.verify_strict(&msg, &Signature::from_bytes(&self.signature)).map_err(|_| TokenError::BadSignature)
    }
}

/// The issuer's answer: the scope key it used, one evaluated element per blinded
/// element, and one batched DLEQ proof over all of them.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TokenResponse {
    /// The scope's public key `pkS`.
    pub public_key: [u8; 32],
    /// `skS·blinded` per token.
    pub evaluated: Vec<[u8; 32]>,
    /// The batched proof `c ‖ s`, as two 32-byte halves.
    pub proof: ([u8; 32], [u8; 32]),
}

/// Tokens asked for and not yet finalised: the nonces and blinds (wiped on drop), and
/// what finalising compares and hashes, kept from the request (serialising a point costs
/// a field inversion).
pub struct PendingTokens {
    token_type: TokenType,
    scope: TokenScope,
    scope_digest: [u8; 32],
    nonces: Vec<[u8; 32]>,
    blinds: Vec<Scalar>,
    blinded: Vec<RistrettoPoint>,
    /// The blinded elements as sent.
    wire: Vec<[u8; 32]>,
    /// The scope key the inputs commit to (through its key id).
    key: voprf::PublicKey,
    /// Its serialisation and key id.
    key_bytes: [u8; 32],
    key_id: [u8; 32],
}

impl fmt::Debug for PendingTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingTokens")
            .field("scope", &self.scope)
            .field("count", &self.nonces.len())
            .finish_non_exhaustive()
    }
}

impl Drop for PendingTokens {
    fn drop(&mut self) {
        self.nonces.zeroize();
        self.blinds.iter_mut().for_each(Zeroize::zeroize);
    }
}

impl PendingTokens {
    /// Starts a request for `count` tokens of `scope` under the scope's public key `key`,
    /// taken from the issuer's key directory (the same for every device: a key given to
    /// one device only would let the issuer recognise its tokens at redemption, RFC 9576
    /// §6.2.2 key consistency). The tokens are of the default type,
    /// [`TokenType::Element`] (`0xC0F2`).
    ///
    /// # Errors
    /// [`TokenError::BadCount`]; [`TokenError::Voprf`] if an input hashes to the identity.
    pub fn request<R: rand_core::CryptoRng + ?Sized>(
        device: &DeviceKey,
        scope: TokenScope,
        key: voprf::PublicKey,
        count: usize,
        rng: &mut R,
    ) -> Result<(Self, TokenRequest), TokenError> {
        Self::request_as(TokenType::default(), device, scope, key, count, rng)
    }

    /// [`Self::request`] for tokens of `token_type` (the type is part of each token input,
    /// so it is chosen before blinding; the request's bytes do not show it).
    ///
    /// ```
    /// # use confiance::consent::DeviceKey;
    /// # use confiance::token::{PendingTokens, TokenPeriod, TokenScope, TokenType, voprf};
    /// # use confiance::hazmat::SeedableRng as _;
    /// # let scope = TokenScope::new([confiance::ids::RecipientId::new("acme")?], confiance::ids::PurposeId::new("p")?, TokenPeriod(1));
    /// # let (_, key) = voprf::derive_key_pair(&[1; 32], b"example")?;
    /// let mut rng = confiance::hazmat::SeededRng::seed_from_u64(9);
    /// let device = DeviceKey::from_bytes(&[3; 32]);
    /// let (old, request) = PendingTokens::request_as(TokenType::Authenticator, &device, scope, key, 1, &mut rng)?;
    /// assert_eq!((old.token_type(), request.blinded.len()), (TokenType::Authenticator, 1));
    /// # Ok::<(), Box<dyn core::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`Self::request`].
    pub fn request_as<R: rand_core::CryptoRng + ?Sized>(
        token_type: TokenType,
        device: &DeviceKey,
        scope: TokenScope,
        key: voprf::PublicKey,
        count: usize,
        rng: &mut R,
    ) -> Result<(Self, TokenRequest), TokenError> {
        if count == 0 || count > voprf::MAX_BATCH {
            return Err(TokenError::BadCount);
        }
        let scope_digest = scope.digest();
        let key_bytes = key.to_bytes();
        let kid = key_id_of_bytes(&key_bytes);
        let mut nonces = Vec::with_capacity(count);
        let mut blinds = Vec::with_capacity(count);
        let mut inputs = Vec::with_capacity(count);
        // Drawn in the order of RFC 9497 `Blind` per token: the nonce, then the blind.
        for _ in 0..count {
            let mut nonce = [0u8; 32];
            rng.fill_bytes(&mut nonce);
            inputs.push(token_input(token_type, &nonce, &scope_digest, &kid));
            nonces.push(nonce);
            blinds.push(voprf::random_blind(rng));
        }
        let refs: Vec<&[u8]> = inputs.iter().map(<[u8; TOKEN_INPUT_LEN]>::as_slice).collect();
        let (blinded, wire) = match voprf::blind_batch_with(&refs, &blinds) {
            Ok(b) => b,
            Err(e) => {
                blinds.iter_mut().for_each(Zeroize::zeroize);
                nonces.zeroize();
                return Err(e.into());
            }
        };
        let device_key = device.public_key();
        let signature = device.sign(&request_message(&device_key, &scope, &wire));
        let request = TokenRequest { device_key, scope: scope.clone(), blinded: wire.clone(), signature };
        Ok((
            Self {
                token_type,
                scope,
                scope_digest,
                nonces,
                blinds,
                blinded,
                wire,
                key,
                key_bytes,
                key_id: kid,
            },
            request,
        ))
    }

    /// The scope asked for.
    #[must_use]
    pub fn scope(&self) -> &TokenScope {
        &self.scope
    }

    /// The type of the tokens asked for.
    #[must_use]
    pub const fn token_type(&self) -> TokenType {
        self.token_type
    }

    /// Whether `response` is for this request as far as its key and count say (what
    /// [`Self::finalize`] checks first), without any point arithmetic.
    pub(crate) fn may_answer(&self, response: &TokenResponse) -> bool {
        response.public_key == self.key_bytes && response.evaluated.len() == self.nonces.len()
    }

    /// How many tokens were asked for.
    #[must_use]
    pub fn count(&self) -> usize {
        self.nonces.len()
    }

    /// Checks the response (same key as asked for, same count, proof) and unblinds it
    /// into tokens.
    ///
    /// # Errors
    /// [`TokenError::Voprf`] with [`VoprfError::WrongKey`] when the issuer used another
    /// key than the request's, [`VoprfError::BadProof`], or a malformed element;
    /// [`TokenError::CountMismatch`].
    pub fn finalize(&self, response: &TokenResponse) -> Result<Vec<Token>, TokenError> {
        // A canonical encoding is unique: the same bytes are the same key, and other
        // bytes are another key or none (`check_key` says which).
        if response.public_key != self.key_bytes {
            voprf::check_key(&self.key, &response.public_key)?;
            return Err(VoprfError::WrongKey.into());
        }
        if response.evaluated.len() != self.nonces.len() {
            return Err(TokenError::CountMismatch);
        }
        let mut proof = [0u8; voprf::PROOF_LEN];
        proof[..32].copy_from_slice(&response.proof.0);
        proof[32..].copy_from_slice(&response.proof.1);
        let proof = voprf::Proof::from_bytes(&proof)?;
        let unblinded = voprf::unblind_encoded(
            &self.key,
            &self.key_bytes,
            &self.blinds,
            (&self.blinded, &self.wire),
            &response.evaluated,
            &proof,
        )?;
        Ok(self
            .nonces
            .iter()
            .zip(unblinded)
            .map(|(nonce, n)| {
                let redemption = match self.token_type {
                    TokenType::Element => Redemption::Element(n),
                    TokenType::Authenticator => Redemption::Authenticator(voprf::finalize_hash_encoded(
                        &token_input(self.token_type, nonce, &self.scope_digest, &self.key_id),
                        &n,
                    )),
                };
                Token { nonce: *nonce, scope_digest: self.scope_digest, key_id: self.key_id, redemption }
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(redemption: Redemption) -> Token {
        Token { nonce: [1; 32], scope_digest: [2; 32], key_id: [3; 32], redemption }
    }

    /// Both types round-trip through postcard (raw bytes, the length read from the type)
    /// and through a self-describing format; an unknown type, a short token and a
    /// token with a byte too many are refused, never a panic.
    #[test]
    fn tokens_of_both_types_decode_as_their_type_says() {
        for t in [token(Redemption::Element([4; 32])), token(Redemption::Authenticator([5; 64]))] {
            let bytes = postcard::to_allocvec(&t).unwrap();
            assert_eq!(bytes, t.to_bytes());
            assert_eq!(bytes.len(), t.token_type().wire_len());
            // A token then more bytes: exactly the token's own are taken.
            let tail = [bytes.as_slice(), &[9, 9]].concat();
            assert_eq!(postcard::take_from_bytes::<Token>(&tail).unwrap(), (t, &[9u8, 9][..]));
            assert!(postcard::from_bytes::<Token>(&bytes[..bytes.len() - 1]).is_err());
            let json = serde_json::to_string(&t).unwrap();
            assert_eq!(serde_json::from_str::<Token>(&json).unwrap(), t);
            assert_eq!(Token::from_bytes(&[bytes.as_slice(), &[0]].concat()), Err(TokenError::Malformed));
        }
        let mut unknown = token(Redemption::Element([4; 32])).to_bytes();
        unknown[1] = 0xf3;
        assert!(postcard::from_bytes::<Token>(&unknown).is_err());
        assert_eq!(Token::from_bytes(&unknown), Err(TokenError::Malformed));
        assert_eq!(Token::from_bytes(&[0xc0]), Err(TokenError::Malformed));
        // A 0xC0F1 token's length under a 0xC0F2 type (and the reverse) is malformed.
        let mut long = token(Redemption::Authenticator([5; 64])).to_bytes();
        long[1] = 0xf2;
        assert_eq!(Token::from_bytes(&long), Err(TokenError::Malformed));
    }
}
