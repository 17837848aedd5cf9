//! Cutting text to a platform's length limit without splitting a character.

use unicode_segmentation::UnicodeSegmentation;

/// Marks text that was cut.
pub const ELLIPSIS: char = '…';

/// Cuts `text` to at most `max_chars` Unicode scalar values, on a grapheme
/// cluster boundary, ending with `…` when anything was removed. A skin-toned
/// emoji or a letter with combining marks is kept whole or dropped whole.
pub fn truncate(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        return text.to_owned();
    }
    if max_chars == 0 {
        return String::new();
    }
    let budget = max_chars - 1;
    let mut kept = 0;
    let mut end = 0;
    for (offset, grapheme) in text.grapheme_indices(true) {
        let size = grapheme.chars().count();
        if kept + size > budget {
            break;
        }
        kept += size;
        end = offset + grapheme.len();
    }
    let mut cut = text[..end].trim_end().to_owned();
    cut.push(ELLIPSIS);
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_unchanged() {
        assert_eq!(truncate("hello", 5), "hello");
    }

    #[test]
    fn long_text_ends_with_ellipsis() {
        let cut = truncate(&"a".repeat(2500), 2000);
        assert_eq!(cut.chars().count(), 2000);
        assert!(cut.ends_with('…'));
    }

    #[test]
    fn skin_toned_emoji_stay_whole() {
        // Each emoji is two scalar values: the hand and the skin tone.
        let text = "👍🏽".repeat(1200);
        let cut = truncate(&text, 2000);
        assert!(cut.chars().count() <= 2000);
        let body = cut.strip_suffix('…').unwrap();
        assert_eq!(body.chars().count() % 2, 0);
        assert!(body.graphemes(true).all(|g| g == "👍🏽"));
    }

    #[test]
    fn combining_marks_stay_with_their_letter() {
        let text = "e\u{301}".repeat(10);
        let cut = truncate(&text, 6);
        assert_eq!(cut, "e\u{301}e\u{301}…");
    }
}
