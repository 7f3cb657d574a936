//! The token issuer and the token verifier: the server's side of anonymous report
//! tokens (Privacy Pass architecture, RFC 9576; issuance in the manner of RFC 9578's
//! privately verifiable tokens, on the RFC 9497 VOPRF over ristretto255, [`voprf`]).
//!
//! - **Keys.** One VOPRF key per [`TokenScope`] (recipients, purpose, period), derived
//!   from the [`IssuerSecret`]: `seed = HKDF-SHA256(salt = "confiance/token-issuer/v1",
//!   ikm = secret, info = scope)`, then RFC 9497 `DeriveKeyPair(seed, scope)`. Each
//!   period has its own keys, so a leaked period key forges nothing in another period;
//!   replacing the secret (rotation) makes every outstanding token worthless, and wiping
//!   it destroys every key at once.
//! - **Issuance** ([`Issuer::issue`]): the request must be signed by the device key it
//!   names, be for the current or the next period, name a purpose and recipients the
//!   catalogue knows, be allowed by the [`IssuancePolicy`] (enrolled device, live consent
//!   where the purpose needs it) and stay within the catalogue's
//!   [`tokens_per_period`](confiance::catalogue::Limits::tokens_per_period) for that
//!   device, scope and period. The issuer learns which device asked for how many tokens
//!   of which scope, and when; it sees only blinded elements.
//! - **Verification** ([`TokenVerifier::verify`], [`TokenVerifier::verify_many`]): for a
//!   token of type `0xC0F2`, check that its element is `skS·HashToGroup(token_input)`, a
//!   window of a scope's tokens with one equation ([`ServerKey::check_elements`]); for
//!   type `0xC0F1`, recompute the authenticator with RFC 9497 `Evaluate` and compare in
//!   constant time. Whether the nonce was already spent is the store's business (ingest
//!   remembers spent nonces with report ids, whatever the type).
//!
//! ```
//! use confiance::catalogue::Catalogue;
//! use confiance::consent::DeviceKey;
//! use confiance::ids::{PurposeId, RecipientId};
//! use confiance::token::{PendingTokens, TokenPeriod, TokenScope};
//! use confiance::Timestamp;
//! use confiance_aggregator::issuer::{AllowAll, Issuer, IssuerSecret, TokenVerifier};
//! # use confiance::hazmat::SeedableRng as _;
//! # let catalogue = Catalogue::from_toml_str(include_str!("../../examples/catalogue.toml"))?;
//! let secret = IssuerSecret::from_bytes([5; 32]);
//! let mut issuer = Issuer::new(secret.clone(), &catalogue)?;
//! let verifier = TokenVerifier::new(secret, &catalogue)?;
//! let now = Timestamp::from_secs(1_750_000_000);
//! let scope = TokenScope::new(
//!     [RecipientId::new("calora")?],
//!     PurposeId::new("product-improvement")?,
//!     issuer.period_at(now),
//! );
//! let device = DeviceKey::from_bytes(&[1; 32]);
//! let mut rng = confiance::hazmat::SeededRng::seed_from_u64(1);
//! let (pending, request) = PendingTokens::request(&device, scope.clone(), issuer.public_key(&scope)?, 3, &mut rng)?;
//! let response = issuer.issue(&request, &AllowAll, now, &mut rng)?;
//! let tokens = pending.finalize(&response)?;
//! assert!(verifier.verify(&scope, &tokens[0], now).is_ok());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod voprf;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use confiance::Timestamp;
use confiance::catalogue::{Catalogue, LegalBasis};
use confiance::ids::{DevicePublicKey, SubjectId};
use confiance::token::voprf::{PublicKey, VoprfError};
use confiance::token::{
    Redemption, Token, TokenError, TokenPeriod, TokenRequest, TokenResponse, TokenScope, TokenType, key_id,
};
use hkdf::Hkdf;
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

use self::voprf::ServerKey;

/// HKDF salt of scope-key seeds.
const KEY_SALT: &[u8] = b"confiance/token-issuer/v1";
/// Scope keys kept in memory before the cache is emptied (they are cheap to derive).
const KEY_CACHE: usize = 4096;

/// The issuer's master secret: every scope key derives from it. Wiped on drop, never
/// printed.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct IssuerSecret([u8; 32]);

impl core::fmt::Debug for IssuerSecret {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("IssuerSecret(..)")
    }
}

