//! Body parsing and field validation: the first byte picks the `Content-Type`, the rest is
//! the body (see `restful_auth_fuzz::check_body`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| restful_auth_fuzz::check_body(data));
