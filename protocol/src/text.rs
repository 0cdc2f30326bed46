//! Untrusted text (chain commitments, dataset rows, Hub and worker messages) made safe to print
//! on a terminal or store in a log: control characters and bidirectional overrides are written
//! as escapes, so no byte from outside can move the cursor, clear the screen or reorder what an
//! operator reads (`docs/wire.md`, the README's "Threat model and limits").

use std::borrow::Cow;

/// Whether `c` must not reach a terminal as it is: C0 and C1 controls, DEL, and the Unicode
/// bidirectional embeddings, overrides and isolates (U+202A–U+202E, U+2066–U+2069).
fn unsafe_to_print(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `text` with every character unsafe to print written as `\u{..}` (or `\n`, `\t`, `\r`);
/// borrowed unchanged when there is none.
pub fn printable(text: &str) -> Cow<'_, str> {
    if !text.chars().any(unsafe_to_print) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if unsafe_to_print(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_sequences_and_bidi_overrides_are_escaped() {
        assert!(matches!(printable("org/name:1:abc"), Cow::Borrowed(_)));
        assert_eq!(
            printable("a\u{1b}]0;owned\u{7}\u{1b}[2Jb"),
            "a\\u{1b}]0;owned\\u{7}\\u{1b}[2Jb"
        );
        assert_eq!(printable("x\ny\r\t\u{7f}"), "x\\ny\\r\\t\\u{7f}");
        assert_eq!(printable("\u{9b}31m"), "\\u{9b}31m");
        assert_eq!(printable("a\u{202e}cba\u{2066}"), "a\\u{202e}cba\\u{2066}");
        assert_eq!(printable("é ü 漢字 🙂"), "é ü 漢字 🙂");
    }
}
