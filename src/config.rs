//! Configuration: one `clap` parser whose every flag has an environment-variable twin, so the
//! same binary is configured by flags on a laptop and by the environment in a container.

use std::fmt;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use axum::http::HeaderValue;
use clap::Parser;

use crate::domain::keys::SigningAlgorithm;
use crate::domain::settings::Setting;
use crate::domain::throttle::{AddressPrefixes, RateLimit, ThrottlePolicy};
use crate::private_files::{SecretFileError, read_secret};
use crate::store::{PoolSettings, SqliteSettings};

/// The headings that group the flags in `--help`.
mod heading {
    pub const SERVER: &str = "Server";
    pub const DATABASE: &str = "Database";
    pub const TOKENS: &str = "Tokens";
    pub const PASSWORDS: &str = "Passwords";
    pub const THROTTLING: &str = "Throttling";
    pub const HOUSEKEEPING: &str = "Housekeeping";
    pub const OBSERVABILITY: &str = "Observability";
    pub const ADMIN: &str = "Admin API";
    pub const SECRETS: &str = "Secrets at rest";
    pub const MAIL: &str = "Mail";
}

/// The settings every command shares. Every flag is global: it may come before or after the
/// subcommand (`restful-auth serve --bind …`, `restful-auth user list --database-url …`), and
/// each subcommand's `--help` lists them. clap forbids a global flag to be required, so every
/// one has a default or is optional.
#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    /// Address and port to listen on.
    #[arg(long, global = true, help_heading = heading::SERVER, env = "RESTFUL_AUTH_BIND", default_value = "127.0.0.1:8000")]
    pub bind: SocketAddr,

    /// Where the data lives: `sqlite://PATH` (created and migrated at start), or
    /// `postgres://USER@HOST/DB` for several instances sharing one database.
    #[arg(
        long,
        global = true,
        help_heading = heading::DATABASE,
        env = "DATABASE_URL",
        hide_env_values = true,
        default_value = "sqlite://restful_auth.sqlite3",
        conflicts_with = "database_url_file"
    )]
    pub database_url: String,

    /// A file holding --database-url (a `postgres://` URL with a password stays out of the
    /// environment and the command line); readable by its owner only.
    #[arg(long, global = true, help_heading = heading::DATABASE, env = "DATABASE_URL_FILE")]
    pub database_url_file: Option<PathBuf>,

    /// A shared secret that signs access tokens with HS256, at least 32 bytes: only holders of
    /// it can verify them. When unset, signing keys are generated (see --jwt-algorithm), kept
    /// in the database for every instance, and their public keys published.
    #[arg(long, global = true, help_heading = heading::TOKENS, env = "RESTFUL_AUTH_SECRET_KEY", hide_env_values = true, conflicts_with = "secret_key_file", value_parser = SecretParser::<SecretKey>::new())]
    pub secret_key: Option<SecretKey>,

    /// A file holding --secret-key, readable by its owner only.
    #[arg(long, global = true, help_heading = heading::TOKENS, env = "RESTFUL_AUTH_SECRET_KEY_FILE")]
    pub secret_key_file: Option<PathBuf>,

    /// Keys that signed earlier tokens (comma separated): they still verify, none signs. Put
    /// the old `--secret-key` here when you change it, until its tokens have expired.
    #[arg(
        long,
        global = true,
        help_heading = heading::TOKENS,
        env = "RESTFUL_AUTH_PREVIOUS_SECRET_KEYS",
        hide_env_values = true,
        value_delimiter = ',',
        conflicts_with = "previous_secret_keys_file",
        value_parser = SecretParser::<SecretKey>::new()
    )]
    pub previous_secret_keys: Vec<SecretKey>,

    /// A file holding --previous-secret-keys (one a line, or comma separated), readable by its
    /// owner only.
    #[arg(long, global = true, help_heading = heading::TOKENS, env = "RESTFUL_AUTH_PREVIOUS_SECRET_KEYS_FILE")]
    pub previous_secret_keys_file: Option<PathBuf>,

    /// Algorithm of new signing keys: `EdDSA` (Ed25519), `ES256` or `HS256`. Unset: EdDSA for
    /// a new database, and the algorithm of the key in force for an existing one (a database
    /// of HS256 keys stays HS256 until this is set). Set and different from the key in force:
    /// a key of this algorithm signs from the start.
    #[arg(long, global = true, help_heading = heading::TOKENS, env = "RESTFUL_AUTH_JWT_ALGORITHM", ignore_case = true)]
    pub jwt_algorithm: Option<SigningAlgorithm>,

    /// The URL clients reach the service at (behind a proxy, its public address): the base of
    /// the published key set's and the login's URLs in `/.well-known/openid-configuration`,
    /// and the default issuer. Default: `http://<--bind>`.
    #[arg(long, global = true, help_heading = heading::SERVER, env = "RESTFUL_AUTH_PUBLIC_URL", value_parser = parse_public_url)]
    pub public_url: Option<String>,

    /// The `iss` of access tokens, which verification requires. Default: the public URL.
    #[arg(long, global = true, help_heading = heading::TOKENS, env = "RESTFUL_AUTH_ISSUER")]
    pub issuer: Option<String>,

    /// The `aud` of access tokens (comma separated for several); a token must name one.
    #[arg(
        long,
        global = true,
        help_heading = heading::TOKENS,
        env = "RESTFUL_AUTH_AUDIENCE",
        value_delimiter = ',',
        default_value = "restful-auth"
    )]
    pub audience: Vec<String>,

    /// The `typ` header of access tokens: `JWT`, or `at+jwt` (RFC 9068).
    #[arg(long, global = true, help_heading = heading::TOKENS, env = "RESTFUL_AUTH_TOKEN_TYP", default_value = "JWT", value_parser = ["JWT", "at+jwt"])]
    pub token_typ: String,

    /// How long a key made by `keys rotate` is published before it signs: longer than the
    /// key set's cache lifetime (5 min) plus the reload interval, so that services verifying
    /// tokens know the key before its first token.
    #[arg(long, global = true, help_heading = heading::TOKENS, env = "RESTFUL_AUTH_KEY_ACTIVATION_DELAY", default_value = "10m", value_parser = humantime::parse_duration)]
    pub key_activation_delay: Duration,

    /// Access tokens remembered as verified (until they expire), so that a client calling
    /// again with the same token costs no signature check: about 300 bytes each.
    #[arg(
        long,
        global = true,
        help_heading = heading::TOKENS,
        env = "RESTFUL_AUTH_VERIFIED_TOKEN_CACHE",
        default_value_t = 16384
    )]
    pub verified_token_cache: usize,

    /// Lifetime of an access token, e.g. `30s`, `5m`.
    #[arg(long, global = true, help_heading = heading::TOKENS, env = "RESTFUL_AUTH_ACCESS_TOKEN_LIFETIME", default_value = "30s", value_parser = parse_lifetime)]
    pub access_token_lifetime: Duration,

    /// Lifetime of a refresh token from its issue, e.g. `30days`, `12h`.
    #[arg(long, global = true, help_heading = heading::TOKENS, env = "RESTFUL_AUTH_REFRESH_TOKEN_LIFETIME", default_value = "30days", value_parser = parse_lifetime)]
    pub refresh_token_lifetime: Duration,

    /// How long the refresh token consumed last may be presented again and answered with the
    /// same successor (two tabs, a lost answer) instead of ending the session; 0 = never.
    #[arg(long, global = true, help_heading = heading::TOKENS, env = "RESTFUL_AUTH_REFRESH_RETRY_GRACE", default_value = "0s", value_parser = parse_grace)]
    pub refresh_retry_grace: Duration,

    /// Longest a session may be refreshed from its login (e.g. `90days`); unlimited if unset.
    #[arg(long, global = true, help_heading = heading::TOKENS, env = "RESTFUL_AUTH_SESSION_MAX_LIFETIME", value_parser = parse_lifetime)]
    pub session_max_lifetime: Option<Duration>,

    /// Failed logins allowed per account from one client address (`5/5m`: five per five
    /// minutes), or `off`. An address that has logged into the account is held by this alone.
    #[arg(long, global = true, help_heading = heading::THROTTLING, env = "RESTFUL_AUTH_THROTTLE_LOGIN_ACCOUNT_IP", default_value = "5/5m", value_parser = parse_rate_limit)]
    pub throttle_login_account_ip: Limit,

    /// Failed logins allowed per account from all the addresses it does not know (none of
    /// which logged into it within --throttle-known-address-lifetime), or `off`.
    #[arg(long, global = true, help_heading = heading::THROTTLING, env = "RESTFUL_AUTH_THROTTLE_LOGIN_ACCOUNT", default_value = "20/1h", value_parser = parse_rate_limit)]
    pub throttle_login_account: Limit,

    /// Failed logins allowed per client address across accounts, or `off`.
    #[arg(long, global = true, help_heading = heading::THROTTLING, env = "RESTFUL_AUTH_THROTTLE_LOGIN_IP", default_value = "30/1m", value_parser = parse_rate_limit)]
    pub throttle_login_ip: Limit,

    /// Wrong one-time codes (after the right password) allowed per account from one client
    /// address, and per account from all the addresses it does not know together, or `off`.
    /// An address that has logged into the account is held by its own count alone.
    #[arg(long, global = true, help_heading = heading::THROTTLING, env = "RESTFUL_AUTH_THROTTLE_MFA_ACCOUNT", default_value = "5/5m", value_parser = parse_rate_limit)]
    pub throttle_mfa_account: Limit,

    /// Registrations allowed per client address, or `off`.
    #[arg(long, global = true, help_heading = heading::THROTTLING, env = "RESTFUL_AUTH_THROTTLE_REGISTER_IP", default_value = "30/1h", value_parser = parse_rate_limit)]
    pub throttle_register_ip: Limit,

    /// Invalid or replayed refresh tokens allowed per client address, at `/api/refresh/` and
    /// `/api/logout/` together, or `off`.
    #[arg(long, global = true, help_heading = heading::THROTTLING, env = "RESTFUL_AUTH_THROTTLE_REFRESH_IP", default_value = "60/1m", value_parser = parse_rate_limit)]
    pub throttle_refresh_ip: Limit,

    /// How long an address that logged into an account stays known to it (and so escapes the
    /// account's limit for strangers).
    #[arg(long, global = true, help_heading = heading::THROTTLING, env = "RESTFUL_AUTH_THROTTLE_KNOWN_ADDRESS_LIFETIME", default_value = "30days", value_parser = parse_lifetime)]
    pub throttle_known_address_lifetime: Duration,

    /// Leading bits of an IPv4 client address that throttling counts as one address.
    #[arg(long, global = true, help_heading = heading::THROTTLING, env = "RESTFUL_AUTH_THROTTLE_IPV4_PREFIX", default_value_t = 32, value_parser = clap::value_parser!(u8).range(8..=32))]
    pub throttle_ipv4_prefix: u8,

    /// Leading bits of an IPv6 client address that throttling counts as one address: a host
    /// is usually handed a whole /64.
    #[arg(long, global = true, help_heading = heading::THROTTLING, env = "RESTFUL_AUTH_THROTTLE_IPV6_PREFIX", default_value_t = 64, value_parser = clap::value_parser!(u8).range(16..=128))]
    pub throttle_ipv6_prefix: u8,

    /// Proxies (addresses or networks, comma separated) whose `X-Forwarded-For` is believed
    /// for the client address; any other peer is the client itself.
    #[arg(long, global = true, help_heading = heading::SERVER, env = "RESTFUL_AUTH_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<ipnet::IpNet>,

    /// How long an ended or expired session is kept, with its tokens, before housekeeping
    /// deletes it (a session that can still be refreshed is always kept whole).
    #[arg(long, global = true, help_heading = heading::HOUSEKEEPING, env = "RESTFUL_AUTH_RETENTION", default_value = "7days", value_parser = parse_lifetime)]
    pub retention: Duration,

    /// How long audit events are kept (`/api/me/activity/`, `restful-auth audit`) before
    /// housekeeping deletes them.
    #[arg(long, global = true, help_heading = heading::HOUSEKEEPING, env = "RESTFUL_AUTH_AUDIT_RETENTION", default_value = "90days", value_parser = parse_lifetime)]
    pub audit_retention: Duration,

    /// How often housekeeping runs.
    #[arg(long, global = true, help_heading = heading::HOUSEKEEPING, env = "RESTFUL_AUTH_PURGE_INTERVAL", default_value = "1h", value_parser = parse_lifetime)]
    pub purge_interval: Duration,

    /// How often run-time settings and signing keys are reloaded from the database.
    #[arg(long, global = true, help_heading = heading::HOUSEKEEPING, env = "RESTFUL_AUTH_RELOAD_INTERVAL", default_value = "2s", value_parser = parse_lifetime)]
    pub reload_interval: Duration,

    /// Minimum length of a new password.
    #[arg(long, global = true, help_heading = heading::PASSWORDS, env = "RESTFUL_AUTH_PASSWORD_MIN_LENGTH", default_value_t = 8)]
    pub password_min_length: usize,

    /// Password hashes computed at once (each takes one core and 19 MiB); defaults to the
    /// number of cores. Further logins wait their turn instead of starving other requests.
    #[arg(long, global = true, help_heading = heading::PASSWORDS, env = "RESTFUL_AUTH_HASH_CONCURRENCY")]
    pub hash_concurrency: Option<NonZeroUsize>,

    /// SQLite: sessions whose profile is kept in memory, so an authenticated request reads no
    /// row (about 230 bytes each; 0 reads the database on every request). This process's
    /// writes take effect at once, another process's within `--reload-interval`.
    #[arg(
        long,
        global = true,
        help_heading = heading::DATABASE,
        env = "RESTFUL_AUTH_SESSION_CACHE_SIZE",
        default_value_t = 100_000
    )]
    pub session_cache_size: usize,

    /// PostgreSQL: most connections this instance opens.
    #[arg(
        long,
        global = true,
        help_heading = heading::DATABASE,
        env = "RESTFUL_AUTH_DATABASE_MAX_CONNECTIONS",
        default_value_t = 16
    )]
    pub database_max_connections: u32,

    /// PostgreSQL: longest wait for a connection before answering 503.
    #[arg(long, global = true, help_heading = heading::DATABASE, env = "RESTFUL_AUTH_DATABASE_CONNECT_TIMEOUT", default_value = "5s", value_parser = parse_lifetime)]
    pub database_connect_timeout: Duration,

    /// PostgreSQL: longest a statement may run before it is cancelled (answered 503).
    #[arg(long, global = true, help_heading = heading::DATABASE, env = "RESTFUL_AUTH_DATABASE_STATEMENT_TIMEOUT", default_value = "5s", value_parser = parse_lifetime)]
    pub database_statement_timeout: Duration,

    /// Longest a client may take to send a request's headers (or keep its connection idle
    /// between requests: it is closed then), and to send its body (answered 408 then).
    #[arg(long, global = true, help_heading = heading::SERVER, env = "RESTFUL_AUTH_CLIENT_TIMEOUT", default_value = "30s", value_parser = parse_lifetime)]
    pub client_timeout: Duration,

    /// On SIGTERM or SIGINT: how long in-flight requests may take to finish.
    #[arg(long, global = true, help_heading = heading::SERVER, env = "RESTFUL_AUTH_SHUTDOWN_GRACE", default_value = "10s", value_parser = parse_lifetime)]
    pub shutdown_grace: Duration,

    /// Origins (e.g. `https://app.example.org`) whose browser pages may call the API, comma
    /// separated. None by default: only same-origin pages and non-browser clients.
    #[arg(long, global = true, help_heading = heading::SERVER, env = "RESTFUL_AUTH_CORS_ORIGINS", value_delimiter = ',', value_parser = parse_origin)]
    pub cors_origins: Vec<HeaderValue>,

    /// Where `/metrics` is served: an address of its own (by default loopback only, where the
    /// monitoring agent of the machine reads it and clients do not), `public` (on --bind,
    /// beside the API), or `off`.
    #[arg(long, global = true, help_heading = heading::OBSERVABILITY, env = "RESTFUL_AUTH_METRICS_BIND", default_value = "127.0.0.1:9464")]
    pub metrics_bind: MetricsBind,

    /// One log line per request answered: `on` or `off` (for a deployment whose proxy logs
    /// requests). Off, the lines of failed requests (5xx, a reused refresh token) stay.
    #[arg(long, global = true, help_heading = heading::OBSERVABILITY, env = "RESTFUL_AUTH_ACCESS_LOG", default_value = "on", value_parser = parse_on_off, action = clap::ArgAction::Set)]
    pub access_log: bool,

    /// Serve the admin API (`/admin/…`: every account, its sessions and throttling) on this
    /// address (e.g. `127.0.0.1:8081`); off when unset, and never on `--bind`. An address
    /// other than loopback needs --admin-token-file.
    #[arg(long, global = true, help_heading = heading::ADMIN, env = "RESTFUL_AUTH_ADMIN_BIND")]
    pub admin_bind: Option<SocketAddr>,

    /// File holding the admin API's token (surrounding white space ignored), readable by its
    /// owner only: every admin request must then carry `Authorization: Bearer <token>`.
    #[arg(long, global = true, help_heading = heading::ADMIN, env = "RESTFUL_AUTH_ADMIN_TOKEN_FILE")]
    pub admin_token_file: Option<PathBuf>,

    /// Log lines as human-readable text or as JSON objects (one per line). Default: text when
    /// standard output is a terminal, JSON otherwise (a container, a unit, a pipe).
    #[arg(long, global = true, help_heading = heading::OBSERVABILITY, env = "RESTFUL_AUTH_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,

    /// Password checks allowed to wait for the hashing pool; more are refused at once with 503
    /// and `Retry-After`, so a login flood cannot queue without bound.
    #[arg(long, global = true, help_heading = heading::PASSWORDS, env = "RESTFUL_AUTH_HASH_QUEUE_LIMIT", default_value_t = 64)]
    pub hash_queue_limit: usize,

    /// Log filter: a level (`info`, `debug`) or `tracing` directives (`restful_auth=debug`).
    /// Unset: `RUST_LOG`'s, else `info`; set, it wins over `RUST_LOG`.
    #[arg(long, global = true, help_heading = heading::OBSERVABILITY, env = "RESTFUL_AUTH_LOG")]
    pub log_level: Option<String>,

    /// Client connections open at once; one more is closed at once. By default the open files
    /// limit (raised to its hard limit at start) less 256 and `--database-max-connections`,
    /// for the database, logs and metrics; at least half the limit.
    #[arg(long, global = true, help_heading = heading::SERVER, env = "RESTFUL_AUTH_MAX_CONNECTIONS")]
    pub max_connections: Option<NonZeroUsize>,

    /// File holding the master key (32 bytes, base64 or hex) that seals the secrets stored in
    /// the database. Default on SQLite: `<database file>.master-key`, generated at first start.
    #[arg(long, global = true, help_heading = heading::SECRETS, env = "RESTFUL_AUTH_MASTER_KEY_FILE")]
    pub master_key_file: Option<PathBuf>,

    /// The master key itself (base64 or hex), for containers; prefer the environment variable,
    /// as a command line is visible to other users.
    #[arg(long, global = true, help_heading = heading::SECRETS, env = "RESTFUL_AUTH_MASTER_KEY", hide_env_values = true, conflicts_with = "master_key_file", value_parser = SecretParser::<crate::domain::vault::MasterKey>::new())]
    pub master_key: Option<crate::domain::vault::MasterKey>,

    /// The Argon2id cost of new password hashes: OWASP's, which no flag changes (a suite that
    /// hashes thousands of passwords lowers it, as Django's test settings use a fast hasher).
    #[arg(skip = Argon2Cost::OWASP)]
    pub argon2_cost: Argon2Cost,

    /// Start even if the SQLite file or the master key file is open to group or others.
    #[arg(long, global = true, help_heading = heading::SECRETS, env = "RESTFUL_AUTH_ALLOW_INSECURE_PERMISSIONS")]
    pub allow_insecure_permissions: bool,

    /// The SMTP server that sends password-reset and verification mails: `smtp://host:port`
    /// (no TLS), `smtp://user:pass@host:587?tls=starttls`, or `smtps://host:465` (TLS from the
    /// start). Unset: no mail is sent (`restful-auth user reset-link EMAIL` prints a link).
    #[arg(long, global = true, help_heading = heading::MAIL, env = "RESTFUL_AUTH_SMTP_URL", hide_env_values = true, value_parser = SecretParser::<SmtpUrl>::new())]
    pub smtp_url: Option<SmtpUrl>,

    /// A file holding the SMTP password, instead of one in --smtp-url; readable by its owner
    /// only.
    #[arg(long, global = true, help_heading = heading::MAIL, env = "RESTFUL_AUTH_SMTP_PASSWORD_FILE")]
    pub smtp_password_file: Option<PathBuf>,

    /// The sender of the mails, e.g. `Example <no-reply@example.org>`.
    #[arg(long, global = true, help_heading = heading::MAIL, env = "RESTFUL_AUTH_MAIL_FROM", default_value = "restful-auth <no-reply@localhost>", value_parser = parse_mailbox)]
    pub mail_from: lettre::message::Mailbox,

    /// Mails waiting to be sent at most; beyond, a request's mail is dropped (and counted).
    #[arg(long, global = true, help_heading = heading::MAIL, env = "RESTFUL_AUTH_MAIL_QUEUE_LIMIT", default_value_t = 256)]
    pub mail_queue_limit: usize,

    /// How long a password-reset link works.
    #[arg(long, global = true, help_heading = heading::MAIL, env = "RESTFUL_AUTH_RESET_TOKEN_LIFETIME", default_value = "30m", value_parser = parse_lifetime)]
    pub reset_token_lifetime: Duration,

    /// How long an email-verification link works.
    #[arg(long, global = true, help_heading = heading::MAIL, env = "RESTFUL_AUTH_VERIFICATION_TOKEN_LIFETIME", default_value = "1day", value_parser = parse_lifetime)]
    pub verification_token_lifetime: Duration,

    /// Refuse logins (after a correct password) of accounts whose email is not verified.
    #[arg(long, global = true, help_heading = heading::MAIL, env = "RESTFUL_AUTH_REQUIRE_VERIFIED_EMAIL")]
    pub require_verified_email: bool,

    /// Links mailed to one email address (password resets and verifications together, for
    /// addresses with or without an account alike), or `off`.
    #[arg(long, global = true, help_heading = heading::THROTTLING, env = "RESTFUL_AUTH_THROTTLE_MAIL_EMAIL", default_value = "5/1h", value_parser = parse_rate_limit)]
    pub throttle_mail_email: Limit,

    /// Password-reset requests per client address, or `off`.
    #[arg(long, global = true, help_heading = heading::THROTTLING, env = "RESTFUL_AUTH_THROTTLE_RESET_IP", default_value = "30/1h", value_parser = parse_rate_limit)]
    pub throttle_reset_ip: Limit,

    /// How often, and how long apart, sending a mail is tried: the service's, which no flag
    /// changes (a suite with an SMTP server that is down shortens the waits).
    #[arg(skip = MailRetry::SERVICE)]
    pub mail_retry: MailRetry,
}