impl IssuerSecret {
    /// The secret from its 32 bytes (kept by the operator like a transcryptor secret).
    #[must_use]
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// A fresh secret from a CSPRNG.
    pub fn generate<R: rand_core::CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut b = [0; 32];
        rng.fill_bytes(&mut b);
        Self(b)
    }

    /// The VOPRF key of `scope`, with its key id and the scope's digest.
    fn scope_key(&self, scope: &TokenScope) -> Result<ScopeKey, VoprfError> {
        let info = scope.to_bytes();
        let mut seed = [0u8; 32];
        Hkdf::<Sha256>::new(Some(KEY_SALT), &self.0)
            .expand(&info, &mut seed)
            .map_err(|_| VoprfError::DeriveKeyPair)?;
        let key = ServerKey::derive(&seed, &info);
        seed.zeroize();
        let key = key?;
        Ok(ScopeKey { key_id: key_id(&key.public_key()), digest: scope.digest(), key })
    }
}

/// A scope's key and what checking its tokens compares with, computed once per scope:
/// the key id (serialising the public key costs a field inversion) and the scope's
/// digest (a serialisation and a hash), not once per token.
struct ScopeKey {
    key: ServerKey,
    key_id: [u8; 32],
    digest: [u8; 32],
}

/// The scope keys in use, derived on first use. The lock is held only to find a key:
/// requests are evaluated, and tokens verified, in parallel.
struct KeyCache {
    secret: IssuerSecret,
    keys: Mutex<HashMap<TokenScope, Arc<ScopeKey>>>,
}

