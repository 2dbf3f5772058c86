//! ANSI colour codes in job logs to escaped HTML.
//!
//! Written here rather than taken from a crate because the crates that do this
//! emit `style="color: ..."` attributes, which the UI's Content-Security-Policy
//! (`style-src 'self'`, no `'unsafe-inline'`) blocks. This emits classes
//! (`a-fg1`, `a-bg4`, `a-b`...) that `app.css` colours instead.
//!
//! A log line is untrusted text: it is split into pieces by the one tokenizer
//! every printer uses ([`airlock_pipeline::terminal::pieces`]), so escape
//! sequences other than colours (cursor movement, window titles, hyperlinks)
//! and other control characters are dropped exactly as on a terminal; every
//! remaining character is HTML-escaped. Each line starts from the default
//! style, so a line renders the same live and on reload.

use std::fmt::Write;

use airlock_pipeline::terminal::Piece;

/// Colours and attributes in effect.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Style {
    fg: Option<u8>,
    bg: Option<u8>,
    bold: bool,
    dim: bool,
    italic: bool,
    underline: bool,
}

impl Style {
    fn classes(&self) -> String {
        let mut out = Vec::new();
        if let Some(c) = self.fg {
            out.push(format!("a-fg{c}"));
        }
        if let Some(c) = self.bg {
            out.push(format!("a-bg{c}"));
        }
        for (on, class) in [
            (self.bold, "a-b"),
            (self.dim, "a-d"),
            (self.italic, "a-i"),
            (self.underline, "a-u"),
        ] {
            if on {
                out.push(class.to_string());
            }
        }
        out.join(" ")
    }

    /// Applies one SGR sequence (`ESC [ params m`).
    fn apply(&mut self, params: &str) {
        let codes: Vec<u32> = params
            .split([';', ':'])
            .map(|p| p.parse().unwrap_or(0))
            .collect();
        let mut i = 0;
        while i < codes.len() {
            let code = codes[i];
            match code {
                0 => *self = Style::default(),
                1 => self.bold = true,
                2 => self.dim = true,
                3 => self.italic = true,
                4 => self.underline = true,
                22 => (self.bold, self.dim) = (false, false),
                23 => self.italic = false,
                24 => self.underline = false,
                30..=37 => self.fg = Some((code - 30) as u8),
                39 => self.fg = None,
                40..=47 => self.bg = Some((code - 40) as u8),
                49 => self.bg = None,
                90..=97 => self.fg = Some((code - 90 + 8) as u8),
                100..=107 => self.bg = Some((code - 100 + 8) as u8),
                38 | 48 => {
                    let (colour, used) = extended_colour(&codes[i + 1..]);
                    if code == 38 {
                        self.fg = colour;
                    } else {
                        self.bg = colour;
                    }
                    i += used;
                }
                _ => {}
            }
            i += 1;
        }
    }
}

/// `5;n` (256 colours) or `2;r;g;b` (true colour) mapped to the nearest of the
/// 16 classes; returns the colour and how many parameters it used.
fn extended_colour(rest: &[u32]) -> (Option<u8>, usize) {
    match rest {
        [5, n, ..] => (Some(from_256(*n)), 2),
        [2, r, g, b, ..] => (Some(nearest_16(*r, *g, *b)), 4),
        _ => (None, rest.len()),
    }
}

fn from_256(n: u32) -> u8 {
    match n {
        0..=15 => n as u8,
        16..=231 => {
            let n = n - 16;
            let level = |v: u32| if v == 0 { 0 } else { 55 + v * 40 };
            nearest_16(level(n / 36), level((n / 6) % 6), level(n % 6))
        }
        _ => {
            let grey = 8 + (n.min(255) - 232) * 10;
            nearest_16(grey, grey, grey)
        }
    }
}

