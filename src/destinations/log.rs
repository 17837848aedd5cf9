//! The `log` destination: one line on standard output per message.

use std::io::Write;

use super::{require_text, RenderedMessage};

/// Builds the line to print. Line breaks in the rendered text are written
/// as `\n`, so event data cannot forge a second message line.
pub(super) fn line(message: RenderedMessage) -> Result<String, String> {
    let text = require_text(&message.main.text)?;
    Ok(text.replace('\r', "\\r").replace('\n', "\\n"))
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
}
