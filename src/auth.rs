//! Bearer authentication of Pencil's requests against the configured secrets.

use subtle::ConstantTimeEq;

use crate::config::EnvironmentSecret;

/// Finds the environment whose secret the `Authorization` header carries.
/// The scheme name is case-insensitive and may be followed by several
/// spaces. Every secret is compared, in constant time, so the answer's
/// timing does not tell which secret came close.
pub fn authenticate<'a>(header: Option<&str>, secrets: &'a [EnvironmentSecret]) -> Option<&'a str> {
    let header = header?;
    let (scheme, token) = header.trim_start().split_once([' ', '\t'])?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = token.trim_matches([' ', '\t']);
    if token.is_empty() {
        return None;
    }
    let mut found = None;
    for entry in secrets {
        if bool::from(token.as_bytes().ct_eq(entry.secret.expose().as_bytes())) {
            found = Some(entry.environment.as_str());
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    fn secrets() -> Vec<EnvironmentSecret> {
        vec![
            EnvironmentSecret {
                environment: "production".into(),
                secret: Secret::new("prod-secret"),
            },
            EnvironmentSecret {
                environment: "staging".into(),
                secret: Secret::new("stage-secret"),
            },
        ]
    }

    #[test]
    fn header_forms() {
        let secrets = secrets();
        let cases = [
            (Some("Bearer prod-secret"), Some("production")),
            (Some("bearer stage-secret"), Some("staging")),
            (Some("BEARER    prod-secret"), Some("production")),
            (Some("Bearer prod-secret  "), Some("production")),
            (Some("Bearer prod-secre"), None),
            (Some("Bearer "), None),
            (Some("Basic prod-secret"), None),
            (Some("prod-secret"), None),
            (None, None),
        ];
        for (header, expected) in cases {
            assert_eq!(authenticate(header, &secrets), expected, "{header:?}");
        }
    }
}
