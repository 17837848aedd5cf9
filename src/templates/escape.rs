//! Escaping by output: what `{{x}}` does to data depends on where the text goes.

/// The kind of text a template produces, which decides how `{{x}}` escapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Output {
    /// Slack mrkdwn: only `&`, `<` and `>` are escaped, so `<!channel>` in
    /// data cannot ping anyone.
    SlackText,
    /// A whole JSON body: data is escaped as JSON string content.
    Json,
    /// A whole Slack JSON body (Block Kit): data is escaped for Slack, then
    /// as JSON string content, so `<!channel>` in data stays harmless.
    SlackJson,
    /// An email HTML body: data is HTML-escaped.
    Html,
    /// Discord, email text and log lines: data is inserted as is.
    Raw,
}

impl Output {
    pub const ALL: [Output; 5] = [
        Output::SlackText,
        Output::Json,
        Output::SlackJson,
        Output::Html,
        Output::Raw,
    ];

    /// True for outputs that render a whole JSON body.
    pub fn is_json(self) -> bool {
        matches!(self, Output::Json | Output::SlackJson)
    }

    pub(super) fn escape_fn(self) -> fn(&str) -> String {
        match self {
            Output::SlackText => escape_slack,
            Output::Json => escape_json_string,
            Output::SlackJson => escape_slack_json_string,
            Output::Html => handlebars::html_escape,
            Output::Raw => handlebars::no_escape,
        }
    }
}

/// Escapes the three characters that Slack mrkdwn treats as control syntax.
pub fn escape_slack(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            other => escaped.push(other),
        }
    }
    escaped
}

/// Escapes text for Slack, then for the inside of a JSON string literal.
pub fn escape_slack_json_string(text: &str) -> String {
    escape_json_string(&escape_slack(text))
}

/// Escapes text for the inside of a JSON string literal.
pub fn escape_json_string(text: &str) -> String {
    let quoted = serde_json::to_string(text).expect("a string always serializes");
    quoted[1..quoted.len() - 1].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slack_escapes_only_three_characters() {
        assert_eq!(
            escape_slack("<!channel> & it's a=b \"q\""),
            "&lt;!channel&gt; &amp; it's a=b \"q\""
        );
    }

    #[test]
    fn slack_json_escape_keeps_string_valid_and_harmless() {
        let json = format!("\"{}\"", escape_slack_json_string("<!channel> \"q\""));
        let parsed: String = serde_json::from_str(&json).unwrap();
        assert_eq!(parsed, "&lt;!channel&gt; \"q\"");
    }

    #[test]
    fn json_escape_keeps_string_valid() {
        let raw = "quote \" back \\ tab \t newline \n";
        let json = format!("\"{}\"", escape_json_string(raw));
        let parsed: String = serde_json::from_str(&json).unwrap();
        assert_eq!(parsed, raw);
    }
}
