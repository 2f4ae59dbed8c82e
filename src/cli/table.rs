//! Tables for the terminal: column widths come from the values, numbers
//! are right-aligned under their headers, text left-aligned.

/// How a column's values line up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    Left,
    Right,
}

/// Renders `rows` under `headers`, two spaces between columns, no
/// trailing spaces.
pub fn render(headers: &[(&str, Align)], rows: &[Vec<String>]) -> String {
    let width = |text: &str| text.chars().count();
    let widths: Vec<usize> = headers
        .iter()
        .enumerate()
        .map(|(i, (header, _))| {
            rows.iter()
                .filter_map(|row| row.get(i))
                .map(|cell| width(cell))
                .chain(std::iter::once(width(header)))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, ((cell, (_, align)), column)) in cells.iter().zip(headers).zip(&widths).enumerate()
        {
            if i > 0 {
                out.push_str("  ");
            }
            let pad = " ".repeat(column.saturating_sub(width(cell)));
            match align {
                Align::Left => {
                    out.push_str(cell);
                    out.push_str(&pad);
                }
                Align::Right => {
                    out.push_str(&pad);
                    out.push_str(cell);
                }
            }
        }
        out.trim_end().to_owned()
    };
    let mut out = line(headers.iter().map(|(h, _)| *h).collect());
    out.push('\n');
    for row in rows {
        let cells: Vec<&str> = (0..headers.len())
            .map(|i| row.get(i).map_or("", String::as_str))
            .collect();
        out.push_str(&line(cells));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_as_wide_as_their_widest_value() {
        let table = render(
            &[
                ("function", Align::Left),
                ("invoked", Align::Right),
                ("p99 µs", Align::Right),
            ],
            &[
                vec![
                    "a_very_long_function_name".into(),
                    "7".into(),
                    "1234567".into(),
                ],
                vec!["f".into(), "123456789".into(), "5".into()],
            ],
        );
        assert_eq!(
            table,
            "function                     invoked   p99 µs\n\
             a_very_long_function_name          7  1234567\n\
             f                          123456789        5\n"
        );
    }
}
