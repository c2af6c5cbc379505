//! Links mailed to an account's address: resetting a forgotten password, and proving that the
//! address is the owner's. A link is `<public-url>/reset/#token=…` (or `/verify/`): the token
//! rides in the fragment, which browsers never send to a server, so it reaches no proxy's or
//! server's log. It is 32 random bytes, stored only as their SHA-256, used once, and replaced
//! by the account's next link of the same purpose.
//!
//! Asking for a reset answers alike whether the address has an account: the lookup, the link
//! and the mail happen after the answer, in the outbox ([`super::mail`]).

use std::fmt;
use std::time::Duration;

use askama::Template;
use base64::Engine as _;
use sha2::{Digest, Sha256};

use super::email::Email;
use super::mail::{Mail, Mailer};
use super::password::NewPassword;
use super::{Auth, AuthError, seconds};
use crate::config::Config;
use crate::domain::UserId;
use crate::domain::audit::{Actor, Origin};
use crate::domain::links::{LinkDigest, Purpose, Recipient};
use crate::domain::throttle::{Bucket, RateLimit};
use crate::store::{LinkOwner, NewLink, Store, StoreError};

/// What a link's field error says, whatever is wrong with it: unknown, used, expired,
/// replaced by a newer one, or not a token at all.
pub const INVALID_LINK: &str = "Invalid or expired link.";

/// The token of a mailed link. Its `Debug` never shows it.
pub struct LinkToken([u8; 32]);

impl LinkToken {
    pub fn generate() -> LinkToken {
        LinkToken(crate::domain::random_bytes())
    }

    /// The token as a link carries it (base64url, no padding), surrounding white space
    /// allowed; `None` for anything else.
    pub fn parse(raw: &str) -> Option<LinkToken> {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(raw.trim())
            .ok()?;
        bytes.try_into().ok().map(LinkToken)
    }

    /// The only form in which a token is stored.
    pub fn digest(&self) -> LinkDigest {
        Sha256::digest(self.0).into()
    }

    /// The token as the link carries it; only a mail and `user reset-link` show it.
    fn reveal(&self) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(self.0)
    }
}

impl fmt::Debug for LinkToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LinkToken(<redacted>)")
    }
}

/// The rules of mailed links, from the flags.
#[derive(Debug, Clone)]
pub struct LinkPolicy {
    /// Where clients reach the service: links start with it.
    public_url: String,
    /// The sender's name, for the mails' text.
    service: String,
    reset_lifetime: Duration,
    verification_lifetime: Duration,
    /// Logins of accounts with an unverified address are refused.
    pub require_verified_email: bool,
    /// Links mailed to one address (or asked for one without an account).
    per_email: Option<RateLimit>,
    /// Password-reset requests from one client address.
    resets_per_ip: Option<RateLimit>,
}

impl LinkPolicy {
    pub fn from_config(config: &Config) -> LinkPolicy {
        LinkPolicy {
            public_url: config.public_url(),
            service: config
                .mail_from
                .name
                .clone()
                .filter(|name| !name.trim().is_empty())
                .unwrap_or_else(|| "restful-auth".to_owned()),
            reset_lifetime: config.reset_token_lifetime,
            verification_lifetime: config.verification_token_lifetime,
            require_verified_email: config.require_verified_email,
            per_email: config.throttle_mail_email.0,
            resets_per_ip: config.throttle_reset_ip.0,
        }
    }

    fn lifetime(&self, purpose: Purpose) -> Duration {
        match purpose {
            Purpose::PasswordReset => self.reset_lifetime,
            Purpose::EmailVerification => self.verification_lifetime,
        }
    }

    fn link(&self, purpose: Purpose, token: &LinkToken) -> String {
        format!(
            "{}{}#token={}",
            self.public_url,
            purpose.page(),
            token.reveal()
        )
    }

    /// The mail that carries `link` to `recipient`.
    fn mail(&self, purpose: Purpose, recipient: &Recipient, link: String) -> Result<Mail, String> {
        let words = MailWords {
            service: &self.service,
            email: &recipient.email,
            link: &link,
            lifetime: in_words(self.lifetime(purpose)),
        };
        let render = |result: askama::Result<String>| result.map_err(|error| error.to_string());
        let (subject, text, html) = match purpose {
            Purpose::PasswordReset => (
                format!("Reset your {} password", self.service),
                render(ResetText { w: &words }.render())?,
                render(ResetHtml { w: &words }.render())?,
            ),
            Purpose::EmailVerification => (
                format!("Confirm your address for {}", self.service),
                render(VerifyText { w: &words }.render())?,
                render(VerifyHtml { w: &words }.render())?,
            ),
        };
        Ok(Mail {
            to: recipient.email.clone(),
            subject,
            text,
            html,
        })
    }
}

