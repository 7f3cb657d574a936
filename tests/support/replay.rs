//! An RNG that replays fixed bytes: with a vector's `ikmE` it makes an HPKE sender's
//! ephemeral key the vector's (`GenerateKeyPair` = `DeriveKeyPair(random(32))`).

use core::convert::Infallible;

use rand_core::{TryCryptoRng, TryRng};

/// Hands out its bytes in order; panics when asked for more than it holds.
pub struct Replay(pub Vec<u8>);

impl TryRng for Replay {
    type Error = Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        let mut b = [0; 4];
        self.try_fill_bytes(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }
    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        let mut b = [0; 8];
        self.try_fill_bytes(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        assert!(dst.len() <= self.0.len(), "replay RNG exhausted");
        let rest = self.0.split_off(dst.len());
        dst.copy_from_slice(&self.0);
        self.0 = rest;
        Ok(())
    }
}
impl TryCryptoRng for Replay {}
