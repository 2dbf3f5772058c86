//! Text that a job, a commit or a forge controls, made safe for a terminal (and for the web
//! UI, which renders the same pieces as HTML).
//!
//! A log line may carry escape sequences: colours are worth keeping, but an OSC sequence sets
//! the window title or writes the clipboard, CSI sequences move the cursor and clear the
//! screen, a carriage return or a newline in a file name forges table rows, and bidi
//! overrides reorder what a reviewer reads. Every place that prints such text goes through
//! here: [`pieces`] is the one tokenizer, [`log_line`] renders a log line (colours kept only
//! when asked), [`field`] renders a value (a path, a job name, a reason) on one line with its
//! control characters escaped visibly.

/// One piece of a line, after escape sequences have been recognised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Piece<'a> {
    /// A printable character (or a tab).
    Char(char),
    /// A colour sequence, `ESC [ params m`, with only digits and `;` in its parameters.
    Sgr(&'a str),
}

/// Whether `c` is a bidirectional formatting character (embeddings, overrides, isolates,
/// marks): invisible, and able to reorder the text around it.
pub fn is_bidi_control(c: char) -> bool {
    matches!(
        c,
        '\u{200e}' | '\u{200f}' | '\u{061c}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
    )
}

/// The pieces of `line`: printable characters and tabs, and colour sequences. Every other
/// escape sequence (CSI, OSC, DCS, SOS, PM, APC, two-byte escapes, their 8-bit C1 forms) is
/// dropped whole; other control characters and bidi controls are dropped.
pub fn pieces(line: &str) -> impl Iterator<Item = Piece<'_>> {
    Pieces { line, pos: 0 }
}

struct Pieces<'a> {
    line: &'a str,
    pos: usize,
}

impl<'a> Pieces<'a> {
    /// Skips a control string (OSC, DCS, SOS, PM, APC) up to BEL, ST (`ESC \`) or 8-bit ST.
    fn skip_string(&mut self) {
        let rest = &self.line[self.pos..];
        let mut chars = rest.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            match c {
                '\u{7}' | '\u{9c}' => {
                    self.pos += i + c.len_utf8();
                    return;
                }
                '\u{1b}' if matches!(chars.peek(), Some((_, '\\'))) => {
                    self.pos += i + 2;
                    return;
                }
                _ => {}
            }
        }
        self.pos = self.line.len();
    }

    /// Reads a CSI sequence after its introducer: parameter and intermediate bytes, then one
    /// final byte (ECMA-48). Returns the parameters when it is a plain colour sequence.
    fn csi(&mut self) -> Option<&'a str> {
        let rest = &self.line[self.pos..];
        let end = rest
            .char_indices()
            .find(|(_, c)| !('\u{20}'..='\u{3f}').contains(c))
            .map_or(rest.len(), |(i, _)| i);
        let params = &rest[..end];
        let final_byte = rest[end..].chars().next();
        match final_byte {
            Some(f) if ('\u{40}'..='\u{7e}').contains(&f) => {
                self.pos += end + 1;
                (f == 'm' && params.chars().all(|p| p.is_ascii_digit() || p == ';'))
                    .then_some(params)
            }
            // Unterminated or broken: drop what was read, keep going after it.
            _ => {
                self.pos += end;
                None
            }
        }
    }
}

impl<'a> Iterator for Pieces<'a> {
    type Item = Piece<'a>;

    fn next(&mut self) -> Option<Piece<'a>> {
        loop {
            let c = self.line[self.pos..].chars().next()?;
            self.pos += c.len_utf8();
            match c {
                '\u{1b}' => {
                    let Some(kind) = self.line[self.pos..].chars().next() else {
                        continue;
                    };
                    self.pos += kind.len_utf8();
                    match kind {
                        '[' => {
                            if let Some(params) = self.csi() {
                                return Some(Piece::Sgr(params));
                            }
                        }
                        ']' | 'P' | 'X' | '^' | '_' => self.skip_string(),
                        // Any other escape (ESC c reset, ESC 7/8, charset selection) is two
                        // bytes; charset designations take one more, dropped as text below.
                        _ => {}
                    }
                }
                '\u{9b}' => {
                    if let Some(params) = self.csi() {
                        return Some(Piece::Sgr(params));
                    }
                }
                '\u{9d}' | '\u{90}' | '\u{98}' | '\u{9e}' | '\u{9f}' => self.skip_string(),
                '\t' => return Some(Piece::Char('\t')),
                c if c.is_control() || is_bidi_control(c) => {}
                c => return Some(Piece::Char(c)),
            }
        }
    }
}

