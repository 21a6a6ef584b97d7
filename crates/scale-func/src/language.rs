//! The source language of a function, and the error of parsing one.
//!
//! Uses only [`display`](crate::display) from the crate.

use std::fmt;
use std::str::FromStr;

use crate::display::quoted;

/// The language a function was written in.
///
/// The runtime needs it because guests built by different toolchains
/// differ in how they start up and hand memory to the host.
///
/// [`TypeScript`](Self::TypeScript) and [`JavaScript`](Self::JavaScript) are
/// reserved: they parse and display, but [`ScaleFunc::new`] refuses them and
/// [`ScaleFunc::decode`] reports them as unsupported.
///
/// [`ScaleFunc::new`]: crate::ScaleFunc::new
/// [`ScaleFunc::decode`]: crate::ScaleFunc::decode
///
/// ```
/// use scale_func::Language;
///
/// let lang: Language = "tinygo".parse()?;
/// assert_eq!(lang, Language::TinyGo);
/// assert_eq!(lang.to_string(), "tinygo");
/// assert!(!Language::TypeScript.is_supported());
/// # Ok::<(), scale_func::ParseLanguageError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Language {
    /// Go, built with the standard Go toolchain (`go`).
    Go,
    /// Go, built with TinyGo (`tinygo`).
    TinyGo,
    /// Rust (`rust`).
    Rust,
    /// TypeScript (`ts`). Reserved, not supported yet.
    TypeScript,
    /// JavaScript (`js`). Reserved, not supported yet.
    JavaScript,
}

impl Language {
    /// Every language, supported or reserved.
    pub const ALL: [Language; 5] =
        [Language::Go, Language::TinyGo, Language::Rust, Language::TypeScript, Language::JavaScript];

    /// The name used in `.scale` files and by `Display`/`FromStr`:
    /// `go`, `tinygo`, `rust`, `ts` or `js`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Language::Go => "go",
            Language::TinyGo => "tinygo",
            Language::Rust => "rust",
            Language::TypeScript => "ts",
            Language::JavaScript => "js",
        }
    }

    /// Whether functions in this language can be packed and loaded.
    /// False for the reserved languages.
    pub const fn is_supported(self) -> bool {
        match self {
            Language::Go | Language::TinyGo | Language::Rust => true,
            Language::TypeScript | Language::JavaScript => false,
        }
    }
}

impl fmt::Display for Language {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Language {
    type Err = ParseLanguageError;

    /// Parses the exact, lowercase names of [`Language::as_str`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Language::ALL
            .into_iter()
            .find(|lang| lang.as_str() == s)
            .ok_or_else(|| ParseLanguageError { value: s.to_owned() })
    }
}

/// A string that names no [`Language`].
///
/// Returned by `Language::from_str`; the accepted names are those of
/// [`Language::as_str`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown language {}: expected one of go, tinygo, rust, ts, js", quoted(&self.value))]
pub struct ParseLanguageError {
    pub(crate) value: String,
}

impl ParseLanguageError {
    /// The string that was not recognised.
    pub fn value(&self) -> &str {
        &self.value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for lang in Language::ALL {
            assert_eq!(lang.as_str().parse::<Language>(), Ok(lang));
        }
    }

    #[test]
    fn names_are_exact() {
        for bad in ["", "Rust", "RUST", " rust", "typescript", "golang"] {
            let err = bad.parse::<Language>().unwrap_err();
            assert_eq!(err.value(), bad);
        }
    }
}