/// Attempts at sending one mail: the first, then one after each delay (each twice the one
/// before).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MailRetry {
    pub attempts: u32,
    pub first_delay: Duration,
}

impl MailRetry {
    /// Four attempts over about a minute: a restarting relay is back by then.
    pub const SERVICE: MailRetry = MailRetry {
        attempts: 4,
        first_delay: Duration::from_secs(8),
    };
}

/// How the connection to the SMTP server is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// None (`smtp://`): for a relay on the same host or network.
    None,
    /// STARTTLS, required (`?tls=starttls` or `?tls=required`).
    StartTls,
    /// STARTTLS when the server offers it (`?tls=opportunistic`).
    Opportunistic,
    /// TLS from the first byte (`smtps://`).
    Wrapper,
}

/// `--smtp-url`, parsed. Its `Debug` never shows the password, which no log line or error
/// may hold.
#[derive(Clone, PartialEq, Eq)]
pub struct SmtpUrl {
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    pub user: Option<String>,
    pub password: Option<String>,
}

impl fmt::Debug for SmtpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpUrl")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl SmtpUrl {
    /// Reads `smtp://[user[:password]@]host[:port][?tls=starttls|required|opportunistic]` or
    /// `smtps://…`. The error never repeats the URL, which may hold a password.
    pub fn parse(url: &str) -> Result<SmtpUrl, String> {
        let url = url.trim();
        let (scheme, rest) = url
            .split_once("://")
            .ok_or("an SMTP URL starts with smtp:// or smtps://")?;
        let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
        let authority = rest.trim_end_matches('/');
        if authority.contains('/') {
            return Err("an SMTP URL has no path".into());
        }
        let mut tls = match scheme.to_ascii_lowercase().as_str() {
            "smtp" => SmtpTls::None,
            "smtps" => SmtpTls::Wrapper,
            _ => return Err("an SMTP URL starts with smtp:// or smtps://".into()),
        };
        for (name, value) in form_urlencoded::parse(query.as_bytes()) {
            match (name.as_ref(), value.as_ref(), tls) {
                ("tls", "starttls" | "required", SmtpTls::None) => tls = SmtpTls::StartTls,
                ("tls", "opportunistic", SmtpTls::None) => tls = SmtpTls::Opportunistic,
                ("tls", _, _) => {
                    return Err(
                        "tls= is starttls, required or opportunistic, and only with smtp://".into(),
                    );
                }
                _ => return Err(format!("unknown SMTP URL parameter {name:?}")),
            }
        }
        let (credentials, host_port) = match authority.rsplit_once('@') {
            Some((credentials, host_port)) => (Some(credentials), host_port),
            None => (None, authority),
        };
        let (user, password) = match credentials {
            Some(credentials) => {
                let (user, password) = match credentials.split_once(':') {
                    Some((user, password)) => (user, Some(percent_decode(password)?)),
                    None => (credentials, None),
                };
                (Some(percent_decode(user)?), password)
            }
            None => (None, None),
        };
        let (host, port) = match host_port.rsplit_once(':') {
            Some((host, port)) if !port.contains(']') => (
                host,
                Some(
                    port.parse::<u16>()
                        .map_err(|_| "the SMTP port is not a number")?,
                ),
            ),
            _ => (host_port, None),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err("the SMTP URL names no host".into());
        }
        let port = port.unwrap_or(match tls {
            SmtpTls::None => 25,
            SmtpTls::StartTls | SmtpTls::Opportunistic => 587,
            SmtpTls::Wrapper => 465,
        });
        Ok(SmtpUrl {
            host: host.to_owned(),
            port,
            tls,
            user,
            password,
        })
    }

    /// The URL fit for a log line: no user, no password.
    pub fn redacted(&self) -> String {
        let scheme = if self.tls == SmtpTls::Wrapper {
            "smtps"
        } else {
            "smtp"
        };
        format!("{scheme}://{}:{}", self.host, self.port)
    }
}