/// What the mails say besides their fixed text.
struct MailWords<'a> {
    service: &'a str,
    email: &'a str,
    link: &'a str,
    lifetime: String,
}

#[derive(Template)]
#[template(path = "mail/reset.txt")]
struct ResetText<'a> {
    w: &'a MailWords<'a>,
}

#[derive(Template)]
#[template(path = "mail/reset.html")]
struct ResetHtml<'a> {
    w: &'a MailWords<'a>,
}

#[derive(Template)]
#[template(path = "mail/verify.txt")]
struct VerifyText<'a> {
    w: &'a MailWords<'a>,
}

#[derive(Template)]
#[template(path = "mail/verify.html")]
struct VerifyHtml<'a> {
    w: &'a MailWords<'a>,
}

/// `30 minutes`, `1 hour`, `2 days`: how long a link works, for a person.
fn in_words(duration: Duration) -> String {
    let seconds = duration.as_secs();
    let (count, unit) = match seconds {
        s if s >= 86_400 && s % 86_400 == 0 => (s / 86_400, "day"),
        s if s >= 3_600 && s % 3_600 == 0 => (s / 3_600, "hour"),
        s if s >= 60 && s % 60 == 0 => (s / 60, "minute"),
        s => (s, "second"),
    };
    let plural = if count == 1 { "" } else { "s" };
    format!("{count} {unit}{plural}")
}

/// A link's request, carried out after the answer: the account looked up, its link stored
/// (replacing the one before), the mail sent.
struct LinkJob<S> {
    store: S,
    mailer: Mailer,
    policy: LinkPolicy,
    owner: LinkOwner,
    purpose: Purpose,
    origin: Origin,
    now: i64,
}

impl<S: Store> LinkJob<S> {
    async fn run(self) {
        let token = LinkToken::generate();
        let issued = self
            .store
            .issue_link(NewLink {
                owner: self.owner,
                purpose: self.purpose,
                digest: token.digest(),
                expires_at: self.now + seconds(self.policy.lifetime(self.purpose)),
                origin: self.origin,
                now: self.now,
            })
            .await;
        let recipient = match issued {
            Ok(Some(recipient)) => recipient,
            // No such account (or nothing to verify): nothing is sent, and nobody is told.
            Ok(None) => return,
            Err(error) => {
                tracing::warn!(%error, purpose = self.purpose.as_str(), "no link was stored");
                return;
            }
        };
        let link = self.policy.link(self.purpose, &token);
        match self.policy.mail(self.purpose, &recipient, link) {
            Ok(mail) => {
                self.mailer.send(mail).await;
            }
            Err(error) => tracing::error!(%error, "a mail could not be rendered"),
        }
    }
}

impl<S: Store> Auth<S> {
    /// Counts a request for a link to `email` from `origin` in the buckets of its address and
    /// of the email (whether or not it has an account, so a refusal tells nothing).
    async fn throttle_link_request(
        &self,
        email_key: &str,
        origin: &Origin,
        with_address: bool,
    ) -> Result<(), AuthError> {
        let policy = &self.links;
        let mut take: Vec<Bucket> = Bucket::new("mail-email", email_key, policy.per_email)
            .into_iter()
            .collect();
        if with_address && let Some(address) = self.address_of(origin) {
            take.extend(Bucket::new("reset-ip", &address, policy.resets_per_ip));
        }
        self.take_throttle(take, Vec::new(), "password-reset").await
    }

    /// Hands the link's work to the outbox; without an SMTP server, nothing is done.
    fn mail_link(&self, owner: LinkOwner, purpose: Purpose, origin: Origin) {
        if !self.mailer.sends() {
            self.mailer.warn_unconfigured();
            return;
        }
        let job = LinkJob {
            store: self.store.clone(),
            mailer: self.mailer.clone(),
            policy: self.links.clone(),
            owner,
            purpose,
            origin,
            now: self.clock.now(),
        };
        self.mailer.submit(job.run());
    }

