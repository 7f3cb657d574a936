//! `uniffi-bindgen`, built from this workspace so that CI needs nothing else: generates
//! the Kotlin, Swift and Python sources of the bindings from the built library,
//! `uniffi-bindgen generate --library target/debug/libconfiance_ffi.so --language python
//! --out-dir …` (see `.ci/uniffi` and docs/sdk.md).

fn main() {
    uniffi::uniffi_bindgen_main();
}
