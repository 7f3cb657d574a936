//! The database's identity: the fingerprint of the key set and the catalogue (its text
//! and digest) it was created with, stored in it on creation and checked on every open.
//!
//! Serving a database with another key file would sign checkpoints of its audit log with
//! a key auditors have never seen; serving it with another catalogue would judge old
//! facts by new rules. Both are refused with a message naming the stored and the given
//! identity; a key rotation or a catalogue change is an explicit command
//! ([`adopt`]) whose every use is kept in the database's `identity_history` table.
//! A zero-length file, a file that is not SQLite and an SQLite database without
//! confiance's tables are refused rather than taken for a new, empty database.
//!
//! ```
//! use confiance_aggregator::identity::{Access, Identity, IdentityError, check};
//! let dir = std::env::temp_dir().join(format!("confiance-identity-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir)?;
//! let db = dir.join("empty.sqlite");
//! std::fs::write(&db, b"")?;
//! let id = Identity { key_fingerprint: [1; 32], catalogue_digest: [2; 32], catalogue_text: String::new() };
//! assert!(matches!(check(&db, &id, Access::ReadWrite), Err(IdentityError::Empty(_))));
//! assert!(matches!(check(&dir.join("none"), &id, Access::ReadOnly), Err(IdentityError::Missing(_))));
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok::<(), std::io::Error>(())
//! ```

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags, OptionalExtension as _, params};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS identity (
    key TEXT PRIMARY KEY,
    value BLOB NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS identity_history (
    seq INTEGER PRIMARY KEY,
    at INTEGER NOT NULL,
    what TEXT NOT NULL,
    old BLOB NOT NULL,
    new BLOB NOT NULL
) STRICT;
";

/// What a database is bound to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// SHA-256 fingerprint of the key set (see `KeyFile::fingerprint`).
    pub key_fingerprint: [u8; 32],
    /// The catalogue's canonical digest.
    pub catalogue_digest: [u8; 32],
    /// The catalogue's text, kept so the database says what it was served under.
    pub catalogue_text: String,
}

/// How a command uses the database.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Reads only (queries, audit, reports): a missing database is an error, not a new
    /// one, and nothing is written.
    ReadOnly,
    /// Reads and writes: a missing database is created, with this identity.
    ReadWrite,
}

/// What [`check`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Checked {
    /// No database at the path; it will be created (read-write only).
    New,
    /// The database's identity is the given one.
    Matches,
    /// A database made before identities were stored: the given identity was recorded
    /// (read-write), or nothing was checked (read-only).
    Adopted,
}

/// Why a database is refused.
#[derive(Debug)]
#[non_exhaustive]
pub enum IdentityError {
    /// A read-only command was given a path with no database.
    Missing(PathBuf),
    /// The file is empty: not a database, and not taken for a new one.
    Empty(PathBuf),
    /// The file is not a confiance database (why).
    Foreign(PathBuf, &'static str),
    /// The database was created with another key set.
    KeyMismatch {
        /// The fingerprint stored in the database.
        stored: [u8; 32],
        /// The key file's.
        given: [u8; 32],
    },
    /// The database was created with another catalogue.
    CatalogueMismatch {
        /// The digest stored in the database.
        stored: [u8; 32],
        /// The given catalogue's.
        given: [u8; 32],
    },
    /// Reading the file failed.
    Io(std::io::Error),
    /// SQLite failed.
    Sqlite(rusqlite::Error),
}

/// The first 8 bytes in hex: enough to tell two identities apart in a message.
fn short(b: &[u8; 32]) -> String {
    use core::fmt::Write as _;
    b[..8].iter().fold(String::with_capacity(16), |mut s, x| {
        let _ = write!(s, "{x:02x}");
        s
    })
}

impl core::fmt::Display for IdentityError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Missing(p) => {
                write!(f, "{}: no such database (a read-only command does not create one)", p.display())
            }
            Self::Empty(p) => write!(
                f,
                "{}: an empty file is not a confiance database (remove it to start a new one)",
                p.display()
            ),
            Self::Foreign(p, why) => write!(f, "{}: not a confiance database ({why})", p.display()),
            Self::KeyMismatch { stored, given } => write!(
                f,
                "the database was created with key set {} but the key file is key set {}: use the database's own key file, or record a key rotation with `confiance identity adopt`",
                short(stored),
                short(given)
            ),
            Self::CatalogueMismatch { stored, given } => write!(
                f,
                "the database was created with catalogue {} but the catalogue given is {}: use its catalogue (`confiance identity show` prints it), or record the change with `confiance identity adopt`",
                short(stored),
                short(given)
            ),
            Self::Io(e) => write!(f, "database: {e}"),
            Self::Sqlite(e) => write!(f, "database: {e}"),
        }
    }
}

