//! The plaintext of an envelope: a postcard-encoded batch of reports, and report ids.

use alloc::vec::Vec;
use core::fmt;
use rand_core::CryptoRng;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::token::SpentToken;

/// A report's id: 16 random bytes drawn by the device (docs/design.md#envelopes). It links nothing
/// to the device; the aggregator uses it only to refuse a report it has already counted.
/// Encoded by postcard as its 16 raw bytes.
///
/// ```
/// use confiance::envelope::ReportId;
/// let mut rng = confiance::rng::OsRng::new();
/// assert_ne!(ReportId::random(&mut rng), ReportId::random(&mut rng));
/// assert_eq!(postcard::to_allocvec(&ReportId([7; 16])).unwrap(), [7; 16]);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub struct ReportId(pub [u8; 16]);

impl ReportId {
    /// A fresh id from `rng`.
    pub fn random<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut id = [0u8; 16];
        rng.fill_bytes(&mut id);
        Self(id)
    }
}

impl fmt::Display for ReportId {
    /// Lower-case hex.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in &self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for ReportId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ReportId({self})")
    }
}

/// A batch of reports, as sealed in one envelope. The recorder and ingest instantiate it
/// with the real report type; the encoding is postcard's `Vec<T>`: a LEB128 varint count,
/// then each report.
pub type ReportBatch<T> = Vec<T>;

/// Bounds checked by [`decode_batch`] before it allocates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchLimits {
    /// Most reports in one batch.
    pub max_reports: usize,
    /// Most bytes of encoded batch.
    pub max_bytes: usize,
}

impl Default for BatchLimits {
    /// 4096 reports and 1 MiB: room for a day of a busy device, far below what would hurt
    /// an aggregator.
    fn default() -> Self {
        Self { max_reports: 4096, max_bytes: super::MAX_FRAME_LEN }
    }
}

/// Why a batch could not be encoded or decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BatchError {
    /// The encoded batch is longer than [`BatchLimits::max_bytes`].
    TooLarge {
        /// Its length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The batch announces more reports than [`BatchLimits::max_reports`].
    TooManyReports {
        /// The announced count.
        count: u64,
        /// The limit.
        max: usize,
    },
    /// The bytes are not a postcard batch of this report type (bad varint, a count
    /// larger than the bytes left, a report that does not decode).
    Malformed,
    /// Bytes are left after the last report.
    TrailingBytes {
        /// How many.
        count: usize,
    },
    /// The batch decodes but is not in canonical form (for example an overlong varint),
    /// so two byte strings would mean the same batch.
    NonCanonical,
    /// A report could not be serialized.
    Encode,
    /// The body announces more tokens than [`MAX_TOKENS`].
    TooManyTokens {
        /// The announced count.
        count: u64,
    },
}

impl fmt::Display for BatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLarge { len, max } => write!(f, "batch of {len} bytes exceeds {max}"),
            Self::TooManyReports { count, max } => write!(f, "batch of {count} reports exceeds {max}"),
            Self::Malformed => f.write_str("malformed report batch"),
            Self::TrailingBytes { count } => write!(f, "{count} bytes after the last report"),
            Self::NonCanonical => f.write_str("report batch is not canonically encoded"),
            Self::Encode => f.write_str("report could not be encoded"),
            Self::TooManyTokens { count } => write!(f, "body of {count} tokens exceeds {MAX_TOKENS}"),
        }
    }
}

impl core::error::Error for BatchError {}

/// Whether the postcard encoding of `value` is exactly `expected`: the canonicality check
/// of [`decode_batch`] and [`decode_body`], comparing as the serializer writes instead of
/// encoding into a fresh vector (it stops at the first differing byte).
fn encodes_to<T: Serialize + ?Sized>(value: &T, expected: &[u8]) -> Result<bool, BatchError> {
    /// A postcard output that compares what is written with `rest`.
    struct Compare<'a> {
        rest: &'a [u8],
    }
    impl postcard::ser_flavors::Flavor for Compare<'_> {
        type Output = bool;
        fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
            match self.rest.split_at_checked(data.len()) {
                Some((head, tail)) if head == data => {
                    self.rest = tail;
                    Ok(())
                }
                // A difference: stop serializing (told apart from a failure below).
                _ => Err(postcard::Error::SerializeBufferFull),
            }
        }
        fn try_push(&mut self, data: u8) -> postcard::Result<()> {
            self.try_extend(&[data])
        }
        fn finalize(self) -> postcard::Result<bool> {
            Ok(self.rest.is_empty())
        }
    }
    match postcard::serialize_with_flavor(value, Compare { rest: expected }) {
        Ok(all_of_it) => Ok(all_of_it),
        Err(postcard::Error::SerializeBufferFull) => Ok(false),
        Err(_) => Err(BatchError::Encode),
    }
}

/// Encodes `reports` as a batch (postcard `Vec<T>`).
///
/// # Errors
/// [`BatchError::Encode`] if a report's `Serialize` fails.
///
/// ```
/// use confiance::envelope::{BatchLimits, decode_batch, encode_batch};
/// let bytes = encode_batch(&[1u32, 300])?;
/// assert_eq!(bytes, [2, 1, 0xac, 0x02]);
/// assert_eq!(decode_batch::<u32>(&bytes, &BatchLimits::default())?, [1, 300]);
/// # Ok::<(), confiance::envelope::BatchError>(())
/// ```
pub fn encode_batch<T: Serialize>(reports: &[T]) -> Result<Vec<u8>, BatchError> {
    postcard::to_allocvec(reports).map_err(|_| BatchError::Encode)
}

