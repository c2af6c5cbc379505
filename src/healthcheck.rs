//! `restful-auth healthcheck`: one `GET` of the readiness URL over plain HTTP/1.1 with the
//! standard library's sockets, for container `HEALTHCHECK`s and systemd watchdogs that have no
//! curl. It uses nothing of the crate.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// How long the whole check may take: connecting, sending, and reading the status line.
pub const TIMEOUT: Duration = Duration::from_secs(2);

/// The readiness URL of a service listening on `bind`: an unspecified address (`0.0.0.0`,
/// `::`) is reached on loopback.
pub fn default_url(bind: SocketAddr) -> String {
    let ip = match bind.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}/readyz", SocketAddr::new(ip, bind.port()))
}

/// `Ok` when `GET url` answers 200 within `timeout`; else why not. `url` is
/// `http://HOST[:PORT][/PATH]`; without a path, `/readyz` is asked.
pub fn check(url: &str, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url:?} is not an http:// URL"))?;
    let (authority, path) = match rest.find('/') {
        Some(slash) => (&rest[..slash], &rest[slash..]),
        None => (rest, "/readyz"),
    };
    if authority.is_empty() {
        return Err(format!("{url:?} names no host"));
    }
    let has_port = authority
        .rsplit_once(':')
        .is_some_and(|(_, port)| !port.contains(']'));
    let target = if has_port {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    let address = target
        .to_socket_addrs()
        .map_err(|error| format!("cannot resolve {authority}: {error}"))?
        .next()
        .ok_or_else(|| format!("{authority} has no address"))?;
    let left = || {
        deadline
            .checked_duration_since(Instant::now())
            .filter(|left| !left.is_zero())
            .ok_or_else(|| format!("no answer from {url} within {timeout:?}"))
    };
    let mut stream = TcpStream::connect_timeout(&address, left()?)
        .map_err(|error| format!("cannot connect to {address}: {error}"))?;
    stream
        .set_write_timeout(Some(left()?))
        .and_then(|()| {
            stream.write_all(
                format!(
                    "GET {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: restful-auth \
                     healthcheck\r\nConnection: close\r\n\r\n"
                )
                .as_bytes(),
            )
        })
        .map_err(|error| format!("cannot send the request to {url}: {error}"))?;
    let mut answer = Vec::new();
    let mut buffer = [0; 512];
    while !answer.windows(2).any(|pair| pair == b"\r\n") && answer.len() < 4096 {
        stream
            .set_read_timeout(Some(left()?))
            .map_err(|error| error.to_string())?;
        match stream.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => answer.extend_from_slice(&buffer[..read]),
            Err(error) => return Err(format!("no answer from {url}: {error}")),
        }
    }
    let status_line = String::from_utf8_lossy(&answer);
    let status_line = status_line.lines().next().unwrap_or_default();
    match status_line.split_whitespace().nth(1) {
        Some("200") if status_line.starts_with("HTTP/1.") => Ok(()),
        Some(_) => Err(format!("{url} answered {status_line:?}")),
        None => Err(format!("{url} sent no HTTP answer")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_url_reaches_an_unspecified_bind_address_on_loopback() {
        assert_eq!(
            default_url("0.0.0.0:8000".parse().unwrap()),
            "http://127.0.0.1:8000/readyz"
        );
        assert_eq!(
            default_url("[::]:8000".parse().unwrap()),
            "http://[::1]:8000/readyz"
        );
        assert_eq!(
            default_url("10.0.0.5:9000".parse().unwrap()),
            "http://10.0.0.5:9000/readyz"
        );
    }

    #[test]
    fn a_url_that_is_not_plain_http_is_refused() {
        assert!(check("https://127.0.0.1:1/readyz", TIMEOUT).is_err());
        assert!(check("http:///readyz", TIMEOUT).is_err());
    }
}
