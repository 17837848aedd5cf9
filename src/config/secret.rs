//! Secret values (Pencil secrets, webhook URLs, tokens) that never print.

use std::fmt;
use std::path::Path;

/// A secret string. `Debug` and `Display` print `****`, so a secret cannot
/// reach a log line or an error message by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// Returns the secret itself, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(****)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("****")
    }
}

/// Reads an optional secret written as a string or, by mistake or through
/// an environment override such as `…__TOKEN=8675309`, as a number or
/// boolean. The value becomes a string, so a type error can never print it.
pub fn deserialize_scalar<'de, D>(deserializer: D) -> Result<Option<String>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    struct ScalarVisitor;

    impl<'de> serde::de::Visitor<'de> for ScalarVisitor {
        type Value = Option<String>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a string")
        }

        fn visit_none<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_some<D: serde::Deserializer<'de>>(
            self,
            inner: D,
        ) -> Result<Self::Value, D::Error> {
            inner.deserialize_any(self)
        }

        fn visit_str<E>(self, text: &str) -> Result<Self::Value, E> {
            Ok(Some(text.to_owned()))
        }

        fn visit_i64<E>(self, number: i64) -> Result<Self::Value, E> {
            Ok(Some(number.to_string()))
        }

        fn visit_u64<E>(self, number: u64) -> Result<Self::Value, E> {
            Ok(Some(number.to_string()))
        }

        fn visit_i128<E>(self, number: i128) -> Result<Self::Value, E> {
            Ok(Some(number.to_string()))
        }

        fn visit_u128<E>(self, number: u128) -> Result<Self::Value, E> {
            Ok(Some(number.to_string()))
        }

        fn visit_f64<E>(self, number: f64) -> Result<Self::Value, E> {
            Ok(Some(number.to_string()))
        }

        fn visit_bool<E>(self, value: bool) -> Result<Self::Value, E> {
            Ok(Some(value.to_string()))
        }
    }

    deserializer.deserialize_option(ScalarVisitor)
}

/// Resolves a secret given as `KEY`, `KEY_env` or `KEY_file`. Exactly one of
/// the three may be set; `Ok(None)` means none is. Values read from a
/// variable or file lose trailing whitespace and newlines.
pub fn resolve(
    key: &str,
    value: Option<&str>,
    env: Option<&str>,
    file: Option<&Path>,
) -> Result<Option<Secret>, String> {
    let given = [value.is_some(), env.is_some(), file.is_some()];
    if given.iter().filter(|set| **set).count() > 1 {
        return Err(format!(
            "{key}: set only one of `{leaf}`, `{leaf}_env` and `{leaf}_file`",
            leaf = key.rsplit('.').next().unwrap_or(key)
        ));
    }
    if let Some(value) = value {
        return Ok(Some(Secret::new(value)));
    }
    if let Some(var) = env {
        return match std::env::var(var) {
            Ok(text) if !text.trim_end().is_empty() => Ok(Some(Secret::new(text.trim_end()))),
            Ok(_) => Err(format!(
                "{key}_env: environment variable {var} is empty; set it to the secret"
            )),
            Err(_) => Err(format!(
                "{key}_env: environment variable {var} is not set; export it or use `{}_file`",
                key.rsplit('.').next().unwrap_or(key)
            )),
        };
    }
    if let Some(path) = file {
        return match std::fs::read_to_string(path) {
            Ok(text) if !text.trim_end().is_empty() => Ok(Some(Secret::new(text.trim_end()))),
            Ok(_) => Err(format!(
                "{key}_file: {} is empty; write the secret into it",
                path.display()
            )),
            Err(err) => Err(format!(
                "{key}_file: cannot read {} ({err}); check the path and its permissions",
                path.display()
            )),
        };
    }
    Ok(None)
}

/// Shows a URL with its credential part hidden: scheme, host and the first
/// path segment stay, the rest becomes `****`.
pub fn redact_url(url: &str) -> String {
    let Ok(parsed) = reqwest::Url::parse(url) else {
        return "****".to_owned();
    };
    let host = parsed.host_str().unwrap_or("");
    let port = parsed
        .port()
        .map(|port| format!(":{port}"))
        .unwrap_or_default();
    let first = parsed
        .path_segments()
        .and_then(|mut segments| segments.next())
        .filter(|segment| !segment.is_empty());
    match first {
        Some(segment) => format!("{}://{host}{port}/{segment}/****", parsed.scheme()),
        None => format!("{}://{host}{port}/****", parsed.scheme()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_does_not_print() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret}"), "****");
        assert!(!format!("{secret:?}").contains("hunter2"));
    }

    #[test]
    fn redact_url_hides_path_and_query() {
        let shown = redact_url("https://hooks.slack.com/services/T000/B000/XXXX?x=1");
        assert_eq!(shown, "https://hooks.slack.com/services/****");
    }

    #[test]
    fn redact_url_keeps_port() {
        assert_eq!(
            redact_url("http://127.0.0.1:9000/"),
            "http://127.0.0.1:9000/****"
        );
    }

    #[test]
    fn file_secret_loses_trailing_newline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, "s3cret \n").unwrap();
        let secret = resolve("secrets[0].value", None, None, Some(&path)).unwrap();
        assert_eq!(secret.unwrap().expose(), "s3cret");
    }

    #[test]
    fn two_forms_at_once_are_rejected() {
        let err = resolve("destinations.a.url", Some("x"), Some("VAR"), None).unwrap_err();
        assert!(
            err.contains("set only one of `url`, `url_env` and `url_file`"),
            "{err}"
        );
    }
}