/// Decodes a batch strictly: the byte length and the announced count are checked against
/// `limits` (and the count against the bytes left, each report taking at least one) before
/// anything is allocated; trailing bytes and non-canonical encodings are errors.
///
/// # Errors
/// [`BatchError::TooLarge`], [`BatchError::TooManyReports`], [`BatchError::Malformed`],
/// [`BatchError::TrailingBytes`], [`BatchError::NonCanonical`].
///
/// ```
/// use confiance::envelope::{BatchError, BatchLimits, decode_batch};
/// let limits = BatchLimits { max_reports: 2, max_bytes: 16 };
/// assert_eq!(decode_batch::<u8>(&[3, 1, 2, 3], &limits), Err(BatchError::TooManyReports { count: 3, max: 2 }));
/// assert_eq!(decode_batch::<u8>(&[1, 1, 9], &limits), Err(BatchError::TrailingBytes { count: 1 }));
/// assert_eq!(decode_batch::<u8>(&[0x80, 0x00], &limits), Err(BatchError::NonCanonical));
/// ```
pub fn decode_batch<T: DeserializeOwned + Serialize>(
    bytes: &[u8],
    limits: &BatchLimits,
) -> Result<ReportBatch<T>, BatchError> {
    if bytes.len() > limits.max_bytes {
        return Err(BatchError::TooLarge { len: bytes.len(), max: limits.max_bytes });
    }
    let (count, mut rest) = postcard::take_from_bytes::<u64>(bytes).map_err(|_| BatchError::Malformed)?;
    let n = usize::try_from(count).ok().filter(|&n| n <= limits.max_reports);
    let Some(n) = n else { return Err(BatchError::TooManyReports { count, max: limits.max_reports }) };
    if n > rest.len() {
        return Err(BatchError::Malformed);
    }
    let mut reports = Vec::with_capacity(n);
    for _ in 0..n {
        let (report, tail) = postcard::take_from_bytes::<T>(rest).map_err(|_| BatchError::Malformed)?;
        reports.push(report);
        rest = tail;
    }
    if !rest.is_empty() {
        return Err(BatchError::TrailingBytes { count: rest.len() });
    }
    // One byte string per batch: re-encoding must give back exactly the input.
    if !encodes_to(&reports, bytes)? {
        return Err(BatchError::NonCanonical);
    }
    Ok(reports)
}

/// The most report tokens one envelope body may carry (one per scope it reports in).
pub const MAX_TOKENS: usize = 64;

/// Encodes an envelope body: the tokens it spends (postcard `Vec<SpentToken>`), then the
/// report batch ([`encode_batch`]). An envelope without statistics carries an empty token
/// list (one byte, `0x00`). docs/wire-format.md has the bytes.
///
/// # Errors
/// [`BatchError::Encode`] if a report's `Serialize` fails.
///
/// ```
/// use confiance::envelope::{BatchLimits, decode_body, encode_body};
/// let bytes = encode_body(&[], &[1u32, 300])?;
/// assert_eq!(bytes, [0, 2, 1, 0xac, 0x02]);
/// let (tokens, reports) = decode_body::<u32>(&bytes, &BatchLimits::default())?;
/// assert!(tokens.is_empty());
/// assert_eq!(reports, [1, 300]);
/// # Ok::<(), confiance::envelope::BatchError>(())
/// ```
pub fn encode_body<T: Serialize>(tokens: &[SpentToken], reports: &[T]) -> Result<Vec<u8>, BatchError> {
    let mut out = postcard::to_allocvec(tokens).map_err(|_| BatchError::Encode)?;
    out.extend_from_slice(&encode_batch(reports)?);
    Ok(out)
}

/// Decodes [`encode_body`] strictly: the token count is checked against [`MAX_TOKENS`]
/// before anything is allocated, the batch as [`decode_batch`] does, and the token list
/// must be canonical too.
///
/// # Errors
/// [`BatchError::TooManyTokens`] and those of [`decode_batch`].
pub fn decode_body<T: DeserializeOwned + Serialize>(
    bytes: &[u8],
    limits: &BatchLimits,
) -> Result<(Vec<SpentToken>, ReportBatch<T>), BatchError> {
    if bytes.len() > limits.max_bytes {
        return Err(BatchError::TooLarge { len: bytes.len(), max: limits.max_bytes });
    }
    let (count, mut rest) = postcard::take_from_bytes::<u64>(bytes).map_err(|_| BatchError::Malformed)?;
    let n = usize::try_from(count).ok().filter(|&n| n <= MAX_TOKENS);
    let Some(n) = n else { return Err(BatchError::TooManyTokens { count }) };
    let mut tokens = Vec::with_capacity(n);
    for _ in 0..n {
        let (t, tail) = postcard::take_from_bytes::<SpentToken>(rest).map_err(|_| BatchError::Malformed)?;
        tokens.push(t);
        rest = tail;
    }
    let head = bytes.len() - rest.len();
    if !encodes_to(&tokens, bytes.get(..head).unwrap_or_default())? {
        return Err(BatchError::NonCanonical);
    }
    Ok((tokens, decode_batch(rest, limits)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_to_is_byte_equality_with_the_postcard_encoding() {
        let value: (u32, &str, [u8; 3]) = (300, "abc", [1, 2, 3]);
        let bytes = postcard::to_allocvec(&value).unwrap();
        assert_eq!(encodes_to(&value, &bytes), Ok(true));
        // Any other byte string is not the encoding: a byte changed anywhere, one more or
        // one fewer at the end, a shorter prefix, nothing.
        for i in 0..bytes.len() {
            let mut other = bytes.clone();
            other[i] ^= 1;
            assert_eq!(encodes_to(&value, &other), Ok(false), "byte {i} changed");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(encodes_to(&value, &longer), Ok(false));
        for len in 0..bytes.len() {
            assert_eq!(encodes_to(&value, &bytes[..len]), Ok(false), "first {len} bytes");
        }
    }
}
