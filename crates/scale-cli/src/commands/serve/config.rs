//! `scale serve --config scale.toml`: the file, read and checked whole before
//! anything starts.
//!
//! ```toml
//! listen = "127.0.0.1:8080"
//!
//! [defaults]
//! memory_limit = 64        # MiB per instance
//! deadline = "10s"
//!
//! [[route]]
//! path = "/hello"
//! methods = ["GET", "POST"]
//! functions = ["hello.scale"]
//!
//! [[route]]
//! path = "/api/*"
//! functions = ["auth.scale", "api.scale"]
//! cpu_budget = 50000000
//! ```
//!
//! Every mistake is an error naming the file, the line and the route.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::commands::runtime_args::{Budget, Deadline, parse_budget, parse_deadline};

/// The public address when the file names none.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// The admin address (metrics, health) when the file and the flags name none.
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9090";

/// How long in-flight requests may take to finish after SIGTERM or Ctrl-C.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// A checked configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from.
    pub file: PathBuf,
    pub listen: SocketAddr,
    /// `None` when the file says `admin_listen = "none"`.
    pub admin_listen: Option<SocketAddr>,
    pub shutdown_grace: Duration,
    pub routes: Vec<RouteConfig>,
}

/// One route: where it answers, and the chain that answers.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteConfig {
    /// The path pattern as written in the file (the route's name in logs and
    /// metrics).
    pub path: String,
    /// The methods it answers, upper-case; empty for any.
    pub methods: Vec<String>,
    /// The chain, as absolute paths.
    pub functions: Vec<PathBuf>,
    pub limits: Limits,
    /// The line of the route's `[[route]]` table, for messages.
    pub line: usize,
}

/// The limits of a route's runs, from `[defaults]` and the route itself.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// MiB per instance.
    pub memory_limit: u64,
    pub table_limit: Option<u32>,
    pub cpu_budget: Budget,
    pub deadline: Deadline,
    /// Bytes.
    pub body_limit: usize,
    /// Per-run isolation: every request sees the functions as they were
    /// right after start-up.
    pub isolate: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory_limit: scale_runtime::DEFAULT_MEMORY_LIMIT >> 20,
            table_limit: None,
            cpu_budget: Budget::Operations(super::DEFAULT_SERVE_BUDGET),
            deadline: Deadline::After(super::DEFAULT_SERVE_DEADLINE),
            body_limit: scale_http::DEFAULT_BODY_LIMIT,
            isolate: false,
        }
    }
}

/// A mistake in a configuration file, with where it is.
#[derive(Debug, thiserror::Error)]
#[error("{}{}: {message}", file.display(), line.map(|line| format!(":{line}")).unwrap_or_default())]
pub struct ConfigError {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub message: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: Option<Spanned<String>>,
    admin_listen: Option<Spanned<String>>,
    shutdown_grace: Option<Spanned<String>>,
    defaults: Option<Spanned<RawLimits>>,
    #[serde(default, rename = "route")]
    routes: Vec<Spanned<RawRoute>>,
}

/// Declares the tables that hold the limit keys, `[defaults]` and
/// `[[route]]`, from one list of the keys, so that both accept the same ones.
/// (Not `#[serde(flatten)]`: it cannot be combined with
/// `deny_unknown_fields`, and it loses the spans of `Spanned` values.)
macro_rules! limit_keys {
    ($($key:ident: $value:ty,)*) => {
        /// `[defaults]`: the limit keys, each optional.
        #[derive(Debug, Default, Deserialize)]
        #[serde(deny_unknown_fields)]
        struct RawLimits {
            $($key: Option<$value>,)*
        }

        /// A `[[route]]`: where it answers, its chain, and the limit keys.
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        struct RawRoute {
            path: Spanned<String>,
            methods: Option<Vec<Spanned<String>>>,
            functions: Vec<Spanned<String>>,
            $($key: Option<$value>,)*
        }

        impl RawRoute {
            /// The limit keys the route sets.
            fn limits(&self) -> RawLimits {
                RawLimits { $($key: self.$key.clone(),)* }
            }
        }
    };
}

limit_keys! {
    memory_limit: u64,
    table_limit: u32,
    cpu_budget: Spanned<BudgetValue>,
    deadline: Spanned<String>,
    body_limit: usize,
    isolate: bool,
}

/// `cpu_budget = 1000000` or `cpu_budget = "none"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum BudgetValue {
    Operations(u64),
    Word(String),
}