/// The xterm default palette, which `app.css` follows.
const PALETTE: [(u32, u32, u32); 16] = [
    (0, 0, 0),
    (205, 0, 0),
    (0, 205, 0),
    (205, 205, 0),
    (0, 0, 238),
    (205, 0, 205),
    (0, 205, 205),
    (229, 229, 229),
    (127, 127, 127),
    (255, 0, 0),
    (0, 255, 0),
    (255, 255, 0),
    (92, 92, 255),
    (255, 0, 255),
    (0, 255, 255),
    (255, 255, 255),
];

fn nearest_16(r: u32, g: u32, b: u32) -> u8 {
    let distance = |(pr, pg, pb): (u32, u32, u32)| {
        let d = |a: u32, b: u32| (i64::from(a.min(255)) - i64::from(b)).pow(2);
        d(r, pr) + d(g, pg) + d(b, pb)
    };
    (0..16u8)
        .min_by_key(|&i| distance(PALETTE[usize::from(i)]))
        .unwrap_or(7)
}

/// Appends `text` HTML-escaped (also quotes, so it is safe in attributes too).
pub fn escape_into(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

/// One log line as HTML: escaped text, colours as `<span class>`.
pub fn line_to_html(line: &str) -> String {
    let line = airlock_pipeline::terminal::after_carriage_returns(line);

    let mut out = String::with_capacity(line.len() + 16);
    let mut style = Style::default();
    let mut run = String::new();
    let flush = |out: &mut String, run: &mut String, style: &Style| {
        if run.is_empty() {
            return;
        }
        if *style == Style::default() {
            escape_into(out, run);
        } else {
            let _ = write!(out, "<span class=\"{}\">", style.classes());
            escape_into(out, run);
            out.push_str("</span>");
        }
        run.clear();
    };
    for piece in airlock_pipeline::terminal::pieces(line) {
        match piece {
            Piece::Sgr(params) => {
                let mut next = style;
                next.apply(params);
                if next != style {
                    flush(&mut out, &mut run, &style);
                    style = next;
                }
            }
            Piece::Char(c) => run.push(c),
        }
    }
    flush(&mut out, &mut run, &style);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colours_become_classes() {
        assert_eq!(
            line_to_html("\x1b[32mok\x1b[0m done"),
            "<span class=\"a-fg2\">ok</span> done"
        );
        assert_eq!(
            line_to_html("\x1b[1;31mE\x1b[22m!"),
            "<span class=\"a-fg1 a-b\">E</span><span class=\"a-fg1\">!</span>"
        );
        assert_eq!(
            line_to_html("\x1b[38;5;196mred"),
            "<span class=\"a-fg9\">red</span>"
        );
        assert_eq!(
            line_to_html("\x1b[38;2;0;0;0;48;5;15mx"),
            "<span class=\"a-fg0 a-bg15\">x</span>"
        );
        assert_eq!(
            line_to_html("\x1b[95;4mpink"),
            "<span class=\"a-fg13 a-u\">pink</span>"
        );
    }

    #[test]
    fn markup_and_other_sequences_are_inert() {
        assert_eq!(
            line_to_html("<script>alert('x')</script> & \"q\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"
        );
        let hostile = "\x1b[31m<img src=x onerror=alert(1)>\x1b]8;;javascript:alert(1)\x07link\x1b]8;;\x1b\\\x1b[2K\x00\x08";
        assert_eq!(
            line_to_html(hostile),
            "<span class=\"a-fg1\">&lt;img src=x onerror=alert(1)&gt;link</span>"
        );
        // A sequence cut off at the end of the line and garbage parameters.
        assert_eq!(line_to_html("a\x1b["), "a");
        assert_eq!(line_to_html("\x1b[99999;;99999999999m b"), " b");
        // A letter ends a CSI sequence, as in a terminal.
        assert_eq!(line_to_html("\x1b[1xm b"), "m b");
        assert_eq!(line_to_html("\x1b[38;5m"), "");
    }

    #[test]
    fn carriage_returns_show_the_last_overwrite() {
        assert_eq!(line_to_html("10%\r50%\r100%"), "100%");
        assert_eq!(line_to_html("dos line\r"), "dos line");
    }
}