    /// Mails a password-reset link to `email` if it is an active account's. Answers the same,
    /// and as fast, whether it is or not: the account is looked up after the answer.
    pub async fn request_password_reset(
        &self,
        email: &Email,
        origin: Origin,
    ) -> Result<(), AuthError> {
        self.throttle_link_request(email.key(), &origin, true)
            .await?;
        let owner = LinkOwner::Email(email.key().to_owned());
        self.mail_link(owner, Purpose::PasswordReset, origin);
        Ok(())
    }

    /// A reset link for an operator to hand over (`restful-auth user reset-link`): the one
    /// place a token is printed. Replaces the account's earlier link; `None` for no active
    /// account.
    pub async fn reset_link(&self, email: &str) -> Result<Option<String>, StoreError> {
        let token = LinkToken::generate();
        let now = self.clock.now();
        let issued = self
            .store
            .issue_link(NewLink {
                owner: LinkOwner::Email(Email::lookup_key(email)),
                purpose: Purpose::PasswordReset,
                digest: token.digest(),
                expires_at: now + seconds(self.links.reset_lifetime),
                origin: Origin::of(Actor::Cli),
                now,
            })
            .await?;
        Ok(issued.map(|_| self.links.link(Purpose::PasswordReset, &token)))
    }

    /// Sets the password of the account `token` opens, if it follows the policy, and ends
    /// every session of the account; the token is used up.
    pub async fn confirm_password_reset(
        &self,
        token: LinkToken,
        password: NewPassword,
        origin: Origin,
    ) -> Result<(), AuthError> {
        let digest = token.digest();
        let owner = self
            .store
            .link_owner(digest, Purpose::PasswordReset, self.clock.now())
            .await?
            .ok_or(AuthError::InvalidLink)?;
        self.password_refusal(&password, &owner.email)?;
        let password_hash = self.hasher.hash(password.into()).await?;
        // Whoever used the link meanwhile (another tab, another instance) won.
        self.store
            .reset_password(digest, password_hash, origin, self.clock.now())
            .await?
            .ok_or(AuthError::InvalidLink)
            .map(drop)
    }

    /// Mails the caller a link that proves `email` (their account's address) theirs, unless it
    /// is verified already.
    pub async fn request_email_verification(
        &self,
        user_id: UserId,
        email: &str,
        origin: Origin,
    ) -> Result<(), AuthError> {
        self.throttle_link_request(&Email::lookup_key(email), &origin, false)
            .await?;
        self.mail_link(LinkOwner::Id(user_id), Purpose::EmailVerification, origin);
        Ok(())
    }

    /// After a registration: the new account's verification link, when mail is sent.
    pub fn mail_verification_of_new_account(&self, user_id: UserId, origin: Origin) {
        if self.mailer.sends() {
            self.mail_link(LinkOwner::Id(user_id), Purpose::EmailVerification, origin);
        }
    }

    /// Marks the address of the account `token` opens verified; the token is used up.
    pub async fn confirm_email(&self, token: LinkToken, origin: Origin) -> Result<(), AuthError> {
        self.store
            .verify_email(token.digest(), origin, self.clock.now())
            .await?
            .ok_or(AuthError::InvalidLink)
            .map(drop)
    }

    /// Whether the account's address has been verified.
    pub async fn email_verified(&self, user_id: UserId) -> Result<bool, StoreError> {
        self.store.email_verified(user_id).await
    }

    /// Resolves once every mail asked for so far is sent or given up.
    pub async fn mail_settled(&self) {
        self.mailer.settled().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_reads_back_as_itself_and_nothing_else_reads_as_a_token() {
        let token = LinkToken::generate();
        let shown = token.reveal();
        assert_eq!(shown.len(), 43);
        assert_eq!(LinkToken::parse(&shown).unwrap().digest(), token.digest());
        assert_ne!(LinkToken::generate().digest(), token.digest());
        for other in ["", "abc", &shown[1..], &format!("{shown}A"), "!!!"] {
            assert!(LinkToken::parse(other).is_none(), "{other:?}");
        }
        assert!(!format!("{token:?}").contains(&shown));
    }

    #[test]
    fn lifetimes_read_as_words() {
        assert_eq!(in_words(Duration::from_secs(30 * 60)), "30 minutes");
        assert_eq!(in_words(Duration::from_secs(3600)), "1 hour");
        assert_eq!(in_words(Duration::from_secs(86_400)), "1 day");
        assert_eq!(in_words(Duration::from_secs(90)), "90 seconds");
    }
}