impl FromStr for SmtpUrl {
    type Err = String;

    fn from_str(url: &str) -> Result<SmtpUrl, String> {
        SmtpUrl::parse(url)
    }
}

fn percent_decode(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%' {
            let hex = bytes
                .get(index + 1..index + 3)
                .and_then(|hex| std::str::from_utf8(hex).ok())
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                .ok_or("a malformed %-escape in the SMTP URL's credentials")?;
            decoded.push(hex);
            index += 3;
        } else {
            decoded.push(bytes[index]);
            index += 1;
        }
    }
    String::from_utf8(decoded).map_err(|_| "the SMTP URL's credentials are not UTF-8".into())
}

/// Reads a secret setting (`--smtp-url`, which may hold a password, `--secret-key`, …) without
/// ever putting its value in clap's error, which repeats the value of a refused argument: a
/// mistyped secret is still most of the secret.
#[derive(Clone)]
struct SecretParser<T>(std::marker::PhantomData<T>);

impl<T> SecretParser<T> {
    fn new() -> Self {
        SecretParser(std::marker::PhantomData)
    }
}

impl<T> clap::builder::TypedValueParser for SecretParser<T>
where
    T: FromStr<Err = String> + Clone + Send + Sync + 'static,
{
    type Value = T;

    fn parse_ref(
        &self,
        _command: &clap::Command,
        argument: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<T, clap::Error> {
        let refused = |reason: String| {
            let flag = argument.and_then(clap::Arg::get_long).unwrap_or_default();
            let variable = argument
                .and_then(clap::Arg::get_env)
                .map(|variable| variable.to_string_lossy())
                .unwrap_or_default();
            clap::Error::raw(
                clap::error::ErrorKind::ValueValidation,
                format!("--{flag} ({variable}): {reason}\n"),
            )
        };
        let value = value.to_str().ok_or_else(|| refused("not UTF-8".into()))?;
        value.parse().map_err(refused)
    }
}

fn parse_mailbox(value: &str) -> Result<lettre::message::Mailbox, String> {
    value
        .parse()
        .map_err(|_| format!("{value:?} is not an address like \"Example <no-reply@example.org>\""))
}

impl Config {
    /// The configuration of a command line without flags, for the database at `database_url`.
    pub fn with_database(database_url: impl Into<String>) -> Self {
        /// The flags alone, to read their defaults.
        #[derive(Parser)]
        struct Flags {
            #[command(flatten)]
            config: Config,
        }
        let mut config = Flags::parse_from(["restful-auth"]).config;
        config.database_url = database_url.into();
        config
    }

    pub fn sqlite_settings(&self) -> SqliteSettings {
        SqliteSettings {
            session_cache_size: self.session_cache_size,
        }
    }

    /// Reads the secrets given as files (`--database-url-file`, `--secret-key-file`,
    /// `--previous-secret-keys-file`, `--smtp-password-file`) into the settings they stand
    /// for. Each file is refused if group or others may read it (unless
    /// --allow-insecure-permissions), and loses one trailing line ending. clap refuses a value
    /// and its file together; the SMTP password may come in --smtp-url, checked here.
    pub fn read_secret_files(&mut self) -> Result<(), SecretSettingError> {
        let allowed = self.allow_insecure_permissions;
        if let Some(path) = &self.database_url_file {
            self.database_url = read_secret("the database URL file", path, allowed)?;
        }
        if let Some(path) = &self.secret_key_file {
            let key = read_secret("the secret key file", path, allowed)?;
            self.secret_key = Some(SecretKey::from_file(&key, path)?);
        }
        if let Some(path) = &self.previous_secret_keys_file {
            let keys = read_secret("the previous secret keys file", path, allowed)?;
            self.previous_secret_keys = keys
                .split([',', '\n'])
                .map(|key| key.trim_end_matches('\r'))
                .filter(|key| !key.is_empty())
                .map(|key| SecretKey::from_file(key, path))
                .collect::<Result<_, _>>()?;
        }
        if let (Some(path), Some(url)) = (&self.smtp_password_file, &mut self.smtp_url) {
            if url.password.is_some() {
                return Err(SecretSettingError::SmtpPasswordTwice);
            }
            url.password = Some(read_secret("the SMTP password file", path, allowed)?);
        }
        Ok(())
    }

    pub fn pool_settings(&self) -> PoolSettings {
        PoolSettings {
            max_connections: self.database_max_connections,
            connect_timeout: self.database_connect_timeout,
            statement_timeout: self.database_statement_timeout,
        }
    }

    pub fn throttle_policy(&self) -> ThrottlePolicy {
        ThrottlePolicy {
            login_failures_per_account_address: self.throttle_login_account_ip.0,
            login_failures_per_account: self.throttle_login_account.0,
            login_failures_per_ip: self.throttle_login_ip.0,
            otp_failures_per_account: self.throttle_mfa_account.0,
            registrations_per_ip: self.throttle_register_ip.0,
            invalid_refresh_tokens_per_ip: self.throttle_refresh_ip.0,
            known_address_lifetime: i64::try_from(self.throttle_known_address_lifetime.as_secs())
                .unwrap_or(i64::MAX / 2),
            prefixes: AddressPrefixes {
                v4: self.throttle_ipv4_prefix,
                v6: self.throttle_ipv6_prefix,
            },
        }
    }

    /// The SQLite database file, when the database is one.
    pub fn sqlite_path(&self) -> Option<PathBuf> {
        crate::store::sqlite::path_of(&self.database_url)
            .ok()
            .map(PathBuf::from)
    }

    /// `--public-url`, or `http://<--bind>`; without a trailing slash.
    pub fn public_url(&self) -> String {
        self.public_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", self.bind))
    }

    pub fn hash_concurrency(&self) -> usize {
        self.hash_concurrency
            .or_else(|| std::thread::available_parallelism().ok())
            .map_or(1, NonZeroUsize::get)
    }
}

/// Argon2id's memory and passes (one lane).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Argon2Cost {
    pub memory_kib: u32,
    pub passes: u32,
}

