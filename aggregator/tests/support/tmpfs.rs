//! A small tmpfs for the full-disk tests (http_hostile.rs, cli.rs; included with
//! `#[path = "support/tmpfs.rs"] mod tmpfs;`): mounted when the tests run as root, else
//! the caller prints why it skips.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A tmpfs mounted for the test, unmounted when dropped.
pub struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// Mounts a tmpfs of `size` (`"2m"`) at `at`; why not, when it cannot (not root).
pub fn mount_tmpfs(at: &Path, size: &str) -> Result<Mount, String> {
    let uid = Command::new("id").arg("-u").output().map_err(|e| format!("`id -u`: {e}"))?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Err("not running as root: cannot mount a tmpfs".into());
    }
    std::fs::create_dir_all(at).map_err(|e| e.to_string())?;
    let o = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(at)
        .output()
        .map_err(|e| format!("`mount`: {e}"))?;
    if !o.status.success() {
        return Err(format!("`mount -t tmpfs` failed: {}", String::from_utf8_lossy(&o.stderr).trim()));
    }
    Ok(Mount(at.to_owned()))
}

/// Fills the filesystem holding `dir` with one file; returns its path.
pub fn fill(dir: &Path) -> PathBuf {
    let p = dir.join("filler");
    let mut f = std::fs::File::create(&p).unwrap();
    let block = vec![0u8; 4096];
    while f.write_all(&block).is_ok() {}
    let _ = f.sync_all();
    p
}