/// What a terminal shows of a line with carriage returns in it ("overwrite from the start",
/// as progress bars write): the text after the last one; a trailing one (DOS line ends) first
/// removed.
pub fn after_carriage_returns(line: &str) -> &str {
    let line = line.strip_suffix('\r').unwrap_or(line);
    line.rsplit('\r').next().unwrap_or(line)
}

/// A log line for a terminal: printable text and tabs; colour sequences only when `colours`
/// (a terminal that shows them), every other escape sequence and control character dropped.
/// Carriage returns are taken as a terminal takes them ([`after_carriage_returns`]).
pub fn log_line(line: &str, colours: bool) -> String {
    let line = after_carriage_returns(line);
    let mut out = String::with_capacity(line.len());
    let mut coloured = false;
    for piece in pieces(line) {
        match piece {
            Piece::Char(c) => out.push(c),
            Piece::Sgr(params) if colours => {
                out.push_str("\u{1b}[");
                out.push_str(params);
                out.push('m');
                coloured = true;
            }
            Piece::Sgr(_) => {}
        }
    }
    // A line never leaves its colour on for the next thing printed.
    if coloured {
        out.push_str("\u{1b}[0m");
    }
    out
}

/// A value (a path, a name, a reason) on one line: control characters, bidi controls and
/// backslashes escaped visibly (`\n`, `\x1b`, `\u{202e}`, `\\`), everything else as it is.
/// Two different values never print the same.
pub fn field(text: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x100 && c.is_control() => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if c.is_control() || is_bidi_control(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colours_are_kept_only_when_asked_and_every_other_sequence_goes() {
        let hostile = "\u{1b}[31mred\u{1b}[0m \u{1b}[2Jclear\u{1b}]0;title\u{7}\u{1b}]52;c;cHduZWQ=\u{1b}\\ \u{1b}Pdcs\u{1b}\\x\u{9b}2Jy\u{9d}8;;http://x\u{9c}z\u{1b}cdone";
        assert_eq!(
            log_line(hostile, true),
            "\u{1b}[31mred\u{1b}[0m clear xyzdone\u{1b}[0m"
        );
        assert_eq!(log_line(hostile, false), "red clear xyzdone");
        // Control: plain text passes unchanged, tabs kept.
        assert_eq!(log_line("tab\there: ok", true), "tab\there: ok");
    }

    #[test]
    fn carriage_returns_show_what_a_terminal_would() {
        assert_eq!(log_line("10%\r50%\r100%\r", false), "100%");
    }

    #[test]
    fn cursor_moves_bells_and_bidi_overrides_are_dropped() {
        assert_eq!(
            log_line("a\u{1b}[1A\u{1b}[2K\u{7}\u{8}b\u{202e}cba\u{202c}", false),
            "abcba"
        );
        // An unterminated sequence at the end of a line swallows nothing after the line.
        assert_eq!(log_line("x\u{1b}[12", false), "x");
        assert_eq!(log_line("x\u{1b}]0;never ends", false), "x");
    }

    #[test]
    fn sgr_with_other_parameters_is_not_a_colour() {
        // `ESC [ ? 25 m` is not a colour sequence (private parameter): dropped.
        assert_eq!(log_line("\u{1b}[?25mx", true), "x");
    }

    #[test]
    fn fields_escape_what_could_forge_lines_and_stay_distinct() {
        assert_eq!(
            field("dist/a\nbuild  1  ffff  dist/forged"),
            "dist/a\\nbuild  1  ffff  dist/forged"
        );
        assert_eq!(field("a\u{1b}]0;t\u{7}"), "a\\x1b]0;t\\x07");
        assert_eq!(field("x\u{202e}y\u{85}"), "x\\u{202e}y\\x85");
        // Distinct values stay distinct: a literal backslash-n is not a newline.
        assert_ne!(field("a\\nb"), field("a\nb"));
        // Control: an ordinary path is unchanged.
        assert_eq!(field("dist/greet-1.0.tar.gz"), "dist/greet-1.0.tar.gz");
    }
}
