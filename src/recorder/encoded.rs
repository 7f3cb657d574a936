//! Reports kept in their encoding while queued or in flight, and the saved state written
//! and read around them.
//!
//! A decoded [`Report`] takes about 620 bytes of heap (a B-tree node for its audience,
//! three heap strings, the payload enum's inline size); its postcard encoding about 110.
//! The recorder keeps every queued and in-flight report encoded, and decodes one at a
//! time, only where a field is needed: so a microcontroller's offline day fits in its
//! RAM (docs/benchmarks.md, "Device heap"). A batch is the concatenation of its reports'
//! encodings after their count (docs/wire-format.md §3), so sealing needs no decoding.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::marker::PhantomData;

use serde::de::{DeserializeOwned, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::Timestamp;
use crate::envelope::ReportId;
use crate::report::Report;

/// A value (a report, a sent-log entry) in its postcard encoding, in a buffer of exactly
/// its size.
pub(super) struct Encoded<T>(Box<[u8]>, PhantomData<fn() -> T>);

impl<T> Clone for Encoded<T> {
    fn clone(&self) -> Self {
        Self(self.0.clone(), PhantomData)
    }
}

impl<T> PartialEq for Encoded<T> {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}

impl<T> Eq for Encoded<T> {}

impl<T> core::fmt::Debug for Encoded<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Encoded({} bytes)", self.0.len())
    }
}

/// The first fields of a report, read without decoding the rest (nor allocating):
/// postcard encodes a struct as its fields one after the other.
#[derive(Deserialize)]
pub(super) struct Head<'a> {
    pub(super) id: ReportId,
    /// Read only to reach `time` (postcard is positional), borrowed: no allocation.
    _metric: &'a str,
    pub(super) time: Timestamp,
}

impl<T: Serialize + DeserializeOwned> Encoded<T> {
    /// `value`'s encoding; `None` if it cannot be encoded (none made here fails).
    pub(super) fn new(value: &T) -> Option<Self> {
        let size = postcard::experimental::serialized_size(value).ok()?;
        let bytes = postcard::to_extend(value, Vec::with_capacity(size)).ok()?;
        Some(Self(bytes.into_boxed_slice(), PhantomData))
    }

    /// The value; `None` only if the bytes were not made by [`Self::new`].
    pub(super) fn decode(&self) -> Option<T> {
        postcard::from_bytes(&self.0).ok()
    }
}

impl<T> Encoded<T> {
    pub(super) fn bytes(&self) -> &[u8] {
        &self.0
    }

    pub(super) fn len(&self) -> usize {
        self.0.len()
    }
}

impl Encoded<Report> {
    /// Its id, metric and time bucket.
    pub(super) fn head(&self) -> Option<Head<'_>> {
        postcard::take_from_bytes::<Head<'_>>(&self.0).ok().map(|(h, _)| h)
    }
}

/// A sequence of encoded values that (de)serializes as the sequence of the values: the
/// saved state's bytes are those of the decoded values. Decoding holds one value at a
/// time in memory and keeps its encoding.
#[derive(Debug)]
pub(super) struct Seq<T>(pub(super) Vec<Encoded<T>>);

impl<'de, T: Serialize + DeserializeOwned> Deserialize<'de> for Seq<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Each<T>(PhantomData<fn() -> T>);
        impl<'de, T: Serialize + DeserializeOwned> Visitor<'de> for Each<T> {
            type Value = Seq<T>;
            fn expecting(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.write_str("a sequence")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Seq<T>, A::Error> {
                // No capacity from the announced length: it is not trusted.
                let mut out = Vec::new();
                while let Some(value) = seq.next_element::<T>()? {
                    let encoded =
                        Encoded::new(&value).ok_or_else(|| serde::de::Error::custom("unencodable value"))?;
                    out.push(encoded);
                }
                Ok(Seq(out))
            }
        }
        d.deserialize_seq(Each(PhantomData))
    }
}

impl<T: Serialize + DeserializeOwned> Serialize for Seq<T> {
    /// As the sequence of the values, decoding one at a time (for tests: the recorder
    /// writes its state with [`Sink`], which copies the encodings).
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{Error as _, SerializeSeq as _};
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for e in &self.0 {
            seq.serialize_element(&e.decode().ok_or_else(|| S::Error::custom("undecodable value"))?)?;
        }
        seq.end()
    }
}

/// Where the saved state's encoding goes: first [`Count`]ed, then written into a buffer of
/// that size (a growing buffer would hold up to twice the state).
pub(super) trait Sink {
    /// `v`'s postcard encoding.
    fn value<T: Serialize + ?Sized>(&mut self, v: &T) -> postcard::Result<()>;

    /// Bytes already encoded.
    fn raw(&mut self, bytes: &[u8]);

    /// `values` as a postcard sequence: their count, then each encoding.
    fn seq<'a, T: 'a>(
        &mut self,
        values: impl ExactSizeIterator<Item = &'a Encoded<T>>,
    ) -> postcard::Result<()> {
        // A sequence's length is a varint, as a `usize` is.
        self.value(&values.len())?;
        for v in values {
            self.raw(v.bytes());
        }
        Ok(())
    }
}

/// Counts the bytes an encoding takes.
pub(super) struct Count(pub(super) usize);

impl Sink for Count {
    fn value<T: Serialize + ?Sized>(&mut self, v: &T) -> postcard::Result<()> {
        self.0 = self.0.saturating_add(postcard::experimental::serialized_size(v)?);
        Ok(())
    }

    fn raw(&mut self, bytes: &[u8]) {
        self.0 = self.0.saturating_add(bytes.len());
    }
}

impl Sink for Vec<u8> {
    fn value<T: Serialize + ?Sized>(&mut self, v: &T) -> postcard::Result<()> {
        *self = postcard::to_extend(v, core::mem::take(self))?;
        Ok(())
    }

    fn raw(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// Hands each piece of an encoding to a function (a [`crate::recorder::Storage::save_streamed`]
/// writer) as it is made.
pub(super) struct Stream<'a>(pub(super) &'a mut dyn FnMut(&[u8]));

/// postcard's output, to a [`Stream`].
struct Pieces<'a, 'b>(&'a mut Stream<'b>);

impl postcard::ser_flavors::Flavor for Pieces<'_, '_> {
    type Output = ();

    fn try_push(&mut self, byte: u8) -> postcard::Result<()> {
        (self.0.0)(&[byte]);
        Ok(())
    }

    fn try_extend(&mut self, bytes: &[u8]) -> postcard::Result<()> {
        (self.0.0)(bytes);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

impl Sink for Stream<'_> {
    fn value<T: Serialize + ?Sized>(&mut self, v: &T) -> postcard::Result<()> {
        postcard::serialize_with_flavor(v, Pieces(self))
    }

    fn raw(&mut self, bytes: &[u8]) {
        (self.0)(bytes);
    }
}
