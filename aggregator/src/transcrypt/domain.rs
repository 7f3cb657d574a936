//! Recipient domains: the scope of one set of pseudonyms.

use confiance::ids::RecipientId;
use confiance::pseudonym::Epoch;

use super::push_field;

/// A recipient domain: the recipient, and optionally an epoch when the recipient's
/// pseudonyms must change over time. Every factor, commitment and proof is bound to the
/// domain's encoding, so nothing carries over from one domain to another.
///
/// ```
/// use confiance::ids::RecipientId;
/// use confiance::pseudonym::Epoch;
/// use confiance_aggregator::transcrypt::Domain;
/// let acme = Domain::new(RecipientId::new("acme")?);
/// assert_ne!(acme.encode(), Domain::with_epoch(RecipientId::new("acme")?, Epoch(0)).encode());
/// # Ok::<(), confiance::ids::IdError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Domain {
    recipient: RecipientId,
    epoch: Option<Epoch>,
}

impl Domain {
    /// The domain of `recipient`, stable over time.
    #[must_use]
    pub const fn new(recipient: RecipientId) -> Self {
        Self { recipient, epoch: None }
    }

    /// The domain of `recipient` in `epoch`.
    #[must_use]
    pub const fn with_epoch(recipient: RecipientId, epoch: Epoch) -> Self {
        Self { recipient, epoch: Some(epoch) }
    }

    /// The recipient.
    #[must_use]
    pub const fn recipient(&self) -> &RecipientId {
        &self.recipient
    }

    /// The epoch, if the domain has one.
    #[must_use]
    pub const fn epoch(&self) -> Option<Epoch> {
        self.epoch
    }

    /// The unambiguous encoding absorbed by every derivation and proof:
    /// `len‖"confiance/transcrypt/domain/v1" ‖ len‖recipient ‖ len‖(epoch_be or empty)`,
    /// each length a big-endian `u64`.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(80);
        push_field(&mut out, b"confiance/transcrypt/domain/v1");
        push_field(&mut out, self.recipient.as_str().as_bytes());
        match self.epoch {
            Some(e) => push_field(&mut out, &e.0.to_be_bytes()),
            None => push_field(&mut out, &[]),
        }
        out
    }
}
