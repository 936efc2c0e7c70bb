//! How the CLI prints: tables for people, one JSON object per line for
//! programs, and times in a readable form.
//!
//! Times follow one rule: the state of things (tasks, leases, agents, values)
//! is shown relative to now ("3s ago", "in 29s"), because that is what an
//! operator asks of it; the journal, a log read later, shows absolute RFC 3339
//! UTC times. JSON keeps the raw milliseconds since the epoch.

use std::io::{self, Write};
use std::time::{Duration, UNIX_EPOCH};

use comfy_table::{ContentArrangement, LineStyle, Row, Table, TableStyle};
use serde::Serialize;

/// How wide a table is drawn when stdout is not a terminal (a terminal's own
/// width is used when there is one).
pub const DEFAULT_WIDTH: u16 = 100;

/// Widest a free-text field (payload, body, detail) is shown in a table
/// cell before the table itself fits the rest to the width.
const CELL_WIDTH: usize = 60;

/// Where command output goes: stdout, as tables or as JSON lines.
#[derive(Debug, Clone, Copy)]
pub struct Out {
    json: bool,
    wide: bool,
}

impl Out {
    /// Output in JSON lines when `json` is set, else for people: tables fit
    /// the terminal (or [`DEFAULT_WIDTH`]) unless `wide`, which shows every
    /// field whole.
    pub fn new(json: bool, wide: bool) -> Self {
        Self { json, wide }
    }

    /// A free-text field for a table cell: on one line, and cut with "…"
    /// unless the output is wide.
    pub fn cell(&self, text: &str) -> String {
        clip(text, if self.wide { usize::MAX } else { CELL_WIDTH })
    }

    /// Whether programs (JSON lines) rather than people are reading.
    pub fn is_json(&self) -> bool {
        self.json
    }

    /// Print one line and flush it, so a reader at the other end of a pipe sees it at once.
    pub fn line(&self, text: impl std::fmt::Display) -> io::Result<()> {
        let mut out = io::stdout().lock();
        writeln!(out, "{text}")?;
        out.flush()
    }

    /// Print `value` as one line of JSON and flush it.
    pub fn json_line<T: Serialize + ?Sized>(&self, value: &T) -> io::Result<()> {
        let mut out = io::stdout().lock();
        serde_json::to_writer(&mut out, value).map_err(io::Error::other)?;
        out.write_all(b"\n")?;
        out.flush()
    }

    /// Print every item as a JSON line.
    pub fn json_lines<T: Serialize>(&self, items: &[T]) -> io::Result<()> {
        items.iter().try_for_each(|item| self.json_line(item))
    }

    /// Print a table, or `empty` when it has no rows. Unless the output is
    /// wide, the table is fitted to the terminal's width (or
    /// [`DEFAULT_WIDTH`]), and a cell that would wrap is cut to one line
    /// ending in "…".
    pub fn table(&self, table: Table, empty: &str) -> io::Result<()> {
        if table.row_count() == 0 {
            return self.line(empty);
        }
        self.line(self.render(table))
    }

    /// The text of `table` as [`Out::table`] prints it.
    fn render(&self, mut table: Table) -> String {
        if self.wide {
            table.set_content_arrangement(ContentArrangement::Disabled);
        } else {
            if table.width().is_none() {
                table.set_width(DEFAULT_WIDTH);
            }
            table.set_truncation_indicator("…");
            for row in table.row_iter_mut() {
                row.max_height(1);
            }
        }
        table.trim_fmt()
    }
}

/// A table with the given column headers in the CLI's style: a rule under the
/// header, no other lines, fitted to the terminal when there is one.
pub fn table(header: impl Into<Row>) -> Table {
    let mut table = Table::new();
    table
        .load_style(TableStyle::new().header_separator(LineStyle::none().fill('─').junction('─')))
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(header);
    table
}

/// A two-column "field, value" table for showing one record in full.
pub fn record_table(rows: Vec<(&str, String)>) -> Table {
    let mut table = Table::new();
    table
        .load_style(TableStyle::new())
        .set_content_arrangement(ContentArrangement::Dynamic);
    for (field, value) in rows {
        table.add_row([field.to_owned(), value]);
    }
    table
}

/// `at_ms` (ms since the epoch) relative to `now_ms`: "now", "3s ago", "in 29s".
pub fn relative(at_ms: u64, now_ms: u64) -> String {
    if at_ms == now_ms {
        "now".to_owned()
    } else if at_ms < now_ms {
        format!("{} ago", span(now_ms - at_ms))
    } else {
        format!("in {}", span(at_ms - now_ms))
    }
}

