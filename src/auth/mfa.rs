//! Two-factor login: an authenticator app's one-time codes (TOTP) and single-use recovery
//! codes. Enrolment is pending until a code confirms it; from then on a login needs the
//! password and a code. The shared secret is sealed under the master key like the other
//! secrets in the database, and never logged. The rules of codes are the domain's
//! ([`crate::domain::mfa`]); each use of a code is a conditional write in the store, so a
//! code logs in once however many instances see it at once.

use std::fmt;

use super::password::Password;
use super::tokens::AccessClaims;
use super::{Auth, AuthError, associated_data, open};
use crate::domain::UserId;
use crate::domain::audit::{Event, LoginFailure, Origin};
use crate::domain::mfa::{Amr, RECOVERY_CODES, RecoveryCode, TotpSecret, recovery_digest};
use crate::domain::throttle::Bucket;
use crate::store::{ConfirmTotp, MfaStatus, SecretRow, SessionScope, Store};

/// What a login sends besides the password.
pub enum SecondFactor {
    None,
    /// A code of the authenticator app.
    Otp(String),
    /// One of the recovery codes handed out at confirmation.
    RecoveryCode(String),
}

impl fmt::Debug for SecondFactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SecondFactor::None => "SecondFactor::None",
            SecondFactor::Otp(_) => "SecondFactor::Otp(<redacted>)",
            SecondFactor::RecoveryCode(_) => "SecondFactor::RecoveryCode(<redacted>)",
        })
    }
}

/// How the caller proves, to turn two-factor login off, that they are the account's owner
/// and not only the holder of one of its access tokens.
pub enum Proof {
    Code(String),
    Password(Password),
}

/// A new authenticator, as the owner adds it to their app.
#[derive(Debug)]
pub struct Enrolment {
    /// The secret in base32, to type in.
    pub secret: String,
    /// The Key URI, to scan as a QR code.
    pub otpauth_url: String,
}

/// Why a change to the account's second factor was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MfaRefusal {
    #[error("the code is wrong, used, or out of its window")]
    InvalidCode,
    #[error("the password is wrong")]
    WrongPassword,
    #[error("two-factor login is already on")]
    AlreadyEnabled,
    #[error("no authenticator is being set up")]
    NothingPending,
    #[error("two-factor login is off")]
    NotEnabled,
}

impl<S: Store> Auth<S> {
    /// Starts setting up an authenticator: a new secret, replacing one still pending. Refused
    /// while one is confirmed (turning it off first takes a code or the password).
    pub async fn enrol_totp(
        &self,
        caller: &AccessClaims,
        email: &str,
    ) -> Result<Enrolment, AuthError> {
        let secret = TotpSecret::generate();
        let sealed = self.master_key.seal(
            &associated_data(&SecretRow::TotpSecret(caller.user_id)),
            secret.as_bytes(),
        );
        if !self
            .store
            .put_pending_totp(caller.user_id, sealed, self.clock.now())
            .await?
        {
            return Err(AuthError::Mfa(MfaRefusal::AlreadyEnabled));
        }
        Ok(Enrolment {
            secret: secret.base32(),
            otpauth_url: secret.otpauth_url(email),
        })
    }

    /// Confirms the pending authenticator with one of its codes; the recovery codes, which
    /// are shown this once (only their digests are kept).
    pub async fn confirm_totp(
        &self,
        caller: &AccessClaims,
        code: &str,
        origin: Origin,
    ) -> Result<Vec<RecoveryCode>, AuthError> {
        let pending = self
            .store
            .totp_factor(caller.user_id)
            .await?
            .filter(|factor| !factor.confirmed)
            .ok_or(AuthError::Mfa(MfaRefusal::NothingPending))?;
        let secret = self.open_totp_secret(caller.user_id, &pending.secret)?;
        let now = self.clock.now();
        let step = secret
            .accepted_step(code, now, None)
            .ok_or(AuthError::Mfa(MfaRefusal::InvalidCode))?;
        let codes: Vec<RecoveryCode> = (0..RECOVERY_CODES)
            .map(|_| RecoveryCode::generate())
            .collect();
        let confirmed = self
            .store
            .confirm_totp(ConfirmTotp {
                user_id: caller.user_id,
                secret: pending.secret,
                step,
                recovery_codes: codes.iter().map(RecoveryCode::digest).collect(),
                session_id: caller.sid,
                origin,
                now,
            })
            .await?;
        if !confirmed {
            // Another enrolment replaced the secret the code was checked against.
            return Err(AuthError::Mfa(MfaRefusal::InvalidCode));
        }
        Ok(codes)
    }

