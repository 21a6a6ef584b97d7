//! The id of the signature a function implements, and the error of a
//! malformed one.
//!
//! Uses only [`rules`](crate::rules) and [`display`](crate::display) from
//! the crate.

use std::fmt;
use std::str::FromStr;

use crate::display::quoted;
use crate::rules::{Malformed, check_signature_name, check_signature_version};

/// Which signature a function implements, as a `.scale` file records it:
/// the name and version of the shape of the context the function exchanges
/// with the host, written `name@version` (for example `http@v0.1.0`).
///
/// This is a value naming a signature. The signature itself (the context
/// type and its codec) is what a runtime is generic over; the runtime
/// checks that a function's id names it.
///
/// The name is 1 to 255 bytes of `[a-z0-9-]`; the version 1 to 255 bytes of
/// `[A-Za-z0-9.-]`. Both are checked on construction, so a `SignatureId` is
/// always well formed.
///
/// ```
/// use scale_func::SignatureId;
///
/// let sig: SignatureId = "http@v0.1.0".parse()?;
/// assert_eq!(sig.name(), "http");
/// assert_eq!(sig.version(), "v0.1.0");
/// assert_eq!(sig, SignatureId::new("http", "v0.1.0")?);
/// assert_eq!(sig.to_string(), "http@v0.1.0");
/// assert!("http".parse::<SignatureId>().is_err());
/// # Ok::<(), scale_func::SignatureIdError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SignatureId {
    name: String,
    version: String,
}

impl SignatureId {
    /// Builds a signature id from its two halves, checking both.
    pub fn new(name: impl Into<String>, version: impl Into<String>) -> Result<Self, SignatureIdError> {
        let (name, version) = (name.into(), version.into());
        if let Err(problem) = check_signature_name(&name) {
            return Err(SignatureIdError::InvalidName { name, problem });
        }
        if let Err(problem) = check_signature_version(&version) {
            return Err(SignatureIdError::InvalidVersion { version, problem });
        }
        Ok(SignatureId { name, version })
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

impl fmt::Display for SignatureId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.name, self.version)
    }
}

impl FromStr for SignatureId {
    type Err = SignatureIdError;

    /// Parses `name@version`, splitting at the first `@` (so any further
    /// `@` lands in the version and is refused there).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let Some((name, version)) = s.split_once('@') else {
            return Err(SignatureIdError::MissingAt { value: s.to_owned() });
        };
        SignatureId::new(name, version)
    }
}

/// Why a [`SignatureId`] was refused: its text, or one of its halves, is
/// malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureIdError {
    /// The text has no `@` separating name and version.
    #[error(
        "signature {} has no '@': expected name@version, e.g. http@v0.1.0",
        quoted(.value)
    )]
    MissingAt {
        /// The text that was parsed.
        value: String,
    },
    /// The part before the `@` is not a valid signature name.
    #[error("invalid signature name {}: {problem}", quoted(.name))]
    InvalidName {
        /// The offending name.
        name: String,
        /// What is wrong with it.
        problem: Malformed,
    },
    /// The part after the `@` is not a valid signature version.
    #[error("invalid signature version {}: {problem}", quoted(.version))]
    InvalidVersion {
        /// The offending version.
        version: String,
        /// What is wrong with it.
        problem: Malformed,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_displays() {
        let sig: SignatureId = "my-sig2@1.0.0-rc.1".parse().unwrap();
        assert_eq!((sig.name(), sig.version()), ("my-sig2", "1.0.0-rc.1"));
        assert_eq!(sig.to_string(), "my-sig2@1.0.0-rc.1");
    }

    #[test]
    fn refuses_malformed_text() {
        assert!(matches!("http".parse::<SignatureId>(), Err(SignatureIdError::MissingAt { .. })));
        assert!(matches!(
            "@v1".parse::<SignatureId>(),
            Err(SignatureIdError::InvalidName { problem: Malformed::Empty, .. })
        ));
        assert!(matches!(
            "http@".parse::<SignatureId>(),
            Err(SignatureIdError::InvalidVersion { problem: Malformed::Empty, .. })
        ));
        assert!(matches!(
            "http@v1@v2".parse::<SignatureId>(),
            Err(SignatureIdError::InvalidVersion { problem: Malformed::ForbiddenChar { ch: '@', index: 2, .. }, .. })
        ));
        assert!(matches!("HTTP@v1".parse::<SignatureId>(), Err(SignatureIdError::InvalidName { .. })));
    }
}