/// `at_ms` as an RFC 3339 UTC timestamp with milliseconds.
pub fn absolute(at_ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(at_ms)).to_string()
}

/// `at_ms` absolute and relative, for full views of one record.
pub fn both(at_ms: u64, now_ms: u64) -> String {
    format!("{} ({})", absolute(at_ms), relative(at_ms, now_ms))
}

/// A length of time in its two largest units: "450ms", "29s", "4m 12s", "3h 5m", "2d 4h".
pub fn span(ms: u64) -> String {
    const S: u64 = 1_000;
    const M: u64 = 60 * S;
    const H: u64 = 60 * M;
    const D: u64 = 24 * H;
    let two = |big: u64, big_unit: &str, small: u64, small_unit: &str| {
        if small == 0 {
            format!("{big}{big_unit}")
        } else {
            format!("{big}{big_unit} {small}{small_unit}")
        }
    };
    match ms {
        ms if ms < S => format!("{ms}ms"),
        ms if ms < M => format!("{}s", ms / S),
        ms if ms < H => two(ms / M, "m", ms % M / S, "s"),
        ms if ms < D => two(ms / H, "h", ms % H / M, "m"),
        ms => two(ms / D, "d", ms % D / H, "h"),
    }
}

/// `text` on one line and at most `max` characters, cut with "…", so a long
/// payload does not blow a table apart.
pub fn clip(text: &str, max: usize) -> String {
    let flat: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if flat.chars().count() <= max {
        flat
    } else {
        let mut cut: String = flat.chars().take(max.saturating_sub(1)).collect();
        cut.push('…');
        cut
    }
}

/// A score or strength to three decimals, or in exponent form when that would show 0.000.
pub fn number(x: f64) -> String {
    if x != 0.0 && x.abs() < 0.0005 {
        format!("{x:.2e}")
    } else {
        format!("{x:.3}")
    }
}

/// A list of ids as "1, 2, 3".
pub fn ids(ids: &[u64]) -> String {
    ids.iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_use_their_two_largest_units() {
        assert_eq!(span(450), "450ms");
        assert_eq!(span(29_400), "29s");
        assert_eq!(span(4 * 60_000 + 12_000), "4m 12s");
        assert_eq!(span(3 * 3_600_000), "3h");
        assert_eq!(span(2 * 86_400_000 + 4 * 3_600_000 + 5), "2d 4h");
    }

    #[test]
    fn relative_times_say_which_side_of_now_they_are() {
        assert_eq!(relative(10_000, 13_000), "3s ago");
        assert_eq!(relative(42_000, 13_000), "in 29s");
        assert_eq!(relative(5, 5), "now");
    }

    #[test]
    fn absolute_times_are_rfc3339_utc() {
        assert_eq!(absolute(1_500), "1970-01-01T00:00:01.500Z");
    }

    #[test]
    fn tiny_numbers_do_not_print_as_zero() {
        assert_eq!(number(2.9994), "2.999");
        assert_eq!(number(0.0), "0.000");
        assert_eq!(number(0.000_001_2), "1.20e-6");
    }

    #[test]
    fn tables_fit_the_default_width_unless_wide() {
        let long = "x".repeat(300);
        let build = |out: &Out| {
            let mut t = table(["id", "payload", "note"]);
            t.add_row([
                "1",
                &out.cell(&long),
                "a note that is long enough to matter",
            ]);
            // As when stdout is not a terminal (under an interactive `cargo
            // test` it may be one, of any width).
            t.force_no_tty();
            t
        };
        let (narrow, wide) = (Out::new(false, false), Out::new(false, true));
        // No terminal: the default width applies.
        let text = narrow.render(build(&narrow));
        assert!(
            text.lines()
                .all(|l| l.chars().count() <= DEFAULT_WIDTH as usize),
            "{text}"
        );
        assert_eq!(text.lines().count(), 3, "one line per row:\n{text}");
        assert!(text.contains('…'));

        let text = wide.render(build(&wide));
        assert!(text.contains(&long), "{text}");
        assert_eq!(text.lines().count(), 3);
    }

    #[test]
    fn clip_flattens_and_shortens() {
        assert_eq!(clip("a\nb", 10), "a b");
        assert_eq!(clip("abcdef", 4), "abc…");
        assert_eq!(clip("äöü", 3), "äöü");
    }
}
