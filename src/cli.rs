//! The command line: `serve` (the default), schema migration, account administration, and the
//! import of users from the Django original.

use clap::Subcommand;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use crate::auth::admin::{MAX_PAGE, Page};
use crate::auth::email::Email;
use crate::auth::password::{self, NewPassword, Password};
use crate::auth::username::Username;
use crate::auth::vault::MasterKey;
use crate::auth::{Auth, AuthError};
use crate::config::Config;
use crate::domain::audit::{Actor, AuditQuery, EventName, Origin, Recorded};
use crate::domain::clock::rfc3339;
use crate::domain::settings::Setting;
use crate::store::django::{self, DjangoUser};
use crate::store::{Account, PostgresStore, SessionInfo, SqliteStore, Store, StoreError};
use crate::{StartupError, serve};
use serde_json::json;

/// A user-authentication REST service: register, login, rotating refresh tokens, profile.
#[derive(Debug, clap::Parser)]
#[command(name = "restful-auth", version = VERSION, about)]
pub struct Cli {
    #[command(flatten)]
    pub config: Config,

    /// What to do; `serve` when omitted.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// `--version`: the release and the commit it was built from (`build.rs`), so a binary in the
/// field names its exact source.
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("RESTFUL_AUTH_COMMIT"),
    ")"
);

#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Serve the API (the default).
    Serve,
    /// Create or update the database schema, then exit.
    Migrate,
    /// Administer accounts.
    #[command(subcommand)]
    User(UserCommand),
    /// Show or change the settings that apply while the service runs (every instance picks a
    /// change up within `--reload-interval`).
    #[command(subcommand)]
    Settings(SettingsCommand),
    /// Access-token signing keys kept in the database (when no `--secret-key` is configured):
    /// every instance picks a change up within `--reload-interval`.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Delete the sessions that are over, with their tokens, and other expired data now (the
    /// service also does it every `--purge-interval`).
    Purge,
    /// The audit log, newest first: who did what to which account, from where.
    Audit {
        /// Only the events of this account (its email, or its id: an erased account's events
        /// keep its id).
        #[arg(long)]
        user: Option<String>,
        /// Only events of this name (`login.failed`, `session.ended`, …).
        #[arg(long)]
        event: Option<EventName>,
        /// Only events of the last such time (`1h`, `7days`).
        #[arg(long, value_parser = crate::config::parse_lifetime)]
        since: Option<std::time::Duration>,
        /// At most this many events.
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=100_000))]
        limit: u32,
        /// A table, or one JSON object per line.
        #[arg(long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Exit 0 when the service answers `GET /readyz` with 200 within 2 seconds, 1 otherwise
    /// (for a container `HEALTHCHECK` or a systemd watchdog without curl). Opens no database.
    Healthcheck {
        /// The URL to ask (`http://HOST[:PORT][/PATH]`; `/readyz` when no path). Default:
        /// `http://<--bind>/readyz`, with an unspecified address (`0.0.0.0`, `::`) on loopback.
        #[arg(long)]
        url: Option<String>,
    },
    /// Import the users of a Django database (its `auth_user` table, or `--table`). Their
    /// Django password hashes keep working and are replaced by Argon2id at their next login.
    ImportDjango {
        /// The Django database: a SQLite file path or a `postgres://` URL.
        #[arg(long)]
        from: String,
        /// The user table, for projects with a custom user model (e.g. `users_user`).
        #[arg(long, default_value = "auth_user")]
        table: String,
    },
}

/// How a command prints what it lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// Columns separated by tabs, for people.
    Table,
    /// One JSON object per line, for programs.
    Json,
}

