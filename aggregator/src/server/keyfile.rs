//! The key file: the aggregator's HPKE keys, the audit log's checkpoint signing key and
//! the hashed bearer tokens of the HTTP API, in one small text file.
//!
//! Format (version 1): UTF-8 text, one `name = value` per line; blank lines and lines
//! starting with `#` are ignored; unknown names are refused.
//!
//! ```text
//! format = 1
//! grace-secs = 604800
//! hpke-key = <hex KeyConfig::to_bytes> <hex 32-byte X25519 secret>   (one or more)
//! log-origin = confiance/audit
//! log-secret = <hex 32-byte Ed25519 seed>
//! token = <role> <recipient or -> <hex SHA-256 of the token>        (zero or more)
//! ```

use std::fmt::Write as _;
use std::path::Path;

use confiance::envelope::{KeyConfig, SecretKey};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::audit::CheckpointSigner;
use crate::keys::KeyStore;

use super::{Role, TokenEntry, hex, unhex};

/// The current key-file format.
pub const FORMAT: u32 = 1;

/// Why a key file could not be read or written.
#[derive(Debug)]
#[non_exhaustive]
pub enum KeyFileError {
    /// Reading or writing failed.
    Io(std::io::Error),
    /// A line is not understood (1-based line number and why).
    Syntax(usize, String),
    /// A required entry is missing.
    Missing(&'static str),
}

impl core::fmt::Display for KeyFileError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Io(e) => write!(f, "key file: {e}"),
            Self::Syntax(line, why) => write!(f, "key file line {line}: {why}"),
            Self::Missing(what) => write!(f, "key file: missing `{what}`"),
        }
    }
}

impl std::error::Error for KeyFileError {}

/// The parsed key file. `Debug` hides the secrets.
#[derive(Clone)]
pub struct KeyFile {
    /// Grace period of the HPKE keys, in seconds.
    pub grace_secs: u64,
    /// The HPKE keys: published config and secret.
    pub hpke: Vec<(KeyConfig, Zeroizing<[u8; 32]>)>,
    /// The audit log's origin line.
    pub log_origin: String,
    /// The checkpoint signing key's seed.
    pub log_secret: Zeroizing<[u8; 32]>,
    /// The bearer tokens, hashed.
    pub tokens: Vec<TokenEntry>,
}

impl core::fmt::Debug for KeyFile {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("KeyFile")
            .field("grace_secs", &self.grace_secs)
            .field("hpke_keys", &self.hpke.len())
            .field("log_origin", &self.log_origin)
            .field("tokens", &self.tokens.len())
            .finish_non_exhaustive()
    }
}

fn bytes32(s: &str, line: usize) -> Result<Zeroizing<[u8; 32]>, KeyFileError> {
    let v = Zeroizing::new(unhex(s).ok_or_else(|| KeyFileError::Syntax(line, "bad hex".into()))?);
    let mut out = Zeroizing::new([0u8; 32]);
    if v.len() != 32 {
        return Err(KeyFileError::Syntax(line, "expected 32 bytes".into()));
    }
    out.copy_from_slice(&v);
    Ok(out)
}

impl KeyFile {
    /// Parses a key file's text.
    ///
    /// # Errors
    /// [`KeyFileError::Syntax`], [`KeyFileError::Missing`].
    pub fn parse(text: &str) -> Result<Self, KeyFileError> {
        let mut kf = Self {
            grace_secs: 7 * 86_400,
            hpke: Vec::new(),
            log_origin: String::new(),
            log_secret: Zeroizing::new([0; 32]),
            tokens: Vec::new(),
        };
        let (mut format, mut secret) = (false, false);
        for (i, raw) in text.lines().enumerate() {
            let n = i + 1;
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (name, value) = line
                .split_once('=')
                .map(|(a, b)| (a.trim(), b.trim()))
                .ok_or_else(|| KeyFileError::Syntax(n, "expected `name = value`".into()))?;
            let syntax = |why: &str| KeyFileError::Syntax(n, why.into());
            match name {
                "format" => {
                    if value != FORMAT.to_string() {
                        return Err(syntax("unsupported format"));
                    }
                    format = true;
                }
                "grace-secs" => kf.grace_secs = value.parse().map_err(|_| syntax("bad number"))?,
                "hpke-key" => {
                    let (c, s) = value.split_once(' ').ok_or_else(|| syntax("expected config and secret"))?;
                    let config = KeyConfig::from_bytes(&unhex(c.trim()).ok_or_else(|| syntax("bad hex"))?)
                        .map_err(|e| syntax(&format!("bad key config: {e}")))?;
                    kf.hpke.push((config, bytes32(s.trim(), n)?));
                }
                "log-origin" => kf.log_origin = value.to_owned(),
                "log-secret" => {
                    kf.log_secret = bytes32(value, n)?;
                    secret = true;
                }
                "token" => {
                    let parts: Vec<&str> = value.split_whitespace().collect();
                    let [role, recipient, hash] = parts[..] else {
                        return Err(syntax("expected `role recipient hash`"));
                    };
                    if role == "device" {
                        return Err(syntax(
                            "the `device` role is gone: devices sign what they post (delete this line; \
                             see docs/http.md, \"Migration\")",
                        ));
                    }
                    let role: Role = role.parse().map_err(|()| syntax("unknown role"))?;
                    let recipient = match recipient {
                        "-" => None,
                        r => Some(r.parse().map_err(|_| syntax("bad recipient id"))?),
                    };
                    if (role == Role::Recipient) != recipient.is_some() {
                        return Err(syntax("a recipient token names its recipient, other roles `-`"));
                    }
                    let h = bytes32(hash, n)?;
                    kf.tokens.push(TokenEntry { role, recipient, sha256: *h });
                }
                _ => return Err(syntax("unknown entry")),
            }
        }
        if !format {
            return Err(KeyFileError::Missing("format"));
        }
        if kf.hpke.is_empty() {
            return Err(KeyFileError::Missing("hpke-key"));
        }
        if !secret || kf.log_origin.is_empty() {
            return Err(KeyFileError::Missing("log-secret and log-origin"));
        }
        Ok(kf)
    }

