//! The signature a function implements.

use std::fmt;
use std::str::FromStr;

use crate::error::SignatureError;
use crate::rules::{check_signature_name, check_signature_version};

/// The signature a function implements: the shape of the context it
/// exchanges with the host, named and versioned, written `name@version`
/// (for example `http@v0.1.0`).
///
/// The name is 1 to 255 bytes of `[a-z0-9-]`; the version 1 to 255 bytes of
/// `[A-Za-z0-9.-]`. Both are checked on construction, so a `Signature` is
/// always well formed.
///
/// ```
/// use scale_func::Signature;
///
/// let sig: Signature = "http@v0.1.0".parse()?;
/// assert_eq!(sig.name(), "http");
/// assert_eq!(sig.version(), "v0.1.0");
/// assert_eq!(sig, Signature::new("http", "v0.1.0")?);
/// assert_eq!(sig.to_string(), "http@v0.1.0");
/// assert!("http".parse::<Signature>().is_err());
/// # Ok::<(), scale_func::SignatureError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Signature {
    name: String,
    version: String,
}

impl Signature {
    /// Builds a signature from its two halves, checking both.
    pub fn new(name: impl Into<String>, version: impl Into<String>) -> Result<Self, SignatureError> {
        let (name, version) = (name.into(), version.into());
        if let Err(problem) = check_signature_name(&name) {
            return Err(SignatureError::InvalidName { name, problem });
        }
        if let Err(problem) = check_signature_version(&version) {
            return Err(SignatureError::InvalidVersion { version, problem });
        }
        Ok(Signature { name, version })
    }

    /// The name, e.g. `http`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The version, e.g. `v0.1.0`.
    pub fn version(&self) -> &str {
        &self.version
    }
}

impl fmt::Display for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.name, self.version)
    }
}

impl FromStr for Signature {
    type Err = SignatureError;

    /// Parses `name@version`, splitting at the first `@` (so any further
    /// `@` lands in the version and is refused there).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let Some((name, version)) = s.split_once('@') else {
            return Err(SignatureError::MissingAt { value: s.to_owned() });
        };
        Signature::new(name, version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Malformed;

    #[test]
    fn parses_and_displays() {
        let sig: Signature = "my-sig2@1.0.0-rc.1".parse().unwrap();
        assert_eq!((sig.name(), sig.version()), ("my-sig2", "1.0.0-rc.1"));
        assert_eq!(sig.to_string(), "my-sig2@1.0.0-rc.1");
    }

    #[test]
    fn refuses_malformed_text() {
        assert!(matches!("http".parse::<Signature>(), Err(SignatureError::MissingAt { .. })));
        assert!(matches!(
            "@v1".parse::<Signature>(),
            Err(SignatureError::InvalidName { problem: Malformed::Empty, .. })
        ));
        assert!(matches!(
            "http@".parse::<Signature>(),
            Err(SignatureError::InvalidVersion { problem: Malformed::Empty, .. })
        ));
        assert!(matches!(
            "http@v1@v2".parse::<Signature>(),
            Err(SignatureError::InvalidVersion { problem: Malformed::ForbiddenChar { ch: '@', index: 2, .. }, .. })
        ));
        assert!(matches!("HTTP@v1".parse::<Signature>(), Err(SignatureError::InvalidName { .. })));
    }
}
