//! Checks of one destination's fields against its kind.

use super::secret::Secret;
use super::validate::Problems;
use super::{DestinationConfig, DestinationKind};

/// Slowest accepted rate: one message an hour.
const MIN_RATE_PER_SECOND: f64 = 1.0 / 3600.0;

/// State of a destination's URL after secret resolution.
pub(super) enum UrlState<'a> {
    Read(&'a Secret),
    /// Given as `url_env` or `url_file`, but that could not be read.
    Unreadable,
    Missing,
}

/// Checks the fields of one destination against its kind.
pub(super) fn check_destination_fields(
    prefix: &str,
    destination: &DestinationConfig,
    url: UrlState<'_>,
    token: Option<&Secret>,
    problems: &mut Problems,
) {
    check_url(prefix, destination.kind, url, problems);
    check_fields_apply(prefix, destination, token.is_some(), problems);
    if destination.kind == DestinationKind::Email {
        check_email(prefix, destination, problems);
    }
    check_discord(prefix, destination, problems);
    check_flow_control(prefix, destination, problems);
}

fn check_url(prefix: &str, kind: DestinationKind, url: UrlState<'_>, problems: &mut Problems) {
    let needs_url = kind != DestinationKind::Log;
    match (needs_url, url) {
        (true, UrlState::Missing) => problems.push(format!(
            "{prefix}: a {kind} destination needs `url`, `url_env` or `url_file`"
        )),
        (true, UrlState::Read(url)) => {
            let parsed = reqwest::Url::parse(url.expose());
            let scheme_ok = matches!(&parsed, Ok(url) if matches!(url.scheme(), "http" | "https"));
            if !scheme_ok {
                problems.push(format!(
                    "{prefix}.url is not an http(s) URL; give the full webhook URL starting with https://"
                ));
            }
        }
        (false, UrlState::Read(_) | UrlState::Unreadable) => problems.push(format!(
            "{prefix}.url: a log destination sends nothing over HTTP; remove the URL"
        )),
        (true, UrlState::Unreadable) | (false, UrlState::Missing) => {}
    }
}

/// Rejects fields that the destination's kind does not use.
fn check_fields_apply(
    prefix: &str,
    destination: &DestinationConfig,
    has_token: bool,
    problems: &mut Problems,
) {
    let fields = [
        ("token", has_token, DestinationKind::Email),
        ("from", destination.from.is_some(), DestinationKind::Email),
        ("to", destination.to.is_some(), DestinationKind::Email),
        (
            "subject",
            destination.subject.is_some(),
            DestinationKind::Email,
        ),
        (
            "username",
            destination.username.is_some(),
            DestinationKind::Discord,
        ),
        (
            "avatar_url",
            destination.avatar_url.is_some(),
            DestinationKind::Discord,
        ),
    ];
    for (field, set, allowed) in fields {
        if set && destination.kind != allowed {
            problems.push(format!(
                "{prefix}.{field} applies only to {allowed} destinations; remove it"
            ));
        }
    }
}

fn check_email(prefix: &str, destination: &DestinationConfig, problems: &mut Problems) {
    if destination
        .from
        .as_deref()
        .is_none_or(|from| !from.contains('@'))
    {
        problems.push(format!(
            "{prefix}.from is missing or has no address; set it like \"Pencil Bridge <noreply@example.org>\""
        ));
    }
    if destination.to.as_ref().is_none_or(|to| to.is_empty()) {
        problems.push(format!(
            "{prefix}.to is missing; list at least one recipient address or template"
        ));
    }
    if destination
        .subject
        .as_deref()
        .is_none_or(|subject| subject.trim().is_empty())
    {
        problems.push(format!(
            "{prefix}.subject is missing; set a subject template"
        ));
    }
}

fn check_discord(prefix: &str, destination: &DestinationConfig, problems: &mut Problems) {
    if let Some(username) = &destination.username {
        if let Some(reason) = discord_username_problem(username) {
            problems.push(format!("{prefix}.username {username:?} {reason}"));
        }
    }
    if let Some(avatar) = &destination.avatar_url {
        if avatar.chars().count() > 2048 || !avatar.starts_with("http") {
            problems.push(format!(
                "{prefix}.avatar_url must be an http(s) URL of at most 2,048 characters"
            ));
        }
    }
}

fn check_flow_control(prefix: &str, destination: &DestinationConfig, problems: &mut Problems) {
    if let Some(rate) = destination.rate_per_second {
        if !(rate.is_finite() && rate >= MIN_RATE_PER_SECOND) {
            problems.push(format!(
                "{prefix}.rate_per_second is {rate}; use a number of at least {MIN_RATE_PER_SECOND} (one message an hour), such as 1.0"
            ));
        }
    }
    if destination.burst == Some(0) {
        problems.push(format!("{prefix}.burst is 0; use 1 or more"));
    }
    if destination.concurrency == Some(0) {
        problems.push(format!("{prefix}.concurrency is 0; use 1 or more"));
    }
}

/// Discord rejects webhook usernames that break these rules with error 50035.
fn discord_username_problem(username: &str) -> Option<&'static str> {
    let length = username.chars().count();
    let lower = username.to_lowercase();
    if !(1..=80).contains(&length) {
        return Some("must be 1 to 80 characters long");
    }
    if lower.contains("clyde") || lower.contains("discord") {
        return Some("must not contain \"clyde\" or \"discord\"");
    }
    if ["@", "#", ":", "```"]
        .iter()
        .any(|bad| username.contains(bad))
    {
        return Some("must not contain @, #, : or ```");
    }
    if lower == "everyone" || lower == "here" {
        return Some("must not be \"everyone\" or \"here\"");
    }
    None
}
