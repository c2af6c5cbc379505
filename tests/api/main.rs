//! The integration suite: every row of `docs/CONTRACT.md`, driven through
//! the real router. One binary, so the crate is linked once and the tests share `helpers`.

mod admin;
mod audit;
mod helpers;
mod hostile;
mod keys;
mod login;
mod logout;
mod me;
mod mfa;
mod pg;
mod properties;
mod protocol;
mod refresh;
mod register;
mod reset;
mod scale_out;
mod secrets;
mod security;
mod smtp;
mod web;