/// The methods a route may name.
const METHODS: &[&str] = &["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT"];

/// Reads and checks `file`: syntax, keys, values, routes, and that every
/// function file exists (relative paths are relative to the file's folder).
pub fn load(file: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(file).map_err(|err| ConfigError {
        file: file.to_path_buf(),
        line: None,
        message: format!("cannot read it: {err}"),
    })?;
    parse(file, &text)
}

/// Checks `text`, the contents of `file`.
pub fn parse(file: &Path, text: &str) -> Result<Config, ConfigError> {
    let at = |span: Range<usize>, message: String| ConfigError {
        file: file.to_path_buf(),
        line: Some(line_of(text, span.start)),
        message,
    };
    let raw: RawConfig = toml::from_str(text).map_err(|err| {
        let span = err.span();
        let place = span.as_ref().and_then(|span| section_of(text, span.start)).unwrap_or_default();
        ConfigError {
            file: file.to_path_buf(),
            line: span.map(|span| line_of(text, span.start)),
            message: format!("{place}{}", err.message()),
        }
    })?;
    let base = file.parent().map(Path::to_path_buf).unwrap_or_default();
    let address = |value: &Spanned<String>, key: &str| -> Result<SocketAddr, ConfigError> {
        value.get_ref().parse().map_err(|_| {
            at(value.span(), format!("{key} = {:?} is not an address such as 127.0.0.1:8080", value.get_ref()))
        })
    };
    let listen = match &raw.listen {
        Some(value) => address(value, "listen")?,
        None => DEFAULT_LISTEN.parse().expect("the default address parses"),
    };
    let admin_listen = match &raw.admin_listen {
        Some(value) if value.get_ref().eq_ignore_ascii_case("none") => None,
        Some(value) => Some(address(value, "admin_listen")?),
        None => Some(DEFAULT_ADMIN_LISTEN.parse().expect("the default address parses")),
    };
    let shutdown_grace = match &raw.shutdown_grace {
        Some(value) => match parse_deadline(value.get_ref()) {
            Ok(Deadline::After(grace)) => grace,
            Ok(Deadline::Never) | Err(_) => {
                return Err(at(
                    value.span(),
                    format!("shutdown_grace = {:?} is not a duration such as 30s", value.get_ref()),
                ));
            }
        },
        None => DEFAULT_SHUTDOWN_GRACE,
    };
    let defaults = match &raw.defaults {
        Some(section) => apply(Limits::default(), section.get_ref(), &|span, message| {
            at(if span.is_empty() { section.span() } else { span }, format!("[defaults]: {message}"))
        })?,
        None => Limits::default(),
    };
    if raw.routes.is_empty() {
        return Err(ConfigError {
            file: file.to_path_buf(),
            line: None,
            message: "no routes: add a [[route]] with a path and functions".into(),
        });
    }
    let mut routes = Vec::with_capacity(raw.routes.len());
    let mut seen: HashMap<String, usize> = HashMap::new();
    for spanned in &raw.routes {
        let route = spanned.get_ref();
        let line = line_of(text, spanned.span().start);
        let path = route.path.get_ref().clone();
        let name = format!("route {path:?}");
        let error = |span: Range<usize>, message: String| at(span, format!("{name}: {message}"));
        check_path(&path).map_err(|message| error(route.path.span(), message))?;
        if let Some(first) = seen.insert(path.clone(), line) {
            return Err(error(route.path.span(), format!("the same path as the route on line {first}")));
        }
        let mut methods = Vec::new();
        for method in route.methods.iter().flatten() {
            let upper = method.get_ref().to_ascii_uppercase();
            if !METHODS.contains(&upper.as_str()) {
                return Err(error(method.span(), format!("{:?} is not an HTTP method", method.get_ref())));
            }
            if !methods.contains(&upper) {
                methods.push(upper);
            }
        }
        if route.functions.is_empty() {
            return Err(error(spanned.span(), "functions is empty: name at least one .scale file".into()));
        }
        let mut functions = Vec::with_capacity(route.functions.len());
        for function in &route.functions {
            let path = base.join(function.get_ref());
            if !path.is_file() {
                return Err(error(function.span(), format!("{} is not a file", path.display())));
            }
            functions.push(std::path::absolute(&path).unwrap_or(path));
        }
        let limits = apply(defaults, &route.limits(), &|span, message| {
            error(if span.is_empty() { spanned.span() } else { span }, message)
        })?;
        routes.push(RouteConfig { path, methods, functions, limits, line });
    }
    Ok(Config { file: file.to_path_buf(), listen, admin_listen, shutdown_grace, routes })
}