    /// Reads and parses the key file at `path`.
    ///
    /// # Errors
    /// [`KeyFileError`].
    pub fn read(path: &Path) -> Result<Self, KeyFileError> {
        Self::parse(&std::fs::read_to_string(path).map_err(KeyFileError::Io)?)
    }

    /// The file's text.
    #[must_use]
    pub fn to_text(&self) -> Zeroizing<String> {
        let mut s = Zeroizing::new(String::new());
        let _ = writeln!(s, "# confiance key file: keep it secret (see docs/cli.md)\nformat = {FORMAT}");
        let _ = writeln!(s, "grace-secs = {}", self.grace_secs);
        for (c, k) in &self.hpke {
            let _ = writeln!(s, "hpke-key = {} {}", hex(&c.to_bytes()), hex(&k[..]));
        }
        let _ = writeln!(s, "log-origin = {}", self.log_origin);
        let _ = writeln!(s, "log-secret = {}", hex(&self.log_secret[..]));
        for t in &self.tokens {
            let r = t.recipient.as_ref().map_or_else(|| "-".to_owned(), ToString::to_string);
            let _ = writeln!(s, "token = {} {} {}", t.role, r, hex(&t.sha256));
        }
        s
    }

    /// Writes the file (mode 0600 on Unix), replacing it atomically
    /// ([`replace_file`](super::replace_file)).
    ///
    /// # Errors
    /// [`KeyFileError::Io`].
    pub fn write(&self, path: &Path) -> Result<(), KeyFileError> {
        super::replace_file(path, self.to_text().as_bytes(), Some(0o600)).map_err(KeyFileError::Io)
    }

    /// Reads the key file at `path`, changes it with `change` and writes it back, holding
    /// an exclusive lock on `<path>.lock` throughout, so that concurrent updates (two
    /// `confiance token` runs) are applied one after the other and none is lost.
    ///
    /// # Errors
    /// [`KeyFileError`] from reading or writing; `change`'s error is returned as is in
    /// `Ok(Err(..))` and nothing is written.
    pub fn update<T, E>(
        path: &Path,
        change: impl FnOnce(&mut Self) -> Result<T, E>,
    ) -> Result<Result<T, E>, KeyFileError> {
        let mut lock_name = path.as_os_str().to_owned();
        lock_name.push(".lock");
        let lock = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(std::path::PathBuf::from(lock_name))
            .map_err(KeyFileError::Io)?;
        lock.lock().map_err(KeyFileError::Io)?;
        let mut kf = Self::read(path)?;
        let out = match change(&mut kf) {
            Ok(t) => t,
            Err(e) => return Ok(Err(e)),
        };
        kf.write(path)?;
        drop(lock);
        Ok(Ok(out))
    }

    /// The key set's fingerprint: SHA-256 over the audit log's origin and public key and
    /// every HPKE key config, in key-id order. A database records the fingerprint of the
    /// key set it was created with ([`crate::identity`]).
    ///
    /// # Errors
    /// A bad log origin, as text.
    pub fn fingerprint(&self) -> Result<[u8; 32], String> {
        let signer = self.signer()?;
        let mut h = Sha256::new();
        h.update(b"confiance key set v1\0");
        h.update((self.log_origin.len() as u64).to_be_bytes());
        h.update(self.log_origin.as_bytes());
        h.update(signer.verifying_key().as_bytes());
        let mut configs: Vec<Vec<u8>> = self.hpke.iter().map(|(c, _)| c.to_bytes().to_vec()).collect();
        configs.sort();
        for c in configs {
            h.update((c.len() as u64).to_be_bytes());
            h.update(&c);
        }
        Ok(h.finalize().into())
    }

    /// The HPKE key store.
    ///
    /// # Errors
    /// A duplicate or unsupported key, as text.
    pub fn key_store(&self) -> Result<KeyStore, String> {
        let mut ks = KeyStore::new(self.grace_secs);
        for (c, s) in &self.hpke {
            ks.insert(*c, SecretKey::from_bytes(s)).map_err(|e| e.to_string())?;
        }
        Ok(ks)
    }

    /// The checkpoint signer.
    ///
    /// # Errors
    /// A bad origin, as text.
    pub fn signer(&self) -> Result<CheckpointSigner, String> {
        CheckpointSigner::from_secret_bytes(&self.log_origin, &self.log_secret).map_err(|e| e.to_string())
    }

    /// Adds a token for `role` (and `recipient`), returning the token itself (to hand out
    /// once; only its hash is kept).
    #[must_use]
    pub fn add_token(
        &mut self,
        role: Role,
        recipient: Option<confiance::ids::RecipientId>,
        random: [u8; 32],
    ) -> String {
        let token = format!("cf_{}", hex(&random));
        let sha256: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        self.tokens.push(TokenEntry { role, recipient, sha256 });
        token
    }
}
