//! Replacing a file whole or not at all: the key file, and the files `--out` names.

use std::path::Path;

use super::hex;

/// Writes `bytes` to `path`, replacing what it held atomically: they go to a temporary
/// file of their own in the same directory (named after this process and a random
/// number, so concurrent writers never share one), are flushed to disk, then renamed
/// over `path`. A full disk or a process killed part-way leaves `path` as it was and no
/// temporary file behind (a kill leaves the temporary one, never a truncated `path`).
/// The new file has `mode` (Unix), else the mode of the file it replaces, else the
/// process's default.
///
/// # Errors
/// The I/O error; `path` is then unchanged.
///
/// ```
/// let dir = std::env::temp_dir().join(format!("confiance-replace-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir)?;
/// let p = dir.join("report.json");
/// confiance_aggregator::server::replace_file(&p, b"{}", None)?;
/// confiance_aggregator::server::replace_file(&p, b"[]", None)?;
/// assert_eq!(std::fs::read(&p)?, b"[]");
/// assert_eq!(std::fs::read_dir(&dir)?.count(), 1, "no temporary file is left");
/// std::fs::remove_dir_all(&dir)?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn replace_file(path: &Path, bytes: &[u8], mode: Option<u32>) -> std::io::Result<()> {
    let mut nonce = [0u8; 8];
    getrandom::fill(&mut nonce).map_err(|e| std::io::Error::other(e.to_string()))?;
    let name = path.file_name().map_or_else(|| "file".into(), |n| n.to_string_lossy().into_owned());
    let tmp = path.with_file_name(format!(".{name}.{}.{}.tmp", std::process::id(), hex(&nonce)));
    #[cfg(unix)]
    let mode = mode.or_else(|| {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::metadata(path).ok().map(|m| m.permissions().mode() & 0o7777)
    });
    let written = (|| {
        let mut o = std::fs::OpenOptions::new();
        o.write(true).create_new(true);
        #[cfg(unix)]
        if let Some(mode) = mode {
            std::os::unix::fs::OpenOptionsExt::mode(&mut o, mode);
        }
        #[cfg(not(unix))]
        let _ = mode;
        let mut f = o.open(&tmp)?;
        std::io::Write::write_all(&mut f, bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}
