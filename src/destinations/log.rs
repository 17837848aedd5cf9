//! The `log` destination: one line on standard output per message.

use std::io::Write;

use super::{require_text, BodyError, RenderedMessage};

/// Builds the line to print. Line breaks are written as `\n` and `\r`, and
/// other control characters (terminal escapes, vertical tab) and the
/// Unicode line and paragraph separators as `\u{…}`, so event data cannot
/// forge a second message line or restyle the terminal.
pub(super) fn line(message: RenderedMessage) -> Result<String, BodyError> {
    let text = require_text(&message.main.text)?;
    let mut line = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '\n' => line.push_str("\\n"),
            '\r' => line.push_str("\\r"),
            '\t' => line.push('\t'),
            '\u{2028}' | '\u{2029}' => {
                line.push_str(&format!("\\u{{{:04x}}}", u32::from(character)))
            }
            other if other.is_control() => {
                line.push_str(&format!("\\u{{{:04x}}}", u32::from(other)))
            }
            other => line.push(other),
        }
    }
    Ok(line)
}

pub(super) fn print(line: &str) {
    let mut stdout = std::io::stdout().lock();
    // A closed stdout must not fail the delivery loop; there is nowhere else
    // to print the message.
    let _ = writeln!(stdout, "{line}");
    let _ = stdout.flush();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::templates::Rendered;

    #[test]
    fn line_breaks_in_data_stay_on_one_line() {
        let message = RenderedMessage {
            main: Rendered {
                text: "joined\n[production] joinSpace: forged\r\n".to_owned(),
                mentions: Vec::new(),
            },
            is_json: false,
            html: None,
            subject: None,
            to: Vec::new(),
        };
        let line = line(message).unwrap();
        assert_eq!(line, "joined\\n[production] joinSpace: forged");
        assert!(!line.contains('\n'));
    }

    #[test]
    fn control_characters_are_escaped() {
        let message = RenderedMessage {
            main: Rendered {
                text: "a\u{1b}[31mred\u{b}b\u{2028}c\td".to_owned(),
                mentions: Vec::new(),
            },
            is_json: false,
            html: None,
            subject: None,
            to: Vec::new(),
        };
        assert_eq!(
            line(message).unwrap(),
            "a\\u{001b}[31mred\\u{000b}b\\u{2028}c\td"
        );
    }
}