#[derive(Debug, Clone, Subcommand)]
pub enum SettingsCommand {
    /// The values in force: stored ones, else the flags'.
    Show {
        #[arg(long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Store a value, e.g. `settings set access-token-lifetime 60s`.
    Set { name: Setting, value: String },
    /// Remove a stored value: the flag's applies again.
    Unset { name: Setting },
}

#[derive(Debug, Clone, Subcommand)]
pub enum KeysCommand {
    /// Add a key of `--jwt-algorithm` (else of the key in force): published at once, it signs
    /// after `--key-activation-delay`, so that services caching the key set have it before
    /// its first token. Tokens of the previous keys verify until they expire.
    Rotate {
        /// Sign with the new key at once (within the reload interval).
        #[arg(long)]
        now: bool,
    },
    /// Every key: id, algorithm, created, signs from, state (next, current, retiring, retired).
    List {
        #[arg(long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Retire a key at once (it leaked): its tokens are refused, it is no longer published,
    /// and if it was signing, a new key signs instead.
    Retire { kid: String },
    /// Seal every secret stored in the database under a new master key (in one transaction);
    /// start the service with that key from then on.
    Rewrap {
        /// The new master key: a file holding 32 random bytes in base64 or hex.
        #[arg(long)]
        new_master_key_file: PathBuf,
    },
}

#[derive(Debug, Clone, Subcommand)]
pub enum UserCommand {
    /// Create an account; the password is read from standard input.
    Create { email: String },
    /// List every account.
    List {
        #[arg(long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Show one account.
    Show {
        email: String,
        #[arg(long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Deactivate an account: its sessions end and it can no longer log in.
    Deactivate { email: String },
    /// Activate an account again.
    Activate { email: String },
    /// Set a new password, read from standard input.
    SetPassword { email: String },
    /// Print a one-time password-reset link for the account, to hand to its owner (when no
    /// SMTP server mails them): it replaces the account's earlier link, and works once,
    /// for --reset-token-lifetime.
    ResetLink { email: String },
    /// Delete an account: it is erased with its sessions (their tokens stop working at once);
    /// its audit events stay, marked erased.
    Delete {
        email: String,
        #[arg(long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// List an account's live sessions, newest first.
    Sessions {
        email: String,
        #[arg(long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// End every session of an account (it can still log in).
    EndSessions {
        email: String,
        #[arg(long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Clear an account's throttle counters: an owner locked out by failed logins logs in at
    /// once.
    Unlock {
        email: String,
        #[arg(long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
}

/// What an administration command does is recorded as the command line's.
const OPERATOR: Origin = Origin::of(Actor::Cli);

/// Runs the command line on the database that `DATABASE_URL` names.
pub async fn run(mut cli: Cli) -> Result<(), StartupError> {
    if let Some(Command::Healthcheck { url }) = &cli.command {
        let url = url
            .clone()
            .unwrap_or_else(|| crate::healthcheck::default_url(cli.config.bind));
        return crate::healthcheck::check(&url, crate::healthcheck::TIMEOUT)
            .map_err(|reason| failure(format!("not ready: {reason}")));
    }
    cli.config.read_secret_files()?;
    let url = cli.config.database_url.clone();
    if url.starts_with("sqlite:") {
        if let Some(path) = cli.config.sqlite_path() {
            crate::private_files::refuse_exposed(&path, cli.config.allow_insecure_permissions)?;
        }
        execute(
            SqliteStore::open(&url, cli.config.sqlite_settings()).await?,
            cli,
        )
        .await
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        execute(
            PostgresStore::open(&url, &cli.config.pool_settings()).await?,
            cli,
        )
        .await
    } else {
        Err(StartupError::UnsupportedDatabase(crate::redact_password(
            &url,
        )))
    }
}

async fn execute<S: Store>(store: S, cli: Cli) -> Result<(), StartupError> {
    let Cli { config, command } = cli;
    match command.unwrap_or(Command::Serve) {
        Command::Serve => serve(store, config).await,
        // Opening the store migrated it.
        Command::Migrate => {
            println!("The database schema is up to date.");
            Ok(())
        }
        Command::User(command) => {
            let auth = Auth::new(store, &config).await?;
            users(&auth, command).await
        }
        Command::Settings(command) => settings(&Auth::new(store, &config).await?, command).await,
        Command::Keys(KeysCommand::Rotate { now }) => {
            let auth = Auth::new(store, &config).await?;
            let rotated = auth
                .rotate_signing_key(now, Origin::of(Actor::Cli))
                .await?
                .ok_or_else(keys_configured)?;
            println!(
                "New {} signing key {}, published now; it signs from {} (instances switch within \
                 their reload interval).",
                rotated.algorithm,
                rotated.kid,
                rfc3339(rotated.activates_at),
            );
            Ok(())
        }
        Command::Keys(KeysCommand::List { output }) => {
            let auth = Auth::new(store, &config).await?;
            for key in auth.signing_key_list().await?.ok_or_else(keys_configured)? {
                let created = rfc3339(key.created_at);
                let signs_from = rfc3339(key.activates_at);
                match output {
                    Output::Table => println!(
                        "{}\t{}\tcreated {created}\tsigns from {signs_from}\t{}",
                        key.kid,
                        key.algorithm,
                        key.state.name(),
                    ),
                    Output::Json => print_row(
                        &json!({"kid": key.kid, "algorithm": key.algorithm, "created": created,
                                "signs_from": signs_from, "state": key.state.name()}),
                        output,
                    ),
                }
            }
            Ok(())
        }
        Command::Keys(KeysCommand::Retire { kid }) => {
            let auth = Auth::new(store, &config).await?;
            match auth
                .retire_signing_key(&kid, Origin::of(Actor::Cli))
                .await?
            {
                Some(true) => {
                    println!(
                        "Retired {kid}: its tokens are refused by every instance within its \
                         reload interval. {} signs now.",
                        auth.signing_algorithm()
                    );
                    Ok(())
                }
                Some(false) => Err(not_found(format!("no signing key {kid} is in use"))),
                None => Err(keys_configured()),
            }
        }
        Command::Keys(KeysCommand::Rewrap {
            new_master_key_file,
        }) => {
            let new_key =
                MasterKey::read_file(&new_master_key_file, config.allow_insecure_permissions)?;
            let auth = Auth::new(store, &config).await?;
            let count = auth.rewrap(&new_key).await?;
            println!(
                "{}",
                rewrapped_message(count, &new_master_key_file, &config)
            );
            Ok(())
        }
        Command::Audit {
            user,
            event,
            since,
            limit,
            output,
        } => {
            let auth = Auth::new(store, &config).await?;
            let user_id = match user {
                Some(user) => Some(match user.parse::<i64>() {
                    Ok(id) => id,
                    Err(_) => find(&auth, &user).await?.id,
                }),
                None => None,
            };
            let since = since.map(|since| auth.now() - i64::try_from(since.as_secs()).unwrap_or(0));
            let events = auth
                .audit(AuditQuery {
                    user_id,
                    event,
                    since,
                    before: None,
                    limit,
                })
                .await?;
            print_events(&events, output);
            Ok(())
        }
        Command::Purge => {
            let purged = Auth::new(store, &config)
                .await?
                .housekeeping(config.retention)
                .await?;
            println!(
                "Deleted {} refresh tokens, {} sessions, {} signing keys, {} throttle windows, \
                 {} known addresses, {} audit events.",
                purged.refresh_tokens,
                purged.sessions,
                purged.signing_keys,
                purged.throttle_buckets,
                purged.known_addresses,
                purged.audit_events
            );
            Ok(())
        }
        Command::Healthcheck { .. } => unreachable!("answered before the database is opened"),
        Command::ImportDjango { from, table } => {
            let users = django::read_users(&from, &table, &config.pool_settings()).await?;
            let auth = Auth::new(store, &config).await?;
            import_django(&auth, users).await
        }
    }
}

async fn settings<S: Store>(auth: &Auth<S>, command: SettingsCommand) -> Result<(), StartupError> {
    match command {
        SettingsCommand::Show { output } => {
            let lifetimes = auth.lifetimes();
            let seconds = |value: i64| format!("{value}s");
            let max = lifetimes.session.max_session_lifetime;
            for (name, value) in [
                (Setting::AccessTokenLifetime, seconds(lifetimes.access)),
                (Setting::RefreshTokenLifetime, seconds(lifetimes.refresh)),
                (
                    Setting::RefreshRetryGrace,
                    seconds(lifetimes.session.retry_grace),
                ),
                (
                    Setting::SessionMaxLifetime,
                    max.map_or("off".into(), seconds),
                ),
            ] {
                print_row(&json!({"name": name.to_string(), "value": value}), output);
            }
        }
        SettingsCommand::Set { name, value } => {
            let stored = auth.set_setting(name, &value).await.map_err(refused)?;
            println!("{name} = {stored}; running instances apply it within their reload interval.");
        }
        SettingsCommand::Unset { name } => {
            auth.unset_setting(name).await?;
            println!("{name} is back to its flag's value.");
        }
    }
    Ok(())
}

async fn users<S: Store>(auth: &Auth<S>, command: UserCommand) -> Result<(), StartupError> {
    match command {
        UserCommand::Create { email } => {
            let email = parse_email(&email)?;
            let password = read_new_password()?;
            let id = auth
                .register(email.clone(), password, Origin::of(Actor::Cli))
                .await
                .map_err(refusal)?;
            println!("Created account {id} for {}.", email.as_str());
        }
        UserCommand::List { output } => {
            let accounts = auth.accounts().await?;
            for account in &accounts {
                print_account(account, output);
            }
            if output == Output::Table {
                println!("{} accounts.", accounts.len());
            }
        }
        UserCommand::Show { email, output } => print_account(&find(auth, &email).await?, output),
        UserCommand::Deactivate { email } => {
            let account = find(auth, &email).await?;
            auth.set_active(account.id, false, Origin::of(Actor::Cli))
                .await?;
            println!(
                "Deactivated {}; its {} sessions ended.",
                account.email, account.active_sessions
            );
        }
        UserCommand::Activate { email } => {
            let account = find(auth, &email).await?;
            auth.set_active(account.id, true, Origin::of(Actor::Cli))
                .await?;
            println!("Activated {}.", account.email);
        }
        UserCommand::SetPassword { email } => {
            let account = find(auth, &email).await?;
            let password = read_new_password()?;
            auth.set_password(&account, password, Origin::of(Actor::Cli))
                .await
                .map_err(refusal)?;
            println!("Password of {} changed.", account.email);
        }
        UserCommand::ResetLink { email } => {
            let link = auth
                .reset_link(&email)
                .await?
                .ok_or_else(|| not_found(format!("no active account has the email {email}")))?;
            // The one place a token is ever printed: on the operator's terminal, on request.
            println!("{link}");
        }
        UserCommand::Delete { email, output } => {
            let account = find(auth, &email).await?;
            if !auth.delete_account(account.id, OPERATOR).await? {
                return Err(not_found(format!("no account has the email {email}")));
            }
            let message = format!(
                "Deleted account {} ({}); its {} sessions ended.",
                account.id, account.email, account.active_sessions
            );
            let row = json!({"id": account.id, "email": account.email, "deleted": true,
                             "sessions_ended": account.active_sessions});
            print_outcome(&message, &row, output);
        }
        UserCommand::Sessions { email, output } => {
            let account = find(auth, &email).await?;
            let mut page = Page::new(Some(MAX_PAGE), None);
            loop {
                let Some(listed) = auth.account_sessions(account.id, page).await? else {
                    break;
                };
                for session in &listed.items {
                    print_row(&session_row(session), output);
                }
                match listed.next {
                    Some(next) => page = Page::new(Some(MAX_PAGE), Some(next)),
                    None => break,
                }
            }
        }
        UserCommand::EndSessions { email, output } => {
            let account = find(auth, &email).await?;
            let ended = auth
                .end_account_sessions(account.id, OPERATOR)
                .await?
                .ok_or_else(|| not_found(format!("no account has the email {email}")))?;
            let message = format!("Ended {ended} sessions of {}.", account.email);
            let row = json!({"id": account.id, "email": account.email, "ended": ended});
            print_outcome(&message, &row, output);
        }
        UserCommand::Unlock { email, output } => {
            let account = find(auth, &email).await?;
            let cleared = auth
                .unlock(account.id, OPERATOR)
                .await?
                .ok_or_else(|| not_found(format!("no account has the email {email}")))?;
            let message = format!(
                "Cleared {cleared} throttle counters of {}: it can log in at once.",
                account.email
            );
            let row = json!({"id": account.id, "email": account.email, "cleared": cleared});
            print_outcome(&message, &row, output);
        }
    }
    Ok(())
}

/// A live session as `user sessions` lists it (the admin API's fields).
fn session_row(session: &SessionInfo) -> serde_json::Value {
    json!({
        "id": session.id.hyphenated().to_string(),
        "created": rfc3339(session.created_at),
        "last_seen": rfc3339(session.last_seen_at),
        "user_agent": session.user_agent,
        "ip": session.client_ip,
    })
}

/// What a command did: a sentence for people, or one JSON object for programs.
fn print_outcome(message: &str, row: &serde_json::Value, output: Output) {
    match output {
        Output::Table => println!("{message}"),
        Output::Json => println!("{row}"),
    }
}

async fn find<S: Store>(auth: &Auth<S>, email: &str) -> Result<Account, StartupError> {
    auth.account(email)
        .await?
        .ok_or_else(|| not_found(format!("no account has the email {email}")))
}

/// An account: a line of the table, or a JSON object.
fn print_account(account: &Account, output: Output) {
    if output == Output::Json {
        let row = json!({
            "id": account.id,
            "email": account.email,
            "username": account.username,
            "active": account.is_active,
            "created": rfc3339(account.created_at),
            "active_sessions": account.active_sessions,
        });
        return print_row(&row, output);
    }
    println!(
        "{id}\t{email}\t{username:?}\t{state}\t{sessions} active sessions",
        id = account.id,
        email = account.email,
        username = account.username,
        state = if account.is_active {
            "active"
        } else {
            "inactive"
        },
        sessions = account.active_sessions,
    );
}

/// The events, as a table or as JSON lines; a table's detail is compact JSON.
fn print_events(events: &[Recorded], output: Output) {
    for event in events {
        let row = serde_json::to_value(event).expect("an event serializes");
        print_row(&row, output);
    }
}

/// One row: its values separated by tabs (compact JSON for what is not text), or the object
/// as one line of JSON. Text is escaped as `user list` escapes usernames: a user agent is the
/// client's to write, and a tab in it would forge a column, a control character (an 8-bit
/// CSI, which a header may hold as UTF-8) would reach the operator's terminal.
fn print_row(row: &serde_json::Value, output: Output) {
    match output {
        Output::Json => println!("{row}"),
        Output::Table => {
            let cells: Vec<String> = row
                .as_object()
                .into_iter()
                .flatten()
                .map(|(_, cell)| match cell {
                    serde_json::Value::Null => "-".to_owned(),
                    serde_json::Value::String(text) => text.escape_debug().to_string(),
                    other => other.to_string(),
                })
                .collect();
            println!("{}", cells.join("\t"));
        }
    }
}

fn parse_email(raw: &str) -> Result<Email, StartupError> {
    Email::parse(raw.trim()).map_err(|message| refused(format!("{raw}: {message}")))
}

/// Reads a password from the terminal without echo, or the first line of piped input; never
/// from the command line, where it would stay in the shell history and the process list.
fn read_new_password() -> Result<NewPassword, StartupError> {
    let password = if std::io::stdin().is_terminal() {
        rpassword::prompt_password("New password: ")
    } else {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .map(|_| line.trim_end_matches(['\r', '\n']).to_owned())
    }
    .map_err(|error| failure(format!("cannot read the password: {error}")))?;
    NewPassword::new(Password::new(password)).map_err(refused)
}

async fn import_django<S: Store>(
    auth: &Auth<S>,
    users: Vec<DjangoUser>,
) -> Result<(), StartupError> {
    let (mut imported, mut skipped, mut refused) = (0, 0, 0);
    for user in users {
        match import_one(auth, &user).await {
            Ok(()) => imported += 1,
            Err(ImportOutcome::Present) => {
                skipped += 1;
                println!(
                    "skipped {:?}: an account with this email already exists",
                    user.email
                );
            }
            Err(ImportOutcome::Refused(reason)) => {
                refused += 1;
                println!("refused {:?}: {reason}", user.email);
            }
        }
    }
    let summary = format!("Imported {imported} users; skipped {skipped}; refused {refused}.");
    println!("{summary}");
    if refused > 0 {
        return Err(StartupError::Refused(format!(
            "{summary} Refused rows are listed above; fix or remove them and run the import again."
        )));
    }
    Ok(())
}

/// Why a row was not imported.
enum ImportOutcome {
    /// Its email already has an account (a second run of the same import).
    Present,
    /// The row cannot become an account: an invalid email, or a password hash that is of an
    /// unknown algorithm or costs more than logins may spend.
    Refused(String),
}

/// One Django user; its username is kept when it is a valid one, else the email stands in.
async fn import_one<S: Store>(auth: &Auth<S>, user: &DjangoUser) -> Result<(), ImportOutcome> {
    let email = Email::parse(user.email.trim()).map_err(ImportOutcome::Refused)?;
    password::check_stored_hash(&user.password)
        .map_err(|reason| ImportOutcome::Refused(format!("password hash refused: {reason}")))?;
    let username = Some(user.username.trim())
        .filter(|name| !name.is_empty())
        .and_then(|name| Username::parse(name).ok())
        .unwrap_or_else(|| Username::parse(email.as_str()).expect("an email is a valid username"));
    match auth
        .import_account(email, username, user.password.clone(), user.is_active)
        .await
    {
        Ok(_) => Ok(()),
        Err(StoreError::EmailTaken) => Err(ImportOutcome::Present),
        Err(error) => Err(ImportOutcome::Refused(error.to_string())),
    }
}

/// What the operator must do after a rewrap: the old key opens nothing any more.
fn rewrapped_message(count: usize, new_key_file: &Path, config: &crate::config::Config) -> String {
    let new_key_file = new_key_file.display();
    let switch = match crate::auth::default_master_key_file(config) {
        Some(default) if config.master_key_file.is_none() && config.master_key.is_none() => {
            format!(
                "replace {} with it, or point --master-key-file at it",
                default.display()
            )
        }
        _ => "point --master-key-file (RESTFUL_AUTH_MASTER_KEY_FILE) at it, or set \
              RESTFUL_AUTH_MASTER_KEY to its content"
            .to_owned(),
    };
    format!(
        "Sealed {count} secrets under the master key in {new_key_file}. The old key no longer \
         opens them: stop every instance, {switch}, then start them again."
    )
}

fn keys_configured() -> StartupError {
    refused(
        "the signing key comes from --secret-key: rotate it there (the old one goes to \
         --previous-secret-keys)"
            .into(),
    )
}

fn failure(message: String) -> StartupError {
    StartupError::Command(message)
}

/// Exit status 2: what the command names does not exist.
fn not_found(message: String) -> StartupError {
    StartupError::NotFound(message)
}

/// Exit status 3: the input breaks a rule of the service.
fn refused(message: String) -> StartupError {
    StartupError::Refused(message)
}

/// An account change the service refused (exit status 3), or could not make (1).
fn refusal(error: AuthError) -> StartupError {
    match error {
        AuthError::Store(error) => error.into(),
        AuthError::Overloaded(error) => failure(error.to_string()),
        other => refused(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::{Cli, Command, UserCommand};

    #[test]
    fn the_command_line_passes_clap_s_own_checks() {
        Cli::command().debug_assert();
    }

    #[test]
    fn service_flags_are_read_before_or_after_the_subcommand() {
        let after = Cli::try_parse_from([
            "restful-auth",
            "user",
            "list",
            "--database-url",
            "sqlite://after.sqlite3",
            "--bind",
            "127.0.0.1:9000",
        ])
        .unwrap();
        assert_eq!(after.config.database_url, "sqlite://after.sqlite3");
        assert_eq!(after.config.bind.to_string(), "127.0.0.1:9000");
        assert!(matches!(
            after.command,
            Some(Command::User(UserCommand::List { .. }))
        ));

        let before =
            Cli::try_parse_from(["restful-auth", "--bind", "127.0.0.1:9001", "serve"]).unwrap();
        assert_eq!(before.config.bind.to_string(), "127.0.0.1:9001");
    }
}
