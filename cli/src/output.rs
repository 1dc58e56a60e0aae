//! Human output: aligned columns, short hashes, colour only on a terminal (and never with
//! `NO_COLOR`). `--json` output bypasses all of this and prints the API's bodies as they are.

use std::io::IsTerminal;

/// Hex characters of a short hash (unique prefixes need at least 8).
pub const SHORT_HASH_LEN: usize = 12;

#[derive(Debug, Clone, Copy)]
pub struct Style {
    colour: bool,
}

impl Style {
    pub fn detect() -> Style {
        Style {
            colour: std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
        }
    }

    fn paint(&self, code: &str, text: &str) -> String {
        if self.colour {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }

    pub fn hash(&self, h: &str) -> String {
        self.paint("33", short(h))
    }

    /// A hash in full (where a command shows one commit).
    pub fn hash_full(&self, h: &str) -> String {
        self.paint("33", h)
    }

    pub fn good(&self, text: &str) -> String {
        self.paint("32", text)
    }

    pub fn bad(&self, text: &str) -> String {
        self.paint("31", text)
    }

    pub fn bold(&self, text: &str) -> String {
        self.paint("1", text)
    }
}

pub fn short(h: &str) -> &str {
    h.get(..SHORT_HASH_LEN).unwrap_or(h)
}

/// Prints rows with each column padded to its widest cell (colour codes do not count).
pub fn table(rows: &[Vec<String>]) {
    for line in table_lines(rows) {
        println!("{line}");
    }
}

/// The lines `table` prints.
pub fn table_lines(rows: &[Vec<String>]) -> Vec<String> {
    let mut lines = Vec::with_capacity(rows.len());
    let mut widths: Vec<usize> = Vec::new();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            let w = visible_width(cell);
            if widths.len() <= i {
                widths.push(w);
            } else {
                widths[i] = widths[i].max(w);
            }
        }
    }
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            line.push_str(cell);
            if i + 1 < row.len() {
                let pad = widths[i] - visible_width(cell) + 2;
                line.push_str(&" ".repeat(pad));
            }
        }
        lines.push(line.trim_end().to_owned());
    }
    lines
}

fn visible_width(text: &str) -> usize {
    let mut width = 0;
    let mut in_escape = false;
    for c in text.chars() {
        match (in_escape, c) {
            (false, '\x1b') => in_escape = true,
            (true, 'm') => in_escape = false,
            (true, _) => {}
            (false, _) => width += 1,
        }
    }
    width
}

/// The first line of a commit message.
pub fn subject(message: &str) -> &str {
    message.lines().next().unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_codes_do_not_count_towards_column_width() {
        assert_eq!(visible_width("\x1b[33mabc\x1b[0m"), 3);
        assert_eq!(visible_width("abc"), 3);
        assert_eq!(short("0123456789abcdef"), "0123456789ab");
        assert_eq!(short("abc"), "abc");
    }
}
