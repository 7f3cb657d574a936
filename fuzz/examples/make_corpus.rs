//! Writes the seed corpus: `cargo run --example make_corpus` from `fuzz/`.
fn main() -> std::io::Result<()> {
    for (target, name, bytes) in confiance_fuzz::seeds() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus").join(target);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join(name), bytes)?;
    }
    Ok(())
}
