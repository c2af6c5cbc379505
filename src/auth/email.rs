//! Email addresses: validated, normalised as Django's `normalize_email`, and keyed
//! case-insensitively so that `Ann@X.org` and `ann@x.org` are one account.

use std::str::FromStr;

use email_address::EmailAddress;

/// Longest address accepted (RFC 5321's path limit, Django's `EmailField` default).
pub const MAX_LEN: usize = 254;

pub const INVALID: &str = "Enter a valid email address.";

/// Django's message for a unique field's value that exists.
pub const TAKEN: &str = "user with this email already exists.";

/// A syntactically valid address, stored trimmed with its domain lower-cased.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email {
    address: String,
    key: String,
}

impl Email {
    /// Parses an already trimmed, non-blank address.
    pub fn parse(raw: &str) -> Result<Email, String> {
        if raw.chars().count() > MAX_LEN {
            return Err(format!(
                "Ensure this field has no more than {MAX_LEN} characters."
            ));
        }
        if !is_valid(raw) {
            return Err(INVALID.into());
        }
        // `is_valid` guarantees an `@`; the local part keeps its case, as mail servers may
        // distinguish it, but the account key folds it so nobody registers twice.
        let (local, domain) = raw.rsplit_once('@').expect("a valid address has an @");
        let address = format!("{local}@{}", domain.to_lowercase());
        let key = address.to_lowercase();
        Ok(Email { address, key })
    }

    /// The address as stored and shown.
    pub fn as_str(&self) -> &str {
        &self.address
    }

    /// The case-insensitive identity of the account.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The key a login looks an account up by: emails are matched as registration stored them,
    /// without requiring that what the user typed is still a valid address.
    pub fn lookup_key(raw: &str) -> String {
        raw.trim().to_lowercase()
    }
}

/// RFC 5322 syntax (by `email_address`), narrowed as Django's `EmailValidator`: a plain address
/// without display name, whose domain is `localhost`, an address literal, or a host name of
/// letter-digit-hyphen labels ending in a top-level domain of at least two letters.
fn is_valid(raw: &str) -> bool {
    let Ok(parsed) = EmailAddress::from_str(raw) else {
        return false;
    };
    if parsed.as_str() != raw || raw.contains(char::is_whitespace) {
        return false;
    }
    // Django's local part is ASCII: look-alike letters (Cyrillic "а" for Latin "a") and
    // invisible characters would make two addresses that read the same.
    if !parsed.local_part().is_ascii() {
        return false;
    }
    let domain = parsed.domain();
    if domain == "localhost" {
        return true;
    }
    if let Some(literal) = domain
        .strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
    {
        let address = literal.strip_prefix("IPv6:").unwrap_or(literal);
        return address.parse::<std::net::IpAddr>().is_ok();
    }
    let labels: Vec<&str> = domain.split('.').collect();
    let Some((top_level, hosts)) = labels.split_last() else {
        return false;
    };
    let label_ok = |label: &str| {
        (1..=63).contains(&label.chars().count())
            && label.chars().all(|c| c.is_alphanumeric() || c == '-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    let top_level_ok = (2..=63).contains(&top_level.chars().count())
        && (top_level.chars().all(char::is_alphabetic)
            || top_level.strip_prefix("xn--").is_some_and(|rest| {
                !rest.is_empty() && rest.chars().all(|c| c.is_ascii_alphanumeric())
            }));
    !hosts.is_empty() && hosts.iter().all(|label| label_ok(label)) && top_level_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_domain_is_lower_cased_and_the_local_part_kept() {
        let email = Email::parse("Ann.Lee@Example.ORG").unwrap();
        assert_eq!(email.as_str(), "Ann.Lee@example.org");
        assert_eq!(email.key(), "ann.lee@example.org");
    }

    #[test]
    fn addresses_without_a_dotted_domain_or_with_a_display_name_are_refused() {
        for raw in [
            "plainaddress",
            "a@b",
            "@example.org",
            "ann@",
            "Ann <ann@example.org>",
            "ann lee@example.org",
            "ann@example.org.",
            "ann@example.c",
            "ann@x_y.org",
            "ann@-x.org",
            "ann@example.123",
            "аnn@example.org",
            "ann\u{200b}@example.org",
            "ann@[garbage]",
            "ann@[999.999.999.999]",
        ] {
            assert_eq!(Email::parse(raw), Err(INVALID.to_string()), "{raw}");
        }
    }

    #[test]
    fn localhost_literals_and_international_domains_are_accepted() {
        for raw in [
            "ann@localhost",
            "ann@[192.0.2.1]",
            "ann@bücher.de",
            "ann@xn--bcher-kva.de",
            "a@b.co",
        ] {
            assert!(Email::parse(raw).is_ok(), "{raw}");
        }
    }

    #[test]
    fn an_address_longer_than_254_characters_is_refused() {
        let raw = format!("{}@example.org", "a".repeat(250));
        assert!(Email::parse(&raw).unwrap_err().contains("254"));
    }

    #[test]
    fn login_keys_match_registration_keys() {
        let email = Email::parse("Ann@Example.org").unwrap();
        assert_eq!(Email::lookup_key("  ANN@example.ORG "), email.key());
    }
}
