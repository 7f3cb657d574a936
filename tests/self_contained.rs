//! The repository stands on its own: no file points at a design document outside it, and
//! every reference to an anchor of `docs/design.md` resolves to one it defines.
//!
//! The design lives in `docs/design.md`. A reference to a file that is not in the
//! repository leaves a reader (or another team implementing the protocol) with nothing
//! to read, so it fails here rather than in review.

use std::path::{Path, PathBuf};

/// Directories that hold build output, local environments or generated files, never
/// sources: skipped.
const SKIP_DIRS: &[&str] = &[".git", "target", "out", ".venv", "artifacts", "coverage", "node_modules"];

/// What an outside reference looks like. Built from pieces so that this file does not
/// match itself.
fn forbidden() -> Vec<String> {
    let design = ["DES", "IGN"].concat();
    let shared = ["sha", "red"].concat();
    vec![
        format!("{design}.md"),
        format!("{design} §"),
        format!("../{shared}"),
        format!("{shared}/{design}"),
        ["design", " brief"].concat(),
    ]
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let mut entries: Vec<_> = entries.filter_map(Result::ok).collect();
    entries.sort_by_key(std::fs::DirEntry::file_name);
    for entry in entries {
        let path = entry.path();
        let Ok(kind) = entry.file_type() else { continue };
        if kind.is_dir() {
            let name = entry.file_name();
            if !SKIP_DIRS.iter().any(|s| name == *s) {
                files(&path, out);
            }
        } else if kind.is_file() {
            out.push(path);
        }
    }
}

/// Every file of the repository as lossy UTF-8 text, with its path relative to the root.
fn repository() -> Vec<(String, String)> {
    let root = repo_root();
    let mut paths = Vec::new();
    files(&root, &mut paths);
    paths
        .into_iter()
        .filter_map(|p| {
            let bytes = std::fs::read(&p).ok()?;
            let rel = p.strip_prefix(&root).unwrap_or(&p).display().to_string();
            Some((rel, String::from_utf8_lossy(&bytes).into_owned()))
        })
        .collect()
}

/// The anchors `docs/design.md` defines with `<a id="…"></a>`.
fn design_anchors() -> Vec<String> {
    let text = std::fs::read_to_string(repo_root().join("docs/design.md")).expect("docs/design.md exists");
    text.match_indices("<a id=\"")
        .filter_map(|(i, m)| {
            let rest = &text[i + m.len()..];
            rest.find('"').map(|end| rest[..end].to_owned())
        })
        .collect()
}

/// The anchor names referenced after `prefix` in `text`, with their line numbers. An empty
/// name (the prefix followed by anything but `[a-z0-9-]`) is returned too, and is broken.
fn anchor_refs(text: &str, prefix: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        for (i, m) in line.match_indices(prefix) {
            let name: String = line[i + m.len()..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-')
                .collect();
            out.push((n + 1, name));
        }
    }
    out
}

#[test]
fn no_file_refers_to_a_design_document_outside_the_repository() {
    let needles = forbidden();
    let mut hits = Vec::new();
    for (path, text) in repository() {
        for (n, line) in text.lines().enumerate() {
            if needles.iter().any(|needle| line.contains(needle.as_str())) {
                hits.push(format!("{path}:{}: {}", n + 1, line.trim()));
            }
        }
    }
    assert!(
        hits.is_empty(),
        "{} reference(s) to a document outside the repository; point them at an anchor of docs/design.md:\n{}",
        hits.len(),
        hits.join("\n")
    );
}

#[test]
fn every_design_anchor_referenced_exists() {
    let anchors = design_anchors();
    assert!(anchors.len() >= 15, "docs/design.md defines only {} anchors", anchors.len());
    let mut seen = std::collections::BTreeSet::new();
    for a in &anchors {
        assert!(seen.insert(a), "anchor {a:?} is defined twice in docs/design.md");
    }
    // Built from pieces so that this file's own code is not taken for a reference.
    let design_ref = ["design.md", "#"].concat();
    let mut broken = Vec::new();
    let mut checked = 0_usize;
    for (path, text) in repository() {
        let mut refs = anchor_refs(&text, &design_ref);
        if path == Path::new("docs").join("design.md").display().to_string() {
            refs.extend(anchor_refs(&text, &["](", "#"].concat()));
        }
        for (line, name) in refs {
            checked += 1;
            if !anchors.contains(&name) {
                broken.push(format!("{path}:{line}: #{name}"));
            }
        }
    }
    assert!(checked > 0, "no reference to docs/design.md anywhere");
    assert!(
        broken.is_empty(),
        "references to anchors docs/design.md does not define:\n{}",
        broken.join("\n")
    );
}

#[test]
fn the_checks_catch_what_they_look_for() {
    let prefix = ["design.md", "#"].concat();
    let text = format!("a\nsee docs/{prefix}sees, docs/{prefix}nope-2 and docs/{prefix}.\n");
    let found = anchor_refs(&text, &prefix);
    assert_eq!(found, vec![(2, "sees".to_owned()), (2, "nope-2".to_owned()), (2, String::new())]);
    let needles = forbidden();
    let design = ["DES", "IGN"].concat();
    for line in [format!("({design}.md §5)"), format!("({design} §5)"), "../sha".to_owned() + "red/x"] {
        assert!(needles.iter().any(|n| line.contains(n.as_str())), "{line} not caught");
    }
    assert!(!needles.iter().any(|n| format!("docs/{prefix}sees").contains(n.as_str())));
}
