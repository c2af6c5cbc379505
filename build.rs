//! Captures what the binary was built from, for `restful_auth_build_info` on `/metrics` and
//! `--version`: the commit (`RESTFUL_AUTH_COMMIT`) and the compiler (`RESTFUL_AUTH_RUSTC`).
//! Runs local commands only and never fails the build: without git (a source tarball, a
//! container build without `.git`) the commit is `unknown`, unless `RESTFUL_AUTH_COMMIT` is
//! set in the build's environment.
//!
//! It also packs the binary's relative relocations (`-z pack-relative-relocs`, DT_RELR) when
//! this machine's C toolchain links a program that way and the program runs.

use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=RESTFUL_AUTH_COMMIT");
    println!("cargo:rerun-if-env-changed=RUSTC_LINKER");
    let commit = std::env::var("RESTFUL_AUTH_COMMIT")
        .ok()
        .filter(|commit| !commit.trim().is_empty())
        .or_else(git_commit)
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=RESTFUL_AUTH_COMMIT={}", commit.trim());

    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    // `rustc 1.95.0 (59807616e 2026-04-14)` → `1.95.0 (59807616e 2026-04-14)`.
    let version = output_of(&rustc, &["--version"])
        .map(|version| version.trim_start_matches("rustc ").to_owned())
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=RESTFUL_AUTH_RUSTC={version}");

    if packed_relocations_work() {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}

/// Whether a position-independent program linked with packed relative relocations runs here,
/// linked by the linker cargo uses for the target (`cc` unless configured).
/// The dynamic loader applies every relocation at start, so the 2.6 MB of plain ones were
/// resident in each process; packed, they take 30 KB. It needs GNU ld 2.38 and glibc 2.36
/// (Debian 12, Ubuntu 22.10); elsewhere, and when cross-compiling, the binary links as before.
fn packed_relocations_work() -> bool {
    let target = std::env::var("TARGET").unwrap_or_default();
    if target != std::env::var("HOST").unwrap_or_default() || !target.ends_with("-linux-gnu") {
        return false;
    }
    let Some(out_dir) = std::env::var_os("OUT_DIR") else {
        return false;
    };
    let program = Path::new(&out_dir).join("packed-relocations-probe");
    let source = Path::new(&out_dir).join("packed-relocations-probe.c");
    // A pointer in data: a relative relocation for the loader to apply.
    let written = std::fs::write(
        &source,
        "static int zero; int *at = &zero;\nint main(void) { return *at; }\n",
    );
    let linked = written.is_ok()
        && Command::new(std::env::var("RUSTC_LINKER").unwrap_or_else(|_| "cc".to_owned()))
            .args(["-fPIE", "-pie", "-Wl,-z,pack-relative-relocs", "-o"])
            .arg(&program)
            .arg(&source)
            .output()
            .is_ok_and(|output| output.status.success());
    linked
        && Command::new(&program)
            .status()
            .is_ok_and(|status| status.success())
}

/// The short hash of `HEAD`, rebuilt when `HEAD` moves (a commit, a checkout).
fn git_commit() -> Option<String> {
    let commit = output_of("git", &["rev-parse", "--short", "HEAD"])?;
    // Only files that exist: cargo reruns a build script for good over a missing one. A
    // worktree's `HEAD` and a branch's ref may live in different directories: git knows where.
    let mut watched = vec!["HEAD".to_owned(), "packed-refs".to_owned()];
    if let Some(branch) = output_of("git", &["symbolic-ref", "-q", "HEAD"]) {
        watched.push(branch);
    }
    for name in watched {
        if let Some(path) = output_of("git", &["rev-parse", "--git-path", &name])
            && Path::new(&path).exists()
        {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    Some(commit)
}

/// What `program args` prints, trimmed, when it succeeds and prints something.
fn output_of(program: &str, args: &[&str]) -> Option<String> {
    let output = Command::new(program).args(args).output().ok()?;
    let text = String::from_utf8(output.stdout).ok()?;
    let text = text.trim();
    (output.status.success() && !text.is_empty()).then(|| text.to_owned())
}