impl KeyCache {
    fn new(secret: IssuerSecret) -> Self {
        Self { secret, keys: Mutex::new(HashMap::new()) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TokenScope, Arc<ScopeKey>>> {
        self.keys.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The key of `scope` if it is in the cache.
    fn cached(&self, scope: &TokenScope) -> Option<Arc<ScopeKey>> {
        self.lock().get(scope).map(Arc::clone)
    }

    /// The key of `scope`, derived and kept if it was not in the cache.
    fn get(&self, scope: &TokenScope) -> Result<Arc<ScopeKey>, VoprfError> {
        if let Some(key) = self.cached(scope) {
            return Ok(key);
        }
        let key = Arc::new(self.secret.scope_key(scope)?);
        let mut keys = self.lock();
        if keys.len() >= KEY_CACHE {
            keys.clear();
        }
        keys.insert(scope.clone(), Arc::clone(&key));
        Ok(key)
    }
}

/// Why the [`IssuancePolicy`] refused a device tokens for a scope.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PolicyRefusal {
    /// The device key is not enrolled: no subject delegated it.
    NotEnrolled,
    /// No delegation of the device key has started yet.
    DelegationNotYetValid,
    /// Every delegation of the device key has ended.
    DelegationExpired,
    /// The subject revoked the device key.
    DelegationRevoked,
    /// The purpose needs consent and the device's subject has no live receipt covering
    /// these recipients and this purpose.
    NotConsented,
    /// The catalogue names certifiers and the ledger holds no device certificate of the
    /// key.
    NotCertified,
    /// The catalogue names certifiers and none of the key's certificates is in force by
    /// one of them: by a certifier it does not trust (any more), not yet valid, or
    /// expired.
    Uncertified(confiance::consent::CertificateError),
}

/// The question the issuer asks the ledger: may this device have tokens for this scope
/// at this time? The ledger's answer (enrolled device, live receipt where the purpose's
/// legal basis is consent) is wired in by the service; tests and simulations use
/// [`AllowAll`] or their own.
pub trait IssuancePolicy {
    /// `Ok(())` if `device` may report in `scope` at `at`; `legal_basis` is the scope
    /// purpose's, from the catalogue.
    ///
    /// # Errors
    /// Why not.
    fn allows(
        &self,
        device: &DevicePublicKey,
        scope: &TokenScope,
        legal_basis: LegalBasis,
        at: Timestamp,
    ) -> Result<(), PolicyRefusal>;
}

/// A policy that allows every device every scope (tests and simulations only: it lets
/// anyone with a key have tokens).
#[derive(Clone, Copy, Debug, Default)]
pub struct AllowAll;

impl IssuancePolicy for AllowAll {
    fn allows(
        &self,
        _: &DevicePublicKey,
        _: &TokenScope,
        _: LegalBasis,
        _: Timestamp,
    ) -> Result<(), PolicyRefusal> {
        Ok(())
    }
}

/// The ledger is the server's policy: the device key must be enrolled at `at` (a
/// delegation of its subject in force, not revoked — or the key of a subject the ledger
/// knows and no admin closed, for a single-device subject), and, for a purpose resting on
/// consent, the device's subject must have at `at` a live receipt covering the scope's
/// purpose for every one of its recipients, for at least one metric that serves that
/// purpose and may go to all of them (a token covers reports of any metric of its
/// scope: the recorder reports only the metrics it has consent for, and the quota bounds
/// what a dishonest device can add, docs/privacy.md).
impl<C: std::borrow::Borrow<rusqlite::Connection>> IssuancePolicy for crate::ledger::Ledger<C> {
    fn allows(
        &self,
        device: &DevicePublicKey,
        scope: &TokenScope,
        legal_basis: LegalBasis,
        at: Timestamp,
    ) -> Result<(), PolicyRefusal> {
        use crate::ledger::EnrollError;
        let subject = match self.enrolled_device(device, at) {
            Ok(subject) => subject,
            // A single-device subject's device holds the subject key itself.
            Err(EnrollError::NotEnrolled)
                if self.knows_subject(&SubjectId::of_key(&device.as_subject_key())) =>
            {
                let subject = SubjectId::of_key(&device.as_subject_key());
                if self.closed(&subject).is_some_and(|(closed, _)| closed <= at) {
                    return Err(PolicyRefusal::DelegationRevoked);
                }
                subject
            }
            Err(e) => {
                return Err(match e {
                    EnrollError::DelegationExpired => PolicyRefusal::DelegationExpired,
                    EnrollError::DelegationNotYetValid => PolicyRefusal::DelegationNotYetValid,
                    EnrollError::DelegationRevoked | EnrollError::SubjectClosed => {
                        PolicyRefusal::DelegationRevoked
                    }
                    _ => PolicyRefusal::NotEnrolled,
                });
            }
        };
        // Admission control: the key itself (a delegated device's, or a single-device
        // subject's own) must be certified now, by a certifier the catalogue trusts now.
        match self.certified(device, at) {
            Ok(()) => {}
            Err(EnrollError::NotCertified) => return Err(PolicyRefusal::NotCertified),
            Err(EnrollError::Uncertified(e)) => return Err(PolicyRefusal::Uncertified(e)),
            Err(_) => return Err(PolicyRefusal::NotEnrolled),
        }
        if legal_basis != LegalBasis::Consent {
            return Ok(());
        }
        let recipients: Vec<_> = scope.recipients.iter().cloned().collect();
        let consented = self
            .catalogue()
            .metrics()
            .filter(|(_, m)| serves(m, scope))
            .any(|(id, _)| self.consents_to(&subject, &recipients, &scope.purpose, id, at));
        if consented { Ok(()) } else { Err(PolicyRefusal::NotConsented) }
    }
}

/// Why a token request was refused. Nothing is counted or issued for a refused request.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum IssueError {
    /// The request's signature does not verify under the device key it names.
    BadSignature,
    /// A blinded element is malformed or the identity, or the batch is empty or larger
    /// than the VOPRF's batch limit.
    Malformed(VoprfError),
    /// The catalogue has no such purpose or recipient, no recipients were named, or no
    /// metric serves this purpose for these recipients.
    UnknownScope,
    /// The scope's period is neither the current nor the next one.
    PeriodNotOpen,
    /// The policy refused.
    Refused(PolicyRefusal),
    /// The issuance counts could not be read or written (retryable; nothing issued).
    Store(String),
    /// The device already had this many tokens of the scope, and the request would pass
    /// the catalogue's quota.
    OverQuota {
        /// Tokens already issued to this device for this scope.
        issued: u32,
        /// The quota.
        quota: u32,
    },
}

impl core::fmt::Display for IssueError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::BadSignature => f.write_str("token request signature does not verify"),
            Self::Malformed(e) => write!(f, "malformed token request: {e}"),
            Self::UnknownScope => f.write_str("no such purpose/recipients in the catalogue"),
            Self::PeriodNotOpen => f.write_str("tokens are issued for the current and the next period only"),
            Self::Refused(PolicyRefusal::NotEnrolled) => f.write_str("device not enrolled"),
            Self::Refused(PolicyRefusal::DelegationNotYetValid) => {
                f.write_str("device delegation not yet valid")
            }
            Self::Refused(PolicyRefusal::DelegationExpired) => f.write_str("device delegation expired"),
            Self::Refused(PolicyRefusal::DelegationRevoked) => f.write_str("device revoked"),
            Self::Refused(PolicyRefusal::NotConsented) => f.write_str("no live consent for this scope"),
            Self::Refused(PolicyRefusal::NotCertified) => {
                f.write_str("the key has no device certificate (the catalogue requires one)")
            }
            Self::Refused(PolicyRefusal::Uncertified(e)) => write!(f, "no device certificate in force: {e}"),
            Self::OverQuota { issued, quota } => write!(f, "{issued} of {quota} tokens already issued"),
            Self::Store(e) => write!(f, "issuance counts: {e}"),
        }
    }
}

