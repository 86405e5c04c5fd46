//! Plain-text tables for the report, and the goals figures are judged against.

use std::time::Duration;

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Align {
    Left,
    Right,
}

pub struct Table {
    columns: Vec<(String, Align)>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(columns: &[(&str, Align)]) -> Self {
        Self {
            columns: columns
                .iter()
                .map(|(name, align)| ((*name).to_owned(), *align))
                .collect(),
            rows: Vec::new(),
        }
    }

    /// A row; missing trailing cells are left blank.
    pub fn row(&mut self, cells: impl IntoIterator<Item = String>) {
        self.rows.push(cells.into_iter().collect());
    }

    pub fn print(&self) {
        let width = |column: usize| {
            std::iter::once(&self.columns[column].0)
                .chain(self.rows.iter().filter_map(|row| row.get(column)))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        };
        let widths: Vec<usize> = (0..self.columns.len()).map(width).collect();
        let line = |cells: Vec<&str>| {
            let mut out = String::from("  ");
            for (column, (_, align)) in self.columns.iter().enumerate() {
                let cell = cells.get(column).copied().unwrap_or("");
                let pad = widths[column].saturating_sub(cell.chars().count());
                match align {
                    Align::Left => out.push_str(&format!("{cell}{}", " ".repeat(pad))),
                    Align::Right => out.push_str(&format!("{}{cell}", " ".repeat(pad))),
                }
                out.push_str("   ");
            }
            println!("{}", out.trim_end());
        };
        line(self.columns.iter().map(|(name, _)| name.as_str()).collect());
        for row in &self.rows {
            line(row.iter().map(String::as_str).collect());
        }
    }
}

/// A bound a figure should stay within. Printed beside the figure with its verdict, met
/// or not, so a miss is never left for the reader to work out.
#[derive(Clone, Copy)]
pub enum Goal {
    AtMost(f64),
    AtLeast(f64),
}

impl Goal {
    pub fn met(self, value: f64) -> bool {
        match self {
            Goal::AtMost(bound) => value <= bound,
            Goal::AtLeast(bound) => value >= bound,
        }
    }

    pub fn describe(self, unit: &str) -> String {
        let (sign, bound) = match self {
            Goal::AtMost(bound) => ("≤", bound),
            Goal::AtLeast(bound) => ("≥", bound),
        };
        format!("{sign} {bound}{unit}")
    }
}

pub fn verdict(met: bool) -> String {
    if met { "met" } else { "MISSED" }.to_owned()
}

pub fn millis(duration: Duration) -> String {
    format!("{:.2} ms", duration.as_secs_f64() * 1000.0)
}

pub fn ratio(value: f64) -> String {
    format!("{value:.2}")
}
