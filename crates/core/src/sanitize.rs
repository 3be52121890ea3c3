//! Text from the database, plans.toml or a server (customer names, plan names, Stripe error
//! messages) is shown, never obeyed: control characters and escape sequences become visible
//! `\x1b`-style text, and characters that reorder or hide text (Unicode's bidi controls and
//! default-ignorable code points: zero-width, soft hyphen, variation selectors, Hangul
//! fillers, tags) are shown as their code point. The same character rule refuses such
//! characters in ids, so no id can render exactly like another.

use std::borrow::Cow;
use std::sync::LazyLock;

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
/// line and paragraph separators, and Unicode's Bidi_Control and Default_Ignorable_Code_Point
/// characters (by the Unicode tables, not a list of our own).
pub fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{2028}' | '\u{2029}')
        || HIDDEN
            .binary_search_by(|&(start, end)| {
                if end < c {
                    std::cmp::Ordering::Less
                } else if start > c {
                    std::cmp::Ordering::Greater
                } else {
                    std::cmp::Ordering::Equal
                }
            })
            .is_ok()
}

/// The code points of Bidi_Control and Default_Ignorable_Code_Point, as sorted ranges. The
/// tables are regex-syntax's (Unicode's own data, kept current by the Rust project), read
/// once through a character class.
static HIDDEN: LazyLock<Vec<(char, char)>> = LazyLock::new(|| {
    let class = regex_syntax::parse(r"[\p{Default_Ignorable_Code_Point}\p{Bidi_Control}]");
    match class.as_ref().map(regex_syntax::hir::Hir::kind) {
        Ok(regex_syntax::hir::HirKind::Class(regex_syntax::hir::Class::Unicode(class))) => class
            .ranges()
            .iter()
            .map(|range| (range.start(), range.end()))
            .collect(),
        // The pattern is a constant the unit tests parse: this cannot happen.
        _ => Vec::new(),
    }
});

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
    fn every_invisible_or_reordering_character_is_shown_as_its_code_point() {
        for c in [
            '\u{00ad}',
            '\u{034f}',
            '\u{061c}',
            '\u{115f}',
            '\u{1160}',
            '\u{3164}',
            '\u{ffa0}',
            '\u{180e}',
            '\u{200b}',
            '\u{200d}',
            '\u{200e}',
            '\u{202e}',
            '\u{2028}',
            '\u{2060}',
            '\u{2066}',
            '\u{206a}',
            '\u{206f}',
            '\u{fe00}',
            '\u{fe0f}',
            '\u{feff}',
            '\u{e0000}',
            '\u{e0041}',
            '\u{e007f}',
            '\u{e01ef}',
        ] {
            assert!(super::is_unsafe(c), "U+{:04X}", u32::from(c));
            let shown = sanitize(&format!("ac{c}me")).into_owned();
            assert!(
                !shown.contains(c) && shown.starts_with("ac\\") && shown.ends_with("me"),
                "{shown}"
            );
        }
        for c in ['a', 'é', '日', '\u{301}', '-', '\u{2010}', ' ', '😀'] {
            assert!(!super::is_unsafe(c), "U+{:04X}", u32::from(c));
        }
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
