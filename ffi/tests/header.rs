//! `include/confiance.h` is what cbindgen makes of `src/lib.rs`: regenerated here and
//! compared byte for byte, so a change to the C API without its header fails.
//! `CONFIANCE_BLESS=1 cargo test -p confiance-ffi --test header` rewrites it.

#[test]
fn the_committed_header_is_up_to_date() {
    let dir = env!("CARGO_MANIFEST_DIR");
    let config = cbindgen::Config::from_file(format!("{dir}/cbindgen.toml")).unwrap();
    let mut generated = Vec::new();
    cbindgen::Builder::new()
        .with_crate(dir)
        .with_config(config)
        .generate()
        .expect("cbindgen parses the crate")
        .write(&mut generated);
    let path = format!("{dir}/include/confiance.h");
    if std::env::var_os("CONFIANCE_BLESS").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "ffi/include/confiance.h is stale: run CONFIANCE_BLESS=1 cargo test -p confiance-ffi --test header"
    );
}