impl Argon2Cost {
    /// OWASP's: 19 MiB, two passes.
    pub const OWASP: Argon2Cost = Argon2Cost {
        memory_kib: 19 * 1024,
        passes: 2,
    };
}

/// `--metrics-bind`: where `/metrics` is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricsBind {
    /// A listener of its own, serving nothing else.
    Address(SocketAddr),
    /// The public listener (`--bind`), beside the API.
    Public,
    /// Nowhere.
    Off,
}

impl FromStr for MetricsBind {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value.trim().to_ascii_lowercase().as_str() {
            "public" => Ok(MetricsBind::Public),
            "off" => Ok(MetricsBind::Off),
            address => address.parse().map(MetricsBind::Address).map_err(|_| {
                format!("{value:?} is not an address like 127.0.0.1:9464, nor `public` or `off`")
            }),
        }
    }
}

fn parse_on_off(value: &str) -> Result<bool, String> {
    match value.trim().to_ascii_lowercase().as_str() {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err(format!("{value:?} is neither `on` nor `off`")),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines (`pretty`, its former name, is accepted too).
    #[value(alias = "pretty")]
    Text,
    /// One JSON object per line.
    Json,
}

/// The signing key; its `Debug` never shows the value, so it cannot leak through a log line.
#[derive(Clone)]
pub struct SecretKey(String);

impl SecretKey {
    pub const MIN_LEN: usize = 32;

    pub fn expose(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl FromStr for SecretKey {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        if value.len() < Self::MIN_LEN {
            return Err(format!(
                "the secret key must be at least {} bytes long",
                Self::MIN_LEN
            ));
        }
        Ok(SecretKey(value.to_owned()))
    }
}

impl SecretKey {
    /// A key read from `path`; the error names the file, never the key.
    fn from_file(key: &str, path: &std::path::Path) -> Result<SecretKey, SecretSettingError> {
        key.parse().map_err(|_| SecretSettingError::ShortKey {
            path: path.to_owned(),
        })
    }
}

/// A secret setting given as a file that cannot be used.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SecretSettingError {
    #[error(transparent)]
    File(#[from] SecretFileError),
    #[error(
        "a secret key in {path} is shorter than {min} bytes",
        path = path.display(),
        min = SecretKey::MIN_LEN
    )]
    ShortKey { path: PathBuf },
    #[error(
        "--smtp-url holds a password and --smtp-password-file (RESTFUL_AUTH_SMTP_PASSWORD_FILE) \
         names another: give only one"
    )]
    SmtpPasswordTwice,
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(<redacted>)")
    }
}

