//! Outgoing mail, over SMTP with `lettre`, always off the request path: a request hands its
//! mail's work to the outbox and answers at once, so a slow or unreachable SMTP server never
//! slows an answer, and how long an answer takes never tells whether a mail was sent (that is,
//! whether an account exists). The outbox is bounded; a mail is tried again after a failure,
//! and one that never went is counted and logged, without the SMTP password.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use tokio::sync::{Notify, Semaphore};

use crate::config::{Config, MailRetry, SmtpTls, SmtpUrl};

/// Connections to the SMTP server open at once; further mails wait in the outbox.
const CONCURRENT_DELIVERIES: usize = 4;

/// How long one SMTP command may take before the attempt counts as failed.
const SMTP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// A mail to send: plain text with an HTML alternative.
#[derive(Clone)]
pub struct Mail {
    pub to: String,
    pub subject: String,
    pub text: String,
    pub html: String,
}

impl std::fmt::Debug for Mail {
    // The body holds a one-time link: no log line may show it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Mail({:?}, <body redacted>)", self.subject)
    }
}

/// Why mail cannot be configured.
#[derive(Debug, thiserror::Error)]
pub enum MailSetupError {
    #[error("the SMTP server {server} cannot be used: {reason}")]
    Transport { server: String, reason: String },
}

/// The outbox: cheap to clone, shared by the requests that fill it.
#[derive(Clone)]
pub struct Mailer(Arc<Outbox>);

struct Outbox {
    /// `None`: no SMTP server is configured, and nothing is sent.
    smtp: Option<Smtp>,
    /// Mails (with the work that prepares them) accepted and not yet finished.
    pending: AtomicUsize,
    limit: usize,
    /// Woken whenever `pending` drops to zero.
    idle: Notify,
    warned_unconfigured: AtomicBool,
}

struct Smtp {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    retry: MailRetry,
    /// For log lines: no user, no password.
    server: String,
    /// Scrubbed from any error text before it is logged.
    password: Option<String>,
    deliveries: Semaphore,
}

impl Mailer {
    /// The outbox of `config`: sending through `--smtp-url` (whose password
    /// `--smtp-password-file` may have given: see `Config::read_secret_files`), or sending
    /// nothing.
    pub fn from_config(config: &Config) -> Result<Mailer, MailSetupError> {
        let smtp = match &config.smtp_url {
            Some(url) => Some(Smtp::new(url, config)?),
            None => None,
        };
        Ok(Mailer(Arc::new(Outbox {
            smtp,
            pending: AtomicUsize::new(0),
            limit: config.mail_queue_limit.max(1),
            idle: Notify::new(),
            warned_unconfigured: AtomicBool::new(false),
        })))
    }

    /// Whether an SMTP server is configured.
    pub fn sends(&self) -> bool {
        self.0.smtp.is_some()
    }