impl std::error::Error for IdentityError {}

impl From<rusqlite::Error> for IdentityError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Sqlite(e)
    }
}

const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";

/// Tables only a confiance database has (any one of them marks one made before
/// identities were stored).
const OUR_TABLES: [&str; 3] = ["identity", "ledger_meta", "partition_state"];

fn table_exists(conn: &Connection, name: &str) -> Result<bool, rusqlite::Error> {
    conn.query_row("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1", [name], |_| Ok(()))
        .optional()
        .map(|r| r.is_some())
}

fn stored(conn: &Connection, key: &str) -> Result<Option<Vec<u8>>, rusqlite::Error> {
    conn.query_row("SELECT value FROM identity WHERE key = ?1", [key], |r| r.get(0)).optional()
}

fn as32(v: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    if v.len() == 32 {
        out.copy_from_slice(v);
    }
    out
}

fn write_identity(conn: &Connection, id: &Identity) -> Result<(), rusqlite::Error> {
    conn.execute_batch(SCHEMA)?;
    for (k, v) in [
        ("key_fingerprint", &id.key_fingerprint[..]),
        ("catalogue_digest", &id.catalogue_digest[..]),
        ("catalogue_text", id.catalogue_text.as_bytes()),
    ] {
        conn.execute("INSERT OR REPLACE INTO identity (key, value) VALUES (?1, ?2)", params![k, v])?;
    }
    Ok(())
}

/// Checks the database at `path` against `id` before it is opened; with
/// [`Access::ReadWrite`], creates a missing database holding `id`, and records `id` in
/// a database made before identities were stored.
///
/// # Errors
/// [`IdentityError`]: the file is missing (read-only), empty, foreign, or bound to
/// another key set or catalogue.
pub fn check(path: &Path, id: &Identity, access: Access) -> Result<Checked, IdentityError> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => Some(m),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(IdentityError::Io(e)),
    };
    let Some(meta) = meta else {
        if access == Access::ReadOnly {
            return Err(IdentityError::Missing(path.to_owned()));
        }
        crate::store::sqlite::create_private(path).map_err(IdentityError::Io)?;
        let conn = Connection::open(path)?;
        // The store's choice, which must be made before the first table exists.
        conn.execute_batch("PRAGMA auto_vacuum = INCREMENTAL;")?;
        write_identity(&conn, id)?;
        return Ok(Checked::New);
    };
    if meta.len() == 0 {
        return Err(IdentityError::Empty(path.to_owned()));
    }
    let mut magic = [0u8; 16];
    {
        use std::io::Read as _;
        let mut f = std::fs::File::open(path).map_err(IdentityError::Io)?;
        if f.read_exact(&mut magic).is_err() || &magic != SQLITE_MAGIC {
            return Err(IdentityError::Foreign(path.to_owned(), "not an SQLite file"));
        }
    }
    let flags = match access {
        Access::ReadOnly => OpenFlags::SQLITE_OPEN_READ_ONLY,
        Access::ReadWrite => OpenFlags::SQLITE_OPEN_READ_WRITE,
    };
    let conn = Connection::open_with_flags(path, flags | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    if !table_exists(&conn, "identity")? {
        let mut ours = false;
        for t in &OUR_TABLES[1..] {
            ours |= table_exists(&conn, t)?;
        }
        if !ours {
            return Err(IdentityError::Foreign(
                path.to_owned(),
                "an SQLite database without confiance's tables",
            ));
        }
        if access == Access::ReadWrite {
            write_identity(&conn, id)?;
        }
        return Ok(Checked::Adopted);
    }
    let key = as32(&stored(&conn, "key_fingerprint")?.unwrap_or_default());
    if key != id.key_fingerprint {
        return Err(IdentityError::KeyMismatch { stored: key, given: id.key_fingerprint });
    }
    let cat = as32(&stored(&conn, "catalogue_digest")?.unwrap_or_default());
    if cat != id.catalogue_digest {
        return Err(IdentityError::CatalogueMismatch { stored: cat, given: id.catalogue_digest });
    }
    Ok(Checked::Matches)
}

