//! The `Authorization` header reading and access-token verification (see
//! `restful_auth_fuzz::check_bearer`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| restful_auth_fuzz::check_bearer(data));