    /// Without an SMTP server, says once per process that links are not mailed.
    pub fn warn_unconfigured(&self) {
        if !self.0.warned_unconfigured.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "no --smtp-url (RESTFUL_AUTH_SMTP_URL): password-reset and verification links \
                 are not mailed; `restful-auth user reset-link EMAIL` prints a reset link"
            );
        }
    }

    /// Runs `work` (which prepares a mail and sends it with [`send`](Self::send)) in the
    /// background, unless the outbox is full: then it is dropped, counted and logged. The
    /// caller never waits for it.
    pub fn submit(&self, work: impl Future<Output = ()> + Send + 'static) {
        let outbox = &self.0;
        let accepted = outbox
            .pending
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |pending| {
                (pending < outbox.limit).then_some(pending + 1)
            })
            .is_ok();
        if !accepted {
            metrics::counter!("mail_dropped_total").increment(1);
            tracing::warn!(
                limit = outbox.limit,
                "the mail outbox is full (--mail-queue-limit): a mail was dropped"
            );
            return;
        }
        metrics::gauge!("mail_queue_depth").increment(1.0);
        let outbox = self.0.clone();
        tokio::spawn(async move {
            // Counted out however the work ends, a panic included.
            let _finished = scopeguard::guard((), |()| {
                metrics::gauge!("mail_queue_depth").decrement(1.0);
                if outbox.pending.fetch_sub(1, Ordering::SeqCst) == 1 {
                    outbox.idle.notify_waiters();
                }
            });
            work.await;
        });
    }

    /// Sends `mail`, trying again after a failure as `--smtp-url`'s retry rule says; whether it
    /// went. Never fails the caller: a mail that never went is counted and logged.
    pub async fn send(&self, mail: Mail) -> bool {
        let Some(smtp) = &self.0.smtp else {
            return false;
        };
        let message = match smtp.message(&mail) {
            Ok(message) => message,
            Err(reason) => {
                metrics::counter!("mail_failures_total").increment(1);
                tracing::warn!(%reason, "a mail could not be written; not sent");
                return false;
            }
        };
        let _connection = smtp.deliveries.acquire().await;
        let mut delay = smtp.retry.first_delay;
        for attempt in 1..=smtp.retry.attempts.max(1) {
            match smtp.transport.send(message.clone()).await {
                Ok(_) => {
                    metrics::counter!("mail_sent_total").increment(1);
                    tracing::info!(server = %smtp.server, attempt, "mail sent");
                    return true;
                }
                Err(error) => {
                    let error = smtp.scrub(&error.to_string());
                    if attempt < smtp.retry.attempts {
                        metrics::counter!("mail_retries_total").increment(1);
                        tracing::warn!(
                            server = %smtp.server, attempt, %error,
                            retry_in_seconds = delay.as_secs_f64(),
                            "sending a mail failed; trying again"
                        );
                        tokio::time::sleep(delay).await;
                        delay *= 2;
                    } else {
                        metrics::counter!("mail_failures_total").increment(1);
                        tracing::error!(
                            server = %smtp.server, attempt, %error,
                            "sending a mail failed; giving it up"
                        );
                    }
                }
            }
        }
        false
    }

    /// Resolves once every mail submitted so far is sent or given up (for tests, and for a
    /// command that exits once its mail is out).
    pub async fn settled(&self) {
        loop {
            let idle = self.0.idle.notified();
            if self.0.pending.load(Ordering::SeqCst) == 0 {
                return;
            }
            idle.await;
        }
    }
}

impl Smtp {
    fn new(url: &SmtpUrl, config: &Config) -> Result<Smtp, MailSetupError> {
        let server = url.redacted();
        // From the URL, or from --smtp-password-file (read into it with the configuration).
        let password = url.password.clone();
        let refused = |reason: String| MailSetupError::Transport {
            server: server.clone(),
            reason,
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&url.host)
            .port(url.port)
            .timeout(Some(SMTP_TIMEOUT));
        let parameters =
            || TlsParameters::new(url.host.clone()).map_err(|error| refused(error.to_string()));
        builder = match url.tls {
            SmtpTls::None => builder.tls(Tls::None),
            SmtpTls::StartTls => builder.tls(Tls::Required(parameters()?)),
            SmtpTls::Opportunistic => builder.tls(Tls::Opportunistic(parameters()?)),
            SmtpTls::Wrapper => builder.tls(Tls::Wrapper(parameters()?)),
        };
        if let Some(user) = &url.user {
            let credentials = Credentials::new(user.clone(), password.clone().unwrap_or_default());
            builder = builder.credentials(credentials);
        }
        Ok(Smtp {
            transport: builder.build(),
            from: config.mail_from.clone(),
            retry: config.mail_retry,
            server,
            password: password.filter(|password| !password.is_empty()),
            deliveries: Semaphore::new(CONCURRENT_DELIVERIES),
        })
    }

    fn message(&self, mail: &Mail) -> Result<Message, String> {
        let to: Mailbox = mail
            .to
            .parse()
            .map_err(|error| format!("the recipient's address: {error}"))?;
        Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(mail.subject.clone())
            .multipart(MultiPart::alternative_plain_html(
                mail.text.clone(),
                mail.html.clone(),
            ))
            .map_err(|error| error.to_string())
    }

    /// `text` without the SMTP password, should a server or a library ever echo it.
    fn scrub(&self, text: &str) -> String {
        match &self.password {
            Some(password) => text.replace(password.as_str(), "***"),
            None => text.to_owned(),
        }
    }
}