/// `base` with the keys `raw` sets.
fn apply(
    base: Limits,
    raw: &RawLimits,
    error: &dyn Fn(Range<usize>, String) -> ConfigError,
) -> Result<Limits, ConfigError> {
    let mut limits = base;
    if let Some(mib) = raw.memory_limit {
        if mib == 0 || mib > 4096 {
            return Err(error(0..0, format!("memory_limit = {mib}: give MiB, from 1 to 4096")));
        }
        limits.memory_limit = mib;
    }
    if let Some(elements) = raw.table_limit {
        limits.table_limit = Some(elements);
    }
    if let Some(budget) = &raw.cpu_budget {
        let parsed = match budget.get_ref() {
            BudgetValue::Operations(operations) => parse_budget(&operations.to_string()),
            BudgetValue::Word(word) => parse_budget(word),
        };
        limits.cpu_budget = parsed.map_err(|message| error(budget.span(), format!("cpu_budget: {message}")))?;
    }
    if let Some(deadline) = &raw.deadline {
        limits.deadline = parse_deadline(deadline.get_ref())
            .map_err(|message| error(deadline.span(), format!("deadline: {message}")))?;
    }
    if let Some(bytes) = raw.body_limit {
        limits.body_limit = bytes;
    }
    if let Some(isolate) = raw.isolate {
        limits.isolate = isolate;
    }
    Ok(limits)
}

/// The path patterns a route may have: `/exact/path`, `/users/{id}` (one
/// segment), and `/prefix/*` (everything under the prefix, the prefix
/// itself included).
fn check_path(path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err("a path starts with /".into());
    }
    let body = path.strip_suffix("/*").unwrap_or(path);
    if body.contains('*') {
        return Err("* may only end a path, as /prefix/*".into());
    }
    if path.chars().any(|c| c.is_whitespace() || c.is_control() || c == '?' || c == '#') {
        return Err("a path has no spaces, control characters, query or fragment".into());
    }
    Ok(())
}

/// The file read loosely, for naming where a mistake the strict reading
/// found lies: unknown keys are ignored, and only the sections' spans and
/// the routes' paths are kept.
#[derive(Deserialize)]
struct LooseConfig {
    defaults: Option<Spanned<serde::de::IgnoredAny>>,
    #[serde(default, rename = "route")]
    routes: Vec<Spanned<LooseRoute>>,
}

#[derive(Deserialize)]
struct LooseRoute {
    path: Option<String>,
}

/// `"route \"/a\": "` or `"[defaults]: "` when byte `offset` of `text` lies
/// in that section (after its header and before the next one), for a
/// mistake the strict reading reports with a span. `None` when the text
/// does not read loosely either, or the offset lies in another section.
fn section_of(text: &str, offset: usize) -> Option<String> {
    let loose: LooseConfig = toml::from_str(text).ok()?;
    let line = line_of(text, offset);
    // The last line at or before the mistake that opens a table.
    let header = text
        .lines()
        .enumerate()
        .take(line)
        .filter(|(_, content)| content.trim_start().starts_with('['))
        .map(|(index, _)| index + 1)
        .last()?;
    if loose.defaults.as_ref().is_some_and(|defaults| line_of(text, defaults.span().start) == header) {
        return Some("[defaults]: ".into());
    }
    let route = loose.routes.iter().find(|route| line_of(text, route.span().start) == header)?;
    Some(match &route.get_ref().path {
        Some(path) => format!("route {path:?}: "),
        None => format!("the route on line {header}: "),
    })
}

