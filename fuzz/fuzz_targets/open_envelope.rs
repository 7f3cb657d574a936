#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| confiance_fuzz::open_envelope(data));
