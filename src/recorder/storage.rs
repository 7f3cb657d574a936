//! Where the recorder keeps its state between runs: a trait the host implements.

use alloc::vec::Vec;

/// The host's storage refused a load or a save. The recorder counts it and goes on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StorageError;

impl core::fmt::Display for StorageError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("host storage failed")
    }
}

impl core::error::Error for StorageError {}

/// What [`Storage::save_streamed`] is given: it hands the bytes to save, in pieces, to
/// the function it is called with.
pub type StateWriter<'a> = &'a mut dyn FnMut(&mut dyn FnMut(&[u8])) -> Result<(), StorageError>;

/// Persistent storage for the recorder's state (queue, unacknowledged envelopes, budgets,
/// the sent log, consent receipts). The recorder does no I/O of its own: the host decides
/// where the bytes go (flash, a file, a keystore). Keys are *not* in these bytes; the
/// host keeps the device key and pseudonym secret in its secure storage.
pub trait Storage {
    /// The bytes last saved, if any.
    ///
    /// # Errors
    /// [`StorageError`] when the host cannot read them.
    fn load(&mut self) -> Result<Option<Vec<u8>>, StorageError>;

    /// Replaces the saved bytes.
    ///
    /// # Errors
    /// [`StorageError`] when the host cannot write them.
    fn save(&mut self, bytes: &[u8]) -> Result<(), StorageError>;

    /// Replaces the saved bytes with the `len` bytes that `write` hands to its argument,
    /// in pieces and in order: the recorder's state as it is encoded, so that the
    /// recorder need not hold a copy of it (on a microcontroller that copy is a third of
    /// the heap, docs/benchmarks.md "Device heap").
    ///
    /// By default the pieces are gathered into one buffer for [`Self::save`]. A storage
    /// that can write as it goes (a flash region, a file) overrides it; like `save`, it
    /// must keep the old bytes until all the new ones are written (write a second slot,
    /// then switch to it), and refuse a save whose pieces do not add up to `len`.
    ///
    /// ```
    /// use confiance::recorder::{MemoryStorage, Storage};
    /// let mut storage = MemoryStorage::default();
    /// storage.save_streamed(5, &mut |put| {
    ///     put(b"hel");
    ///     put(b"lo");
    ///     Ok(())
    /// })?;
    /// assert_eq!(storage.load()?.as_deref(), Some(&b"hello"[..]));
    /// // Pieces that do not add up to the length announced: refused, the old bytes stay.
    /// assert!(storage.save_streamed(5, &mut |put| Ok(put(b"bye"))).is_err());
    /// assert_eq!(storage.load()?.as_deref(), Some(&b"hello"[..]));
    /// # Ok::<(), confiance::recorder::StorageError>(())
    /// ```
    ///
    /// # Errors
    /// [`StorageError`] when the host cannot write them, when `write` fails, or when the
    /// pieces are not `len` bytes; the old bytes stay.
    fn save_streamed(&mut self, len: usize, write: StateWriter<'_>) -> Result<(), StorageError> {
        let mut bytes = Vec::with_capacity(len);
        write(&mut |piece| bytes.extend_from_slice(piece))?;
        if bytes.len() != len {
            return Err(StorageError);
        }
        self.save(&bytes)
    }

    /// Whether this storage keeps anything; when `false` the recorder does not even
    /// encode its state (simulations, hosts that accept losing the queue on restart).
    /// Such a storage cannot keep an ε budget across a restart, so the recorder makes no
    /// report of a budgeted metric with it, unless it is [`Self::single_life`].
    fn keeps_state(&self) -> bool {
        true
    }

    /// **Hazard**: `true` only when the recorder using this storage is the device's only
    /// life — it is never restarted (a simulation). Then a storage that keeps nothing may
    /// still enforce ε budgets, in memory. A host that restarts would reopen its budget
    /// periods on each restart. See [`crate::hazmat::SingleLifeStorage`].
    fn single_life(&self) -> bool {
        false
    }
}

/// Storage that keeps nothing: a restart starts empty. For hosts that accept losing
/// unsent reports on a restart. It cannot keep an ε budget either, so a recorder with it
/// makes no report of a metric with a budget (counted as `budget_unsaved`); simulations
/// whose devices never restart use [`crate::hazmat::SingleLifeStorage`].
#[derive(Clone, Copy, Debug, Default)]
pub struct NullStorage;

impl Storage for NullStorage {
    fn load(&mut self) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(None)
    }

    fn save(&mut self, _bytes: &[u8]) -> Result<(), StorageError> {
        Ok(())
    }

    fn keeps_state(&self) -> bool {
        false
    }
}

/// Storage in memory: for tests, and for hosts that persist nothing.
///
/// ```
/// use confiance::recorder::{MemoryStorage, Storage};
/// let mut s = MemoryStorage::default();
/// s.save(b"state")?;
/// assert_eq!(s.load()?.as_deref(), Some(&b"state"[..]));
/// # Ok::<(), confiance::recorder::StorageError>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct MemoryStorage {
    bytes: Option<Vec<u8>>,
    /// When true, every save fails (to test the recorder's resilience).
    pub fail: bool,
}

impl Storage for MemoryStorage {
    fn load(&mut self) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.bytes.clone())
    }

    fn save(&mut self, bytes: &[u8]) -> Result<(), StorageError> {
        if self.fail {
            return Err(StorageError);
        }
        self.bytes = Some(bytes.to_vec());
        Ok(())
    }

    /// Gathers the pieces straight into the new copy (no buffer in between); the old
    /// bytes stay until it is complete.
    fn save_streamed(&mut self, len: usize, write: StateWriter<'_>) -> Result<(), StorageError> {
        if self.fail {
            return Err(StorageError);
        }
        let mut bytes = Vec::with_capacity(len);
        write(&mut |piece| bytes.extend_from_slice(piece))?;
        if bytes.len() != len {
            return Err(StorageError);
        }
        self.bytes = Some(bytes);
        Ok(())
    }
}

impl<S: Storage + ?Sized> Storage for &mut S {
    fn load(&mut self) -> Result<Option<Vec<u8>>, StorageError> {
        (**self).load()
    }

    fn save(&mut self, bytes: &[u8]) -> Result<(), StorageError> {
        (**self).save(bytes)
    }

    fn save_streamed(&mut self, len: usize, write: StateWriter<'_>) -> Result<(), StorageError> {
        (**self).save_streamed(len, write)
    }

    fn keeps_state(&self) -> bool {
        (**self).keeps_state()
    }

    fn single_life(&self) -> bool {
        (**self).single_life()
    }
}

/// Keeps nothing, like [`NullStorage`], but declares that its recorder is never
/// restarted, so ε budgets hold in memory. Reachable as
/// [`crate::hazmat::SingleLifeStorage`]: a host that can restart must not use it.
#[derive(Clone, Copy, Debug, Default)]
pub struct SingleLifeStorage;

impl Storage for SingleLifeStorage {
    fn load(&mut self) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(None)
    }

    fn save(&mut self, _bytes: &[u8]) -> Result<(), StorageError> {
        Ok(())
    }

    fn keeps_state(&self) -> bool {
        false
    }

    fn single_life(&self) -> bool {
        true
    }
}