/// The 1-based line of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())].iter().filter(|&&b| b == b'\n').count() + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A folder with `hello.scale` and `api.scale` (their contents do not matter here).
    fn folder(test: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("scale-config-{}-{test}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for name in ["hello.scale", "api.scale"] {
            std::fs::write(dir.join(name), b"").unwrap();
        }
        dir
    }

    fn parse_in(dir: &Path, text: &str) -> Result<Config, ConfigError> {
        parse(&dir.join("scale.toml"), text)
    }

    #[test]
    fn a_full_file_parses_with_defaults_and_overrides() {
        let dir = folder("full");
        let config = parse_in(
            &dir,
            r#"
listen = "0.0.0.0:8000"
admin_listen = "127.0.0.1:9999"
shutdown_grace = "5s"

[defaults]
memory_limit = 32
deadline = "2s"

[[route]]
path = "/hello"
methods = ["get", "POST"]
functions = ["hello.scale"]

[[route]]
path = "/api/*"
functions = ["hello.scale", "api.scale"]
cpu_budget = "none"
body_limit = 1024
isolate = true
"#,
        )
        .unwrap();
        assert_eq!(config.listen, "0.0.0.0:8000".parse::<SocketAddr>().unwrap());
        assert_eq!(config.admin_listen, Some("127.0.0.1:9999".parse().unwrap()));
        assert_eq!(config.shutdown_grace, Duration::from_secs(5));
        let [hello, api] = &config.routes[..] else { panic!("{:?}", config.routes) };
        assert_eq!(
            (hello.path.as_str(), hello.methods.clone(), hello.line),
            ("/hello", vec!["GET".into(), "POST".into()], 10)
        );
        assert_eq!(hello.functions, vec![dir.join("hello.scale")]);
        assert_eq!(hello.limits.memory_limit, 32);
        assert_eq!(hello.limits.deadline, Deadline::After(Duration::from_secs(2)));
        assert_eq!(hello.limits.cpu_budget, Budget::Operations(crate::commands::serve::DEFAULT_SERVE_BUDGET));
        assert_eq!(
            (api.limits.cpu_budget, api.limits.body_limit, api.limits.memory_limit),
            (Budget::Unlimited, 1024, 32)
        );
        assert!(api.methods.is_empty());
        assert!(api.limits.isolate && !hello.limits.isolate);
    }

    #[test]
    fn mistakes_name_the_file_line_and_route() {
        let dir = folder("mistakes");
        let route = "[[route]]\npath = \"/a\"\nfunctions = [\"hello.scale\"]\n";
        let cases = [
            (format!("{route}colour = \"blue\"\n"), 4, "route \"/a\": unknown field `colour`"),
            (format!("{route}memory_limit = \"lots\"\n"), 4, "route \"/a\": "),
            ("[[route]]\nfunctions = [\"hello.scale\"]\n".to_string(), 1, "the route on line 1: missing field `path`"),
            (format!("[defaults]\nbudget = 5\n{route}"), 2, "[defaults]: unknown field `budget`"),
            (
                format!("{route}[[route]]\npath = \"/a\"\nfunctions = [\"api.scale\"]\n"),
                5,
                "the same path as the route on line 1",
            ),
            ("[[route]]\npath = \"/b\"\nfunctions = [\"missing.scale\"]\n".to_string(), 3, "route \"/b\": "),
            ("[[route]]\npath = \"b\"\nfunctions = [\"hello.scale\"]\n".to_string(), 2, "starts with /"),
            ("[[route]]\npath = \"/a/*/b\"\nfunctions = [\"hello.scale\"]\n".to_string(), 2, "may only end a path"),
            (format!("{route}methods = [\"FETCH\"]\n"), 4, "\"FETCH\" is not an HTTP method"),
            (format!("{route}deadline = \"soon\"\n"), 4, "deadline: "),
            (format!("{route}cpu_budget = 0\n"), 4, "cpu_budget: "),
            (format!("listen = \"here\"\n{route}"), 1, "not an address"),
            (format!("[defaults]\nmemory_limit = 0\n{route}"), 1, "[defaults]: memory_limit = 0"),
            ("[[route]]\npath = \"/a\"\nfunctions = []\n".to_string(), 1, "functions is empty"),
            ("listen = \n".to_string(), 1, ""),
        ];
        for (text, line, needle) in cases {
            let err = parse_in(&dir, &text).unwrap_err();
            assert_eq!(err.line, Some(line), "{text}\n{err}");
            let shown = err.to_string();
            assert!(shown.starts_with(&format!("{}:{line}: ", dir.join("scale.toml").display())), "{shown}");
            assert!(shown.contains(needle), "{shown} lacks {needle:?}");
        }
        let err = parse_in(&dir, "listen = \"127.0.0.1:1\"\n").unwrap_err();
        assert!(err.to_string().contains("no routes"), "{err}");
    }

    #[test]
    fn paths_follow_the_patterns() {
        for good in ["/", "/a", "/a/b", "/users/{id}", "/api/*", "/*"] {
            assert!(check_path(good).is_ok(), "{good}");
        }
        for bad in ["", "a", "/a*", "/*/a", "/a b", "/a?x=1"] {
            assert!(check_path(bad).is_err(), "{bad}");
        }
    }
}