impl std::error::Error for IssueError {}

impl IssueError {
    /// A stable, machine-readable code (HTTP API, CLI).
    #[must_use]
    pub const fn code(&self) -> &'static str {
        match self {
            Self::BadSignature => "bad_signature",
            Self::Malformed(_) => "malformed_token_request",
            Self::UnknownScope => "unknown_scope",
            Self::PeriodNotOpen => "period_not_open",
            Self::Refused(PolicyRefusal::NotEnrolled) => "not_enrolled",
            Self::Refused(PolicyRefusal::DelegationNotYetValid) => "delegation_not_yet_valid",
            Self::Refused(PolicyRefusal::DelegationExpired) => "delegation_expired",
            Self::Refused(PolicyRefusal::DelegationRevoked) => "delegation_revoked",
            Self::Refused(PolicyRefusal::NotConsented) => "not_consented",
            Self::Refused(PolicyRefusal::NotCertified) => "not_certified",
            Self::Refused(PolicyRefusal::Uncertified(e)) => e.code(),
            Self::OverQuota { .. } => "over_quota",
            Self::Store(_) => "store_failed",
        }
    }

    /// Whether the same request may succeed later: over quota and not-yet-open periods
    /// pass with time, consent and enrolment may come, a store failure may clear. A
    /// revoked or expired delegation, a bad signature, a malformed request or an unknown
    /// scope never succeed.
    #[must_use]
    pub const fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::OverQuota { .. }
                | Self::PeriodNotOpen
                | Self::Store(_)
                | Self::Refused(
                    PolicyRefusal::NotEnrolled
                        | PolicyRefusal::DelegationNotYetValid
                        | PolicyRefusal::NotConsented
                        | PolicyRefusal::NotCertified
                        | PolicyRefusal::Uncertified(confiance::consent::CertificateError::NotYetValid)
                )
        )
    }
}

/// Issuance counts for the audit log: tokens issued per scope (counts only, never which
/// device got which token).
pub type IssuanceCounts = BTreeMap<TokenScope, u64>;

/// The token issuer.
pub struct Issuer {
    catalogue: Catalogue,
    period_secs: u64,
    quota: u32,
    keys: KeyCache,
    /// Tokens issued per (device key, scope), pruned of past periods.
    issued: HashMap<(DevicePublicKey, TokenScope), u32>,
    /// Tokens issued per scope since the counts were last taken.
    counts: IssuanceCounts,
}

impl core::fmt::Debug for Issuer {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Issuer")
            .field("period_secs", &self.period_secs)
            .field("quota", &self.quota)
            .finish_non_exhaustive()
    }
}

fn period_secs(catalogue: &Catalogue) -> Result<u64, IssueError> {
    catalogue.limits().token_period.fixed_secs().filter(|s| *s > 0).ok_or(IssueError::UnknownScope)
}

/// Whether `metric` is an anonymous statistic (tokens are for those only) that serves the
/// scope's purpose and may go to all its recipients.
fn serves(metric: &confiance::catalogue::Metric, scope: &TokenScope) -> bool {
    matches!(metric.privacy, confiance::catalogue::Privacy::Ldp { .. })
        && metric.purposes.contains(&scope.purpose)
        && scope.recipients.is_subset(&metric.recipients)
}

/// Whether the catalogue knows the scope: a known purpose, known recipients, and one
/// anonymous statistic that serves that purpose and may go to all of them.
fn scope_known(catalogue: &Catalogue, scope: &TokenScope) -> Option<LegalBasis> {
    let purpose = catalogue.purpose(&scope.purpose)?;
    if scope.recipients.is_empty() || scope.recipients.iter().any(|r| catalogue.recipient(r).is_none()) {
        return None;
    }
    catalogue.metrics().any(|(_, m)| serves(m, scope)).then_some(purpose.legal_basis)
}

impl Issuer {
    /// An issuer with its secret, issuing for `catalogue`'s scopes with its token
    /// period and quota.
    ///
    /// # Errors
    /// [`IssueError::UnknownScope`] if the catalogue's token period is not fixed (a
    /// validated catalogue's always is).
    pub fn new(secret: IssuerSecret, catalogue: &Catalogue) -> Result<Self, IssueError> {
        Ok(Self {
            period_secs: period_secs(catalogue)?,
            quota: catalogue.limits().tokens_per_period,
            catalogue: catalogue.clone(),
            keys: KeyCache::new(secret),
            issued: HashMap::new(),
            counts: BTreeMap::new(),
        })
    }

