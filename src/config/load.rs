//! Loading: built-in defaults, then the TOML file, then `PENCIL_BRIDGE_…` variables.

use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Toml};
use figment::Figment;

use super::Config;

/// Prefix of the environment variables that override the file.
const ENV_PREFIX: &str = "PENCIL_BRIDGE_";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {path} not found; pass --config FILE or set PENCIL_BRIDGE_CONFIG")]
    NotFound { path: PathBuf },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("{path}: {count} problem(s):\n  - {}", problems.join("\n  - "))]
    Problems {
        path: PathBuf,
        count: usize,
        problems: Vec<String>,
    },
}

/// Reads and parses the configuration at `path`. Semantic checks happen in
/// [`super::ValidConfig::new`].
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    if path.is_dir() {
        return Err(ConfigError::Invalid {
            path: path.to_owned(),
            message: "is a directory; pass the config file itself with --config".to_owned(),
        });
    }
    if !path.is_file() {
        return Err(ConfigError::NotFound {
            path: path.to_owned(),
        });
    }
    let figment = Figment::new()
        .merge(Toml::file_exact(path))
        // Only `SECTION__KEY` names are config: orchestrators inject other
        // variables with the same prefix (a Kubernetes Service named
        // pencil-bridge adds PENCIL_BRIDGE_PORT), which must not break start-up.
        .merge(
            Env::prefixed(ENV_PREFIX)
                .filter(|key| key.as_str().contains("__"))
                .split("__"),
        );
    let mut config: Config = figment.extract().map_err(|err| ConfigError::Invalid {
        path: path.to_owned(),
        message: describe_figment_error(err),
    })?;

    // Relative paths are read from the config file's folder, so the
    // server and the `deliveries` commands find the same files from any
    // working directory.
    let base = path.parent().unwrap_or(Path::new(""));
    if config.templates.dir.is_relative() {
        config.templates.dir = base.join(&config.templates.dir);
    }
    config.store.url = resolve_sqlite_url(&config.store.url, base);
    let files = config
        .secrets
        .iter_mut()
        .map(|secret| &mut secret.value_file);
    let destination_files = config
        .destinations
        .values_mut()
        .flat_map(|destination| [&mut destination.url_file, &mut destination.token_file]);
    for file in files.chain(destination_files).flatten() {
        if file.is_relative() {
            *file = base.join(&*file);
        }
    }
    Ok(config)
}

/// Returns the file of a `sqlite:` store URL, without its `?options`; `None` for an
/// in-memory database or another scheme.
pub fn sqlite_file(url: &str) -> Option<PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let file = rest.split('?').next().unwrap_or(rest);
    (!file.is_empty() && file != ":memory:").then(|| PathBuf::from(file))
}

/// Shows a store URL in messages: a SQLite file as its path, anything else
/// redacted, because a database URL may carry a password.
pub fn display_store_url(url: &str) -> String {
    match sqlite_file(url) {
        Some(file) => file.display().to_string(),
        None => super::redact_url(url),
    }
}

/// Makes the file of a relative `sqlite:` URL relative to `base`.
fn resolve_sqlite_url(url: &str, base: &Path) -> String {
    match sqlite_file(url) {
        Some(file) if file.is_relative() => {
            let options = url
                .split_once('?')
                .map(|(_, options)| format!("?{options}"))
                .unwrap_or_default();
            format!("sqlite://{}{options}", base.join(file).display())
        }
        _ => url.to_owned(),
    }
}

/// Turns figment's errors into one line each that names the key path.
fn describe_figment_error(err: figment::Error) -> String {
    let lines: Vec<String> = err
        .into_iter()
        .map(|error| {
            let key = error.path.join(".");
            let source = match &error.metadata {
                Some(meta) if meta.name.contains("environment") => {
                    " (from a PENCIL_BRIDGE_ environment variable)".to_owned()
                }
                _ => String::new(),
            };
            let hint = match &error.kind {
                figment::error::Kind::UnknownField(..) => "; remove it or fix its spelling",
                figment::error::Kind::MissingField(..) => "; add it",
                _ => "",
            };
            let message = without_source_lines(&error.kind.to_string());
            if key.is_empty() {
                format!("{message}{source}{hint}")
            } else {
                format!("key `{key}`: {message}{source}{hint}")
            }
        })
        .collect();
    lines.join("\n")
}

/// Drops the quoted lines of the file from a TOML parse error, because such
/// a line may hold a secret. The line and column numbers stay.
fn without_source_lines(message: &str) -> String {
    let is_quote = |line: &str| {
        let rest = line
            .trim_start()
            .trim_start_matches(|c: char| c.is_ascii_digit());
        rest.trim_start().starts_with('|')
    };
    let kept: Vec<&str> = message
        .lines()
        .filter(|line| !line.trim().is_empty() && !is_quote(line))
        .map(str::trim)
        .collect();
    kept.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_text(text: &str) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, text).unwrap();
        load(&path)
    }

    #[test]
    fn unknown_key_names_its_path() {
        let err = load_text("[server]\nlisten = \"127.0.0.1:1\"\nlisten_port = 3\n").unwrap_err();
        let message = err.to_string();
        assert!(message.contains("server.listen_port"), "{message}");
        assert!(
            message.contains("remove it or fix its spelling"),
            "{message}"
        );
    }

    #[test]
    fn bad_duration_names_the_value() {
        let err = load_text("[delivery]\ntimeout = \"ten seconds\"\n").unwrap_err();
        let message = err.to_string();
        assert!(message.contains("delivery.timeout"), "{message}");
        assert!(message.contains("\"ten seconds\""), "{message}");
    }

    #[test]
    fn parse_error_does_not_quote_the_file() {
        let err = load_text("[[secrets]]\nenvironment = \"p\"\nvalue = \"hunter2\n").unwrap_err();
        let message = err.to_string();
        assert!(message.contains("line 3"), "{message}");
        assert!(!message.contains("hunter2"), "{message}");
    }

    #[test]
    fn numeric_secret_is_read_as_text() {
        let config = load_text("[[secrets]]\nenvironment = \"p\"\nvalue = 98765432123\n").unwrap();
        assert_eq!(config.secrets[0].value.as_deref(), Some("98765432123"));
    }

    #[test]
    fn relative_store_file_is_next_to_config() {
        let base = Path::new("/etc/pencil");
        let cases = [
            ("sqlite://bridge.db", "sqlite:///etc/pencil/bridge.db"),
            (
                "sqlite:bridge.db?mode=rwc",
                "sqlite:///etc/pencil/bridge.db?mode=rwc",
            ),
            ("sqlite:///var/lib/bridge.db", "sqlite:///var/lib/bridge.db"),
            ("sqlite::memory:", "sqlite::memory:"),
        ];
        for (url, expected) in cases {
            assert_eq!(resolve_sqlite_url(url, base), expected, "{url}");
        }
    }

    #[test]
    fn defaults_fill_missing_sections() {
        let config = load_text("").unwrap();
        assert_eq!(config.server.max_body_bytes, 65_536);
        assert_eq!(config.delivery.max_attempts, 12);
    }

    #[test]
    fn missing_file_is_reported() {
        let err = load(Path::new("/nonexistent/pencil.toml")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/pencil.toml"));
    }
}
