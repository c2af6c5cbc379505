//! A signal sent to the benchmark alone (not to its process group) stops the processes it
//! started before it exits, instead of leaving them running.

use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn a_sigterm_or_sigint_stops_the_bare_server_and_ends_the_benchmark_with_the_signals_status() {
    for (signal, name, status) in [
        (libc::SIGTERM, "SIGTERM", 143),
        (libc::SIGINT, "SIGINT", 130),
    ] {
        // Arrange: a "service" that accepts connections and never answers, so the benchmark
        // waits on its first request (seeding the account) with the bare server up.
        let mute = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
        let url = format!("http://{}", mute.local_addr().expect("its address"));
        let mut benchmark = Command::new(env!("CARGO_BIN_EXE_loadtest"))
            .args(["--url", &url, "--smoke"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the benchmark starts");
        let mut stderr = BufReader::new(benchmark.stderr.take().expect("piped"));
        let bare_pid = bare_server_pid(&mut stderr);

        // Act
        // SAFETY: kill(2) on the pid of a child we have not reaped yet.
        assert_eq!(unsafe { libc::kill(benchmark.id() as i32, signal) }, 0);
        let deadline = Instant::now() + Duration::from_secs(10);
        let exit = loop {
            if let Some(exit) = benchmark.try_wait().expect("waiting for the benchmark") {
                break exit;
            }
            assert!(
                Instant::now() < deadline,
                "{name}: the benchmark kept running"
            );
            std::thread::sleep(Duration::from_millis(20));
        };

        // Assert: the bare server is gone (it would hold stderr open if it were not).
        let bare_alive = Path::new(&format!("/proc/{bare_pid}")).exists();
        if bare_alive {
            // SAFETY: kill(2) on the orphan this test made the benchmark leave behind.
            unsafe { libc::kill(bare_pid, libc::SIGKILL) };
        }
        assert!(
            !bare_alive,
            "{name}: the bare server outlived the benchmark"
        );
        let mut rest = String::new();
        stderr
            .read_to_string(&mut rest)
            .expect("the rest of stderr");
        assert!(
            rest.contains(&format!("interrupted by {name}")),
            "{name}: {rest}"
        );
        assert_eq!(exit.code(), Some(status), "{name}: {rest}");
    }
}

/// Reads the benchmark's stderr up to its line `bare server: pid PID on ADDRESS`.
fn bare_server_pid(stderr: &mut impl BufRead) -> i32 {
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        let read = stderr.read_line(&mut line).expect("reading stderr");
        assert!(
            read > 0,
            "the benchmark ended before its bare server: {seen}"
        );
        if let Some(rest) = line.strip_prefix("bare server: pid ") {
            let pid = rest.split_whitespace().next().unwrap_or_default();
            return pid.parse().expect("a pid");
        }
        seen.push_str(&line);
    }
}
