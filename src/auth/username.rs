//! Display names: any Unicode text a person might call themselves, but bounded and printable.

/// Django's `AbstractUser.username` length.
pub const MAX_LEN: usize = 150;

/// A trimmed, non-blank name of at most 150 characters, free of control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Username(String);

impl Username {
    /// Parses an already trimmed, non-blank name.
    pub fn parse(trimmed: &str) -> Result<Username, String> {
        if trimmed.chars().count() > MAX_LEN {
            return Err(format!(
                "Ensure this field has no more than {MAX_LEN} characters."
            ));
        }
        // Control characters (newlines, escapes, bidi-breaking C0/C1 codes) forge log lines and
        // garble every screen that shows the name.
        if trimmed.chars().any(char::is_control) {
            return Err("Control characters are not allowed.".into());
        }
        Ok(Username(trimmed.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_printable_unicode_is_kept_verbatim() {
        for name in [
            "John Smith",
            "李小龍",
            "Robert'); DROP TABLE users;--",
            "<script>x</script>",
            "🦀",
        ] {
            assert_eq!(Username::parse(name).unwrap().as_str(), name);
        }
    }

    #[test]
    fn long_names_and_control_characters_are_refused() {
        assert!(Username::parse(&"é".repeat(150)).is_ok());
        assert!(Username::parse(&"é".repeat(151)).is_err());
        assert!(Username::parse("line\nbreak").is_err());
        assert!(Username::parse("bell\u{7}").is_err());
    }
}
