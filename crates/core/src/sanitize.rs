//! Text from the database, plans.toml or a server (customer names, plan names, Stripe error
//! messages) is shown, never obeyed: control characters and escape sequences become visible
//! `\x1b`-style text, and characters that reorder or hide text (bidi controls, zero-width)
//! are shown as their code point. The same character rule refuses such characters in ids.

use std::borrow::Cow;

/// `text` made safe to put on a terminal, on one line.
pub fn sanitize(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_unsafe) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if is_unsafe(c) {
            match u32::from(c) {
                n @ 0..=0xff => out.push_str(&format!("\\x{n:02x}")),
                n => out.push_str(&format!("\\u{{{n:04x}}}")),
            }
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// `text` made safe line by line: for multi-line messages (errors) whose line breaks are ours.
pub fn sanitize_lines(text: &str) -> String {
    text.split('\n')
        .map(sanitize)
        .collect::<Vec<_>>()
        .join("\n")
}

/// A CSV text cell a spreadsheet will not run (OWASP's CSV injection rule): text starting
/// with `=`, `+`, `-`, `@`, a tab or a carriage return gets a leading `'`, which spreadsheets
/// take as "this is text". Only for text cells: meterline's own numbers are never touched.
pub fn spreadsheet_safe(text: &str) -> Cow<'_, str> {
    if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        Cow::Owned(format!("'{text}"))
    } else {
        Cow::Borrowed(text)
    }
}

/// A character a terminal would obey or that would hide or reorder text: control characters,
/// bidi controls and zero-width characters.
pub fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{200b}'..='\u{200f}'   // zero-width, LRM/RLM
            | '\u{2028}'..='\u{202e}' // line/paragraph separators, bidi embeddings
            | '\u{2060}'..='\u{2069}' // word joiner, bidi isolates
            | '\u{feff}')
}

#[cfg(test)]
mod tests {
    use super::{sanitize, sanitize_lines, spreadsheet_safe};

    #[test]
    fn plain_text_is_untouched() {
        assert!(matches!(
            sanitize("Gekko & Co — Zürich 日本"),
            std::borrow::Cow::Borrowed(_)
        ));
    }

    #[test]
    fn escape_sequences_and_controls_become_visible_text() {
        assert_eq!(sanitize("\x1b[31mEvil\x1b[0m"), "\\x1b[31mEvil\\x1b[0m");
        assert_eq!(sanitize("a\nb\rc\td\x07"), "a\\x0ab\\x0dc\\x09d\\x07");
        assert_eq!(sanitize("x\u{9b}2J"), "x\\x9b2J");
        assert_eq!(sanitize("abc\u{202e}fed"), "abc\\u{202e}fed");
        assert!(!sanitize("\x1b]52;c;aGk=\x07").contains('\x1b'));
        assert_eq!(sanitize("a\u{200b}b\u{2066}c"), "a\\u{200b}b\\u{2066}c");
    }

    #[test]
    fn line_breaks_survive_line_by_line() {
        assert_eq!(sanitize_lines("one\x1b[2J\ntwo"), "one\\x1b[2J\ntwo");
    }

    #[test]
    fn formula_text_gets_a_leading_quote_and_other_text_stays() {
        for text in ["=1+1", "+cmd", "-2+3", "@SUM(1)", "\tx", "\rx"] {
            assert_eq!(spreadsheet_safe(text), format!("'{text}"));
        }
        for text in ["acme", "", "1=1", "'=x", "2026-11-27T18:00:00Z", " =x"] {
            assert!(matches!(
                spreadsheet_safe(text),
                std::borrow::Cow::Borrowed(t) if t == text
            ));
        }
    }
}