    /// Turns two-factor login off, given a current code or the password; every other
    /// session ends. Guesses are throttled like one-time codes at login.
    pub async fn disable_totp(
        &self,
        caller: &AccessClaims,
        proof: Proof,
        origin: Origin,
    ) -> Result<(), AuthError> {
        let factor = self
            .store
            .totp_factor(caller.user_id)
            .await?
            .filter(|factor| factor.confirmed)
            .ok_or(AuthError::Mfa(MfaRefusal::NotEnabled))?;
        let bucket = Bucket::new(
            "mfa-disable",
            &caller.user_id.to_string(),
            self.throttle.otp_failures_per_account,
        );
        let key = bucket.as_ref().map(|bucket| bucket.key.clone());
        self.take_throttle(bucket.into_iter().collect(), Vec::new(), "mfa")
            .await?;
        match proof {
            Proof::Code(code) => {
                let secret = self.open_totp_secret(caller.user_id, &factor.secret)?;
                let step = secret.accepted_step(&code, self.clock.now(), factor.last_step);
                let used = match step {
                    Some(step) => self.store.use_totp_step(caller.user_id, step).await?,
                    None => false,
                };
                if !used {
                    return Err(AuthError::Mfa(MfaRefusal::InvalidCode));
                }
            }
            Proof::Password(password) => {
                let stored = self.store.password_hash(caller.user_id).await?;
                let counted = key.iter().cloned().collect();
                if !self
                    .verify_counted(password, stored, counted)
                    .await?
                    .matched()
                {
                    return Err(AuthError::Mfa(MfaRefusal::WrongPassword));
                }
            }
        }
        self.settle_throttle(key, Vec::new()).await?;
        let scope = SessionScope::AllBut(caller.sid);
        let removed = self
            .store
            .remove_totp(caller.user_id, scope, origin, self.clock.now())
            .await?;
        if removed {
            Ok(())
        } else {
            Err(AuthError::Mfa(MfaRefusal::NotEnabled))
        }
    }

    /// Whether the caller's account has two-factor login on, and its recovery codes left.
    pub async fn mfa_status(&self, caller: &AccessClaims) -> Result<MfaStatus, AuthError> {
        Ok(self.store.mfa_status(caller.user_id).await?)
    }

    /// The second step of a login whose password was right: how the session is
    /// authenticated, or why it may not start. An account without a confirmed authenticator
    /// needs nothing more. Wrong codes count in buckets of their own, which follow the login
    /// limits' rule: an address `known` to the account is held by its own count alone.
    pub(super) async fn second_factor(
        &self,
        user_id: UserId,
        second: SecondFactor,
        known: bool,
        origin: &Origin,
        address: Option<&str>,
    ) -> Result<Amr, AuthError> {
        let factor = self.store.totp_factor(user_id).await?;
        let Some(factor) = factor.filter(|factor| factor.confirmed) else {
            return Ok(Amr::Password);
        };
        let refused = |why: LoginFailure| Event::login_failed(Some(user_id), address, why);
        if let SecondFactor::None = second {
            metrics::counter!("logins_total", "outcome" => "mfa_required").increment(1);
            let event = refused(LoginFailure::MfaRequired);
            self.store
                .record(event, origin.clone(), self.clock.now())
                .await?;
            return Err(AuthError::MfaRequired);
        }

        let taken = self.otp_buckets(user_id, address, known);
        let keys: Vec<String> = taken.iter().map(|bucket| bucket.key.clone()).collect();
        if let Err(error) = self.take_throttle(taken, Vec::new(), "mfa").await {
            if let AuthError::Throttled { .. } = error {
                let event = Event::login_throttled(Some(user_id));
                self.store
                    .record(event, origin.clone(), self.clock.now())
                    .await?;
            }
            return Err(error);
        }
        let accepted = match second {
            SecondFactor::None => false,
            SecondFactor::Otp(code) => {
                let secret = self.open_totp_secret(user_id, &factor.secret)?;
                match secret.accepted_step(&code, self.clock.now(), factor.last_step) {
                    Some(step) => self.store.use_totp_step(user_id, step).await?,
                    None => false,
                }
            }
            SecondFactor::RecoveryCode(code) => {
                let digest = recovery_digest(&code);
                let now = self.clock.now();
                self.store
                    .use_recovery_code(user_id, digest, origin.clone(), now)
                    .await?
            }
        };
        if !accepted {
            metrics::counter!("logins_total", "outcome" => "failure").increment(1);
            let event = refused(LoginFailure::MfaInvalid);
            self.store
                .record(event, origin.clone(), self.clock.now())
                .await?;
            return Err(AuthError::MfaInvalid);
        }
        // As after a right password: the address's own failures are forgiven, the count of
        // strangers' failures only gives this attempt back.
        let mut keys = keys.into_iter();
        let (own, strangers) = (keys.next(), keys.collect());
        self.settle_throttle(own, strangers).await?;
        Ok(Amr::PasswordAndOtp)
    }

    /// The buckets a one-time code of `user_id`'s account from `address` counts in: the
    /// account and address's, first, then, for an address it does not know, the account's
    /// for strangers.
    fn otp_buckets(&self, user_id: UserId, address: Option<&str>, known: bool) -> Vec<Bucket> {
        let limit = self.throttle.otp_failures_per_account;
        let pair = format!("{user_id} {}", address.unwrap_or("-"));
        let own = Bucket::new("mfa-account-ip", &pair, limit);
        let strangers = (!known)
            .then(|| Bucket::new("mfa-account", &user_id.to_string(), limit))
            .flatten();
        own.into_iter().chain(strangers).collect()
    }

    fn open_totp_secret(&self, user_id: UserId, sealed: &str) -> Result<TotpSecret, AuthError> {
        let row = SecretRow::TotpSecret(user_id);
        let bytes = open(&self.master_key, &row, sealed).map_err(|error| {
            AuthError::Store(crate::store::StoreError::Database(error.to_string()))
        })?;
        TotpSecret::from_bytes(bytes).ok_or_else(|| {
            AuthError::Store(crate::store::StoreError::Database(format!(
                "the TOTP secret of user {user_id} is too short"
            )))
        })
    }
}
