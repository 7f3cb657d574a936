#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| confiance_fuzz::verify_receipt(data));