/// The identity stored in the database at `path` (read-only), if any.
///
/// # Errors
/// [`IdentityError`] when the file is missing, empty, foreign or unreadable.
pub fn read(path: &Path) -> Result<Option<Identity>, IdentityError> {
    if !path.exists() {
        return Err(IdentityError::Missing(path.to_owned()));
    }
    if std::fs::metadata(path).map_err(IdentityError::Io)?.len() == 0 {
        return Err(IdentityError::Empty(path.to_owned()));
    }
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    if !table_exists(&conn, "identity")? {
        return Ok(None);
    }
    Ok(Some(Identity {
        key_fingerprint: as32(&stored(&conn, "key_fingerprint")?.unwrap_or_default()),
        catalogue_digest: as32(&stored(&conn, "catalogue_digest")?.unwrap_or_default()),
        catalogue_text: String::from_utf8_lossy(&stored(&conn, "catalogue_text")?.unwrap_or_default())
            .into_owned(),
    }))
}

/// What [`adopt`] changed: `(what, old, new)` for the key set and/or the catalogue.
pub type Adopted = Vec<(&'static str, [u8; 32], [u8; 32])>;

/// Binds the database at `path` to `id` (a key rotation, a catalogue change), keeping
/// each change in `identity_history` with the time `at`. The ledger's own catalogue
/// binding moves with it.
///
/// # Errors
/// [`IdentityError`] when the file is missing, empty, foreign or unwritable.
pub fn adopt(path: &Path, id: &Identity, at: u64) -> Result<Adopted, IdentityError> {
    let old = read(path)?;
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    if old.is_none() && !OUR_TABLES[1..].iter().any(|t| table_exists(&conn, t).unwrap_or(false)) {
        return Err(IdentityError::Foreign(path.to_owned(), "an SQLite database without confiance's tables"));
    }
    let (old_key, old_cat) = old.map_or(([0; 32], [0; 32]), |o| (o.key_fingerprint, o.catalogue_digest));
    let mut changed = Vec::new();
    if old_key != id.key_fingerprint {
        changed.push(("key_set", old_key, id.key_fingerprint));
    }
    if old_cat != id.catalogue_digest {
        changed.push(("catalogue", old_cat, id.catalogue_digest));
    }
    let tx = conn.unchecked_transaction()?;
    write_identity(&tx, id)?;
    let at = i64::try_from(at).unwrap_or(i64::MAX);
    for (what, old, new) in &changed {
        tx.execute(
            "INSERT INTO identity_history (at, what, old, new) VALUES (?1, ?2, ?3, ?4)",
            params![at, what, &old[..], &new[..]],
        )?;
    }
    if table_exists(&tx, "ledger_meta")? {
        tx.execute(
            "UPDATE ledger_meta SET value = ?1 WHERE key = 'catalogue'",
            params![&id.catalogue_digest[..]],
        )?;
    }
    tx.commit()?;
    Ok(changed)
}
