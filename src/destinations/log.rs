//! The `log` destination: one line on standard output per message.

use std::io::Write;

use super::{require_text, RenderedMessage};

pub(super) fn line(message: RenderedMessage) -> Result<String, String> {
    Ok(require_text(&message.main.text)?.to_owned())
}

pub(super) fn print(line: &str) {
    let mut stdout = std::io::stdout().lock();
    // A closed stdout must not fail the delivery loop; there is nowhere else
    // to print the message.
    let _ = writeln!(stdout, "{line}");
    let _ = stdout.flush();
}
