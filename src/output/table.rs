//! Aligned text tables that fit the terminal: the last columns wrap when a line would be
//! wider than the screen (or `$COLUMNS`); piped output is never cut.

use std::io::IsTerminal;

use comfy_table::{ColumnConstraint, ContentArrangement, Table, Width, presets};

/// The width to fit: `$COLUMNS` when set, else the terminal's when stdout is one.
pub fn width() -> Option<u16> {
    if let Some(columns) = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.parse::<u16>().ok())
    {
        return Some(columns);
    }
    if !std::io::stdout().is_terminal() {
        return None;
    }
    terminal_size::terminal_size().map(|(terminal_size::Width(w), _)| w)
}

/// `header` and `rows` as columns separated by two spaces, each line ending in `\n`.
pub fn render(header: &[&str], rows: &[Vec<String>]) -> String {
    render_width(header, rows, width())
}

/// [`render`] for a given width (`None`: as wide as the content).
pub fn render_width(header: &[&str], rows: &[Vec<String>], width: Option<u16>) -> String {
    let mut table = Table::new();
    table.load_preset(presets::NOTHING);
    table.set_header(header.iter().copied());
    for row in rows {
        table.add_row(row.iter().map(String::as_str));
    }
    match width {
        Some(w) => {
            table.set_content_arrangement(ContentArrangement::Dynamic);
            table.set_width(w);
            // The first column names the row: never wrap it.
            if let Some(first) = table.column_mut(0) {
                let longest = rows
                    .iter()
                    .map(|r| r.first().map_or(0, |c| c.chars().count()))
                    .chain(header.first().map(|h| h.len()))
                    .max()
                    .unwrap_or(0);
                first.set_constraint(ColumnConstraint::LowerBoundary(Width::Fixed(
                    u16::try_from(longest).unwrap_or(u16::MAX),
                )));
            }
        }
        None => {
            table.set_content_arrangement(ContentArrangement::Disabled);
        }
    }
    for column in table.column_iter_mut() {
        column.set_padding((0, 2));
    }
    let mut out = String::new();
    for line in table.lines() {
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows() -> Vec<Vec<String>> {
        vec![
            vec!["acme".into(), "Converged".into(), "—".into()],
            vec![
                "globex-industries".into(),
                "Holding".into(),
                "outside the maintenance window; next opens 2026-12-05 02:00 UTC".into(),
            ],
        ]
    }

    #[test]
    fn columns_line_up_under_their_headers() {
        let text = render_width(&["CLIENT", "PHASE", "REASON"], &rows(), None);
        let lines: Vec<&str> = text.lines().collect();
        let phase_at = lines[0].find("PHASE").expect("header");
        assert_eq!(lines[1].find("Converged"), Some(phase_at), "{text}");
        assert_eq!(lines[2].find("Holding"), Some(phase_at), "{text}");
    }

    #[test]
    fn a_narrow_terminal_wraps_the_long_cells_instead_of_running_columns_together() {
        let text = render_width(&["CLIENT", "PHASE", "REASON"], &rows(), Some(60));
        for line in text.lines() {
            assert!(line.chars().count() <= 60, "too wide: {line:?}\n{text}");
        }
        assert!(text.contains("globex-industries"), "{text}");
        assert!(text.contains("maintenance"), "{text}");
    }
}