/// An `http(s)://` URL, kept without its trailing slash.
fn parse_public_url(value: &str) -> Result<String, String> {
    match http_url(value) {
        Some((url, host)) if !host.contains(['?', '#']) => Ok(url.to_owned()),
        _ => Err(format!(
            "{value:?} is not a URL like https://auth.example.org"
        )),
    }
}

/// `scheme://host[:port]`, as browsers send in `Origin`: no path, no trailing slash.
fn parse_origin(value: &str) -> Result<HeaderValue, String> {
    match http_url(value) {
        Some((origin, host)) if !host.contains('/') => {
            HeaderValue::from_str(origin).map_err(|error| error.to_string())
        }
        _ => Err(format!(
            "{value:?} is not an origin like https://app.example.org"
        )),
    }
}

/// `value` trimmed of white space and trailing slashes, and what follows its `http(s)://`,
/// when that is not empty and has no space.
fn http_url(value: &str) -> Option<(&str, &str)> {
    let url = value.trim().trim_end_matches('/');
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))?;
    (!rest.is_empty() && !rest.contains(' ')).then_some((url, rest))
}

/// A throttle limit, or `None` when switched off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit(pub Option<RateLimit>);

fn parse_rate_limit(value: &str) -> Result<Limit, String> {
    if value.trim().eq_ignore_ascii_case("off") {
        Ok(Limit(None))
    } else {
        value.parse().map(|limit| Limit(Some(limit)))
    }
}

fn parse_grace(value: &str) -> Result<Duration, String> {
    let grace = Setting::RefreshRetryGrace.parse(value)?;
    Ok(Duration::from_secs(grace.parse().unwrap_or(0)))
}

pub fn parse_lifetime(value: &str) -> Result<Duration, String> {
    let lifetime = humantime::parse_duration(value).map_err(|error| error.to_string())?;
    if lifetime < Duration::from_secs(1) {
        return Err("a lifetime must be at least one second".into());
    }
    Ok(lifetime)
}