    /// The token period holding `t`.
    #[must_use]
    pub fn period_at(&self, t: Timestamp) -> TokenPeriod {
        TokenPeriod::at(t, self.period_secs)
    }

    /// Whether the catalogue has the scope (a purpose, recipients, and a metric serving
    /// both); the period is not checked.
    #[must_use]
    pub fn knows(&self, scope: &TokenScope) -> bool {
        scope_known(&self.catalogue, scope).is_some()
    }

    /// The quota per device, scope and period.
    #[must_use]
    pub const fn quota(&self) -> u32 {
        self.quota
    }

    fn with_key<T>(&self, scope: &TokenScope, f: impl FnOnce(&ServerKey) -> T) -> Result<T, VoprfError> {
        Ok(f(&self.keys.get(scope)?.key))
    }

    /// The public key of `scope`: the key directory entry devices blind against.
    ///
    /// # Errors
    /// [`VoprfError::DeriveKeyPair`] (never in practice).
    pub fn public_key(&self, scope: &TokenScope) -> Result<PublicKey, VoprfError> {
        self.with_key(scope, ServerKey::public_key)
    }

    /// Answers a token request, or refuses it with nothing counted, counting issuance in
    /// this issuer's memory (a library or simulation issuer; the [`Aggregator`]'s
    /// issuer counts durably in its database instead, [`Aggregator::issue_tokens`]).
    ///
    /// [`Aggregator`]: crate::service::Aggregator
    /// [`Aggregator::issue_tokens`]: crate::service::Aggregator::issue_tokens
    ///
    /// # Errors
    /// See [`IssueError`]; checks run in this order: signature, batch size, scope,
    /// period, policy, quota, then the elements (decoded once, as they are evaluated).
    pub fn issue<R: rand_core::CryptoRng + ?Sized>(
        &mut self,
        request: &TokenRequest,
        policy: &dyn IssuancePolicy,
        now: Timestamp,
        rng: &mut R,
    ) -> Result<TokenResponse, IssueError> {
        self.admit(request, policy, now)?;
        let current = self.period_at(now);
        // Forget what past periods issued: their quotas can no longer be reached.
        self.issued.retain(|(_, s), _| s.period >= current);
        let slot = (request.device_key, request.scope.clone());
        let issued = self.issued.get(&slot).copied().unwrap_or(0);
        let response = self.evaluate(request, issued, rng)?;
        let n = u32::try_from(request.blinded.len()).unwrap_or(u32::MAX);
        self.issued.insert(slot, issued + n);
        *self.counts.entry(request.scope.clone()).or_insert(0) += u64::from(n);
        Ok(response)
    }

    /// The stateless checks of a request, in this order: signature, batch size, scope,
    /// period (the current or the next), policy. Nothing is counted.
    ///
    /// # Errors
    /// [`IssueError::BadSignature`], [`IssueError::Malformed`],
    /// [`IssueError::UnknownScope`], [`IssueError::PeriodNotOpen`],
    /// [`IssueError::Refused`].
    pub fn admit(
        &self,
        request: &TokenRequest,
        policy: &dyn IssuancePolicy,
        now: Timestamp,
    ) -> Result<(), IssueError> {
        request.verify_signature().map_err(|_| IssueError::BadSignature)?;
        if request.blinded.is_empty() || request.blinded.len() > confiance::token::voprf::MAX_BATCH {
            return Err(IssueError::Malformed(VoprfError::BatchSize));
        }
        let scope = &request.scope;
        let basis = scope_known(&self.catalogue, scope).ok_or(IssueError::UnknownScope)?;
        let current = self.period_at(now);
        if scope.period != current && scope.period != TokenPeriod(current.0.saturating_add(1)) {
            return Err(IssueError::PeriodNotOpen);
        }
        policy.allows(&request.device_key, scope, basis, now).map_err(IssueError::Refused)
    }

    /// Evaluates an [admitted](Self::admit) request for a device that already had
    /// `issued` tokens of the request's scope: refuses it if it would pass the quota,
    /// else answers it. The caller records the `issued + n` new count, in the same
    /// transaction as whatever else it keeps.
    ///
    /// # Errors
    /// [`IssueError::OverQuota`]; [`IssueError::Malformed`] for a malformed or identity
    /// element.
    pub fn evaluate<R: rand_core::CryptoRng + ?Sized>(
        &self,
        request: &TokenRequest,
        issued: u32,
        rng: &mut R,
    ) -> Result<TokenResponse, IssueError> {
        self.check_quota(request, issued)?;
        let mut r = curve25519_dalek::Scalar::random(rng);
        let answer = self.answer(request, r);
        r.zeroize();
        answer
    }

    /// Refuses a request that would take a device that already had `issued` tokens of
    /// its scope past the quota.
    ///
    /// # Errors
    /// [`IssueError::OverQuota`].
    pub(crate) const fn check_quota(&self, request: &TokenRequest, issued: u32) -> Result<(), IssueError> {
        let n =
            if request.blinded.len() > u32::MAX as usize { u32::MAX } else { request.blinded.len() as u32 };
        if issued.saturating_add(n) > self.quota {
            return Err(IssueError::OverQuota { issued, quota: self.quota });
        }
        Ok(())
    }

    /// `BlindEvaluate` of an admitted request with the proof nonce `r` (fresh from a
    /// CSPRNG for every request: a repeated nonce reveals the key), quota not checked.
    ///
    /// # Errors
    /// [`IssueError::Malformed`] for a malformed or identity element.
    pub(crate) fn answer(
        &self,
        request: &TokenRequest,
        r: curve25519_dalek::Scalar,
    ) -> Result<TokenResponse, IssueError> {
        let (evaluated, proof, public_key) = self
            .with_key(&request.scope, |k| {
                k.blind_evaluate_with(&request.blinded, r).map(|(e, p)| (e, p, k.public_key_bytes()))
            })
            .and_then(|r| r)
            .map_err(IssueError::Malformed)?;
        let proof = proof.to_bytes();
        let mut c = [0; 32];
        let mut s = [0; 32];
        c.copy_from_slice(&proof[..32]);
        s.copy_from_slice(&proof[32..]);
        Ok(TokenResponse { public_key, evaluated, proof: (c, s) })
    }

    /// The token period length in seconds.
    #[must_use]
    pub const fn period_secs(&self) -> u64 {
        self.period_secs
    }

    /// Tokens issued per scope since the last call (for the audit log), and resets them.
    pub fn take_counts(&mut self) -> IssuanceCounts {
        core::mem::take(&mut self.counts)
    }
}

/// Why a spent token was refused. Each has its own stable code; nothing of the
/// envelope carrying it is kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenRefusal {
    /// The reports of a scope came without a token for it.
    Missing,
    /// The token was issued for another scope (its scope digest differs, or its scope's
    /// period does not hold the reports' times).
    Scope,
    /// The token's period ended more than one period ago: its key is gone.
    Expired,
    /// The token's key id or authenticator is wrong (forged, or altered).
    Invalid,
    /// The token's nonce was already spent.
    Spent,
    /// The envelope has two statistics of one metric and bucket under one token (a token
    /// stands for at most one report per metric and bucket).
    Overused,
}

impl TokenRefusal {
    /// A stable, machine-readable code.
    #[must_use]
    pub const fn code(&self) -> &'static str {
        match self {
            Self::Missing => "token_missing",
            Self::Scope => "token_scope",
            Self::Expired => "token_expired",
            Self::Invalid => "token_invalid",
            Self::Spent => "token_spent",
            Self::Overused => "token_overused",
        }
    }
}

impl core::fmt::Display for TokenRefusal {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::Missing => "no token for the reports' scope",
            Self::Scope => "token issued for another scope",
            Self::Expired => "token period is over",
            Self::Invalid => "token does not verify",
            Self::Spent => "token already spent",
            Self::Overused => "two reports of one metric and bucket under one token",
        })
    }
}

impl std::error::Error for TokenRefusal {}

impl From<TokenError> for TokenRefusal {
    fn from(_: TokenError) -> Self {
        Self::Invalid
    }
}

/// Checks spent tokens: scope, period, key and authenticator (the spent-nonce check is
/// the store's). Holds the same secret as the [`Issuer`] (privately verifiable tokens,
/// RFC 9578 §5): in a deployment the two run in the same trust domain.
pub struct TokenVerifier {
    period_secs: u64,
    keys: KeyCache,
    /// The weights of the batched check of `0xC0F2` tokens: fresh for every window,
    /// unknown to whoever made the tokens.
    rng: Mutex<confiance::rng::OsRng>,
}

impl core::fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("TokenVerifier").field("period_secs", &self.period_secs).finish_non_exhaustive()
    }
}

impl TokenVerifier {
    /// A verifier for `catalogue`'s token periods.
    ///
    /// # Errors
    /// [`IssueError::UnknownScope`] if the catalogue's token period is not fixed.
    pub fn new(secret: IssuerSecret, catalogue: &Catalogue) -> Result<Self, IssueError> {
        Ok(Self {
            period_secs: period_secs(catalogue)?,
            keys: KeyCache::new(secret),
            rng: Mutex::new(confiance::rng::OsRng::new()),
        })
    }

    /// The token period length in seconds.
    #[must_use]
    pub const fn period_secs(&self) -> u64 {
        self.period_secs
    }

    /// Checks `token` for `scope` at `now`: the token names this scope, the scope's
    /// period ended at most one period ago, and the key id and the redemption are the
    /// scope key's: for type `0xC0F1` the authenticator is RFC 9497 `Evaluate` of the
    /// token input (compared in constant time), for type `0xC0F2` the element is
    /// `skS·HashToGroup(token_input)` ([`ServerKey::check_element`]).
    ///
    /// # Errors
    /// [`TokenRefusal::Scope`], [`TokenRefusal::Expired`], [`TokenRefusal::Invalid`].
    pub fn verify(&self, scope: &TokenScope, token: &Token, now: Timestamp) -> Result<(), TokenRefusal> {
        let key = self.precheck(scope, token, now)?;
        match &token.redemption {
            Redemption::Authenticator(authenticator) => {
                let expected = key.key.evaluate(&token.input()).map_err(|_| TokenRefusal::Invalid)?;
                if bool::from(expected.ct_eq(authenticator)) { Ok(()) } else { Err(TokenRefusal::Invalid) }
            }
            Redemption::Element(n) => {
                key.key.check_element(&token.input(), n).map_err(|_| TokenRefusal::Invalid)
            }
        }
    }

    /// [`TokenVerifier::verify`] of a window of tokens, each with its scope: the same
    /// verdicts, in order. Each scope's `0xC0F1` tokens have their evaluations compressed
    /// by one batched inversion ([`ServerKey::evaluate_many`]); its `0xC0F2` tokens are
    /// checked with one equation and one multiplication by the key
    /// ([`ServerKey::check_elements`]: a forged token in the window is then found by
    /// checking each alone, and refused by itself).
    ///
    /// ```
    /// # use confiance_aggregator::issuer::TokenVerifier;
    /// # fn check(verifier: &TokenVerifier, window: &[(confiance::token::TokenScope, confiance::token::Token)], now: confiance::Timestamp) {
    /// let verdicts = verifier.verify_many(window, now);
    /// assert_eq!(verdicts.len(), window.len());
    /// # }
    /// ```
    #[must_use]
    pub fn verify_many(
        &self,
        window: &[(TokenScope, Token)],
        now: Timestamp,
    ) -> Vec<Result<(), TokenRefusal>> {
        let checked: Vec<Result<(&TokenScope, &Token), TokenRefusal>> = window
            .iter()
            .map(|(scope, token)| self.precheck(scope, token, now).map(|_| (scope, token)))
            .collect();
        self.verify_prechecked(&checked)
    }

    /// The cheap checks of [`TokenVerifier::verify`] alone (scope digest, period, key
    /// id), for a caller that gathers the tokens of many envelopes, each checked at its
    /// own `now`, into one window for [`TokenVerifier::verify_prechecked`].
    ///
    /// ```
    /// # use confiance_aggregator::issuer::TokenVerifier;
    /// # use confiance::{Timestamp, token::{Token, TokenScope}};
    /// // Envelopes received at different instants, their tokens checked as one window.
    /// # fn check(verifier: &TokenVerifier, received: &[(TokenScope, Token, Timestamp)]) {
    /// let checked: Vec<_> = received
    ///     .iter()
    ///     .map(|(scope, token, at)| verifier.precheck_token(scope, token, *at).map(|()| (scope, token)))
    ///     .collect();
    /// let verdicts = verifier.verify_prechecked(&checked);
    /// assert_eq!(verdicts.len(), received.len());
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`TokenRefusal::Scope`], [`TokenRefusal::Expired`], [`TokenRefusal::Invalid`].
    pub fn precheck_token(
        &self,
        scope: &TokenScope,
        token: &Token,
        now: Timestamp,
    ) -> Result<(), TokenRefusal> {
        self.precheck(scope, token, now).map(|_| ())
    }

    /// The cryptographic half of [`TokenVerifier::verify_many`] over tokens that passed
    /// [`TokenVerifier::precheck_token`] (an `Err` entry, a token that did not, is
    /// returned as it is): the verdicts in order. An example is at
    /// [`TokenVerifier::precheck_token`]; an entry refused by the cheap checks keeps its
    /// refusal:
    ///
    /// ```
    /// # use confiance_aggregator::issuer::{TokenRefusal, TokenVerifier};
    /// # fn check(verifier: &TokenVerifier) {
    /// let verdicts = verifier.verify_prechecked(&[Err(TokenRefusal::Expired)]);
    /// assert_eq!(verdicts, vec![Err(TokenRefusal::Expired)]);
    /// # }
    /// ```
    #[must_use]
    pub fn verify_prechecked(
        &self,
        window: &[Result<(&TokenScope, &Token), TokenRefusal>],
    ) -> Vec<Result<(), TokenRefusal>> {
        let mut out: Vec<Result<(), TokenRefusal>> = Vec::with_capacity(window.len());
        // The tokens to check, by scope (the key is per scope) and type.
        let mut groups: HashMap<(&TokenScope, TokenType), Vec<usize>> = HashMap::new();
        for (i, entry) in window.iter().enumerate() {
            match entry {
                Ok((scope, token)) => {
                    groups.entry((*scope, token.token_type())).or_default().push(i);
                    out.push(Ok(()));
                }
                Err(e) => out.push(Err(*e)),
            }
        }
        let token = |i: usize| window[i].as_ref().map(|(_, t)| *t).ok();
        for ((scope, token_type), members) in &groups {
            let Ok(key) = self.keys.get(scope) else {
                members.iter().for_each(|&i| out[i] = Err(TokenRefusal::Invalid));
                continue;
            };
            let inputs: Vec<[u8; confiance::token::TOKEN_INPUT_LEN]> =
                members.iter().filter_map(|&i| token(i)).map(Token::input).collect();
            let refs: Vec<&[u8]> = inputs.iter().map(<[u8; _]>::as_slice).collect();
            let verdicts: Vec<bool> = match token_type {
                TokenType::Element => {
                    let pairs: Vec<(&[u8], &[u8; 32])> = refs
                        .iter()
                        .zip(members.iter().filter_map(|&i| token(i)))
                        .filter_map(|(input, t)| match &t.redemption {
                            Redemption::Element(n) => Some((*input, n)),
                            Redemption::Authenticator(_) => None,
                        })
                        .collect();
                    // A window's own generator, keyed from the shared one: the lock is
                    // held for 32 bytes, not for the window's multiplications.
                    let mut seed = zeroize::Zeroizing::new([0u8; 32]);
                    rand_core::Rng::fill_bytes(
                        &mut *self.rng.lock().unwrap_or_else(std::sync::PoisonError::into_inner),
                        &mut *seed,
                    );
                    let mut rng =
                        <confiance::hazmat::SeededRng as confiance::hazmat::SeedableRng>::from_seed(*seed);
                    key.key.check_elements(&pairs, &mut rng).iter().map(Result::is_ok).collect()
                }
                _ => key
                    .key
                    .evaluate_many(&refs)
                    .iter()
                    .zip(members.iter().filter_map(|&i| token(i)))
                    .map(|(expected, t)| match (expected, &t.redemption) {
                        (Ok(e), Redemption::Authenticator(a)) => bool::from(e.ct_eq(a)),
                        _ => false,
                    })
                    .collect(),
            };
            for (&i, ok) in members.iter().zip(verdicts) {
                if !ok {
                    out[i] = Err(TokenRefusal::Invalid);
                }
            }
        }
        out
    }

    /// The checks before the evaluation: scope digest, period, key id; the scope's key.
    fn precheck(
        &self,
        scope: &TokenScope,
        token: &Token,
        now: Timestamp,
    ) -> Result<Arc<ScopeKey>, TokenRefusal> {
        // A scope in use has its digest and key id cached with its key; a key is derived
        // only for a scope whose digest and period pass.
        let cached = self.keys.cached(scope);
        let digest = cached.as_ref().map_or_else(|| scope.digest(), |k| k.digest);
        if !bool::from(token.scope_digest.ct_eq(&digest)) {
            return Err(TokenRefusal::Scope);
        }
        let grace_end = scope.period.end(self.period_secs).saturating_add_secs(self.period_secs);
        if now >= grace_end {
            return Err(TokenRefusal::Expired);
        }
        let key = match cached {
            Some(key) => key,
            None => self.keys.get(scope).map_err(|_| TokenRefusal::Invalid)?,
        };
        if !bool::from(token.key_id.ct_eq(&key.key_id)) {
            return Err(TokenRefusal::Invalid);
        }
        Ok(key)
    }
}
