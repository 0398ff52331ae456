//! Summaries: the median of each figure over the runs, a table per workload with one column
//! group per target, and ratios of targets' medians (`--ratio A/B`; the first target over the
//! second by default).

use std::fmt::Write as _;

use weft_bench::stats::median;

use crate::runner::RunResult;
use crate::workload::Workload;

/// The runs of one workload against one target.
pub struct Cell<'a> {
    pub runs: Vec<&'a RunResult>,
}

impl Cell<'_> {
    pub fn throughput(&self) -> Option<f64> {
        median(
            self.runs
                .iter()
                .filter(|r| r.fatal.is_none())
                .map(|r| r.throughput())
                .collect(),
        )
    }

    pub fn p(&self, q: f64) -> Option<f64> {
        median(
            self.runs
                .iter()
                .filter_map(|r| r.percentile_ms(q))
                .collect(),
        )
    }

    pub fn errors(&self) -> u64 {
        self.runs.iter().map(|r| r.error_count()).sum()
    }

    pub fn each_throughput(&self) -> String {
        let v: Vec<String> = self
            .runs
            .iter()
            .map(|r| match r.fatal {
                Some(_) => "failed".to_string(),
                None => format!("{:.0}", r.throughput()),
            })
            .collect();
        v.join(" / ")
    }
}

fn num(x: Option<f64>, decimals: usize) -> String {
    match x {
        Some(x) => format!("{x:.decimals$}"),
        None => "-".to_string(),
    }
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
        _ => "-".to_string(),
    }
}

/// `cells[w][t]` holds the runs of workload `w` against target `t`; `ratios` are pairs of
/// target indices (numerator, denominator).
pub fn text_table(
    targets: &[String],
    workloads: &[Workload],
    cells: &[Vec<Cell<'_>>],
    ratios: &[(usize, usize)],
) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<13} {:<10} {:>10} {:>9} {:>9} {:>7}  runs (ops/s)",
        "workload", "target", "ops/s", "p50 ms", "p99 ms", "errors"
    );
    for (w, row) in workloads.iter().zip(cells) {
        for (t, cell) in targets.iter().zip(row) {
            let _ = writeln!(
                s,
                "{:<13} {:<10} {:>10} {:>9} {:>9} {:>7}  {}",
                w.name(),
                t,
                num(cell.throughput(), 0),
                num(cell.p(0.5), 3),
                num(cell.p(0.99), 3),
                cell.errors(),
                cell.each_throughput()
            );
        }
        for &(i, j) in ratios {
            let (a, b) = (&row[i], &row[j]);
            let _ = writeln!(
                s,
                "{:<13} {:<10} {:>10} {:>9} {:>9}",
                w.name(),
                format!("{}/{}", short(&targets[i]), short(&targets[j])),
                ratio(a.throughput(), b.throughput()),
                ratio(a.p(0.5), b.p(0.5)),
                ratio(a.p(0.99), b.p(0.99)),
            );
        }
    }
    s
}

fn short(t: &str) -> &str {
    match t {
        "postgres" => "pg",
        _ => t,
    }
}

/// The same figures as a Markdown table, one row per workload, the targets side by side.
pub fn markdown_table(
    targets: &[String],
    workloads: &[Workload],
    cells: &[Vec<Cell<'_>>],
    ratios: &[(usize, usize)],
) -> String {
    let mut s = String::new();
    let mut header = String::from("| workload |");
    let mut rule = String::from("| --- |");
    for t in targets {
        let _ = write!(header, " {t} ops/s | {t} p50 ms | {t} p99 ms |");
        rule.push_str(" ---: | ---: | ---: |");
    }
    for &(i, j) in ratios {
        let (a, b) = (short(&targets[i]), short(&targets[j]));
        let _ = write!(header, " {a}/{b} ops/s | {a}/{b} p50 | {a}/{b} p99 |");
        rule.push_str(" ---: | ---: | ---: |");
    }
    let _ = writeln!(s, "{header}\n{rule}");
    for (w, row) in workloads.iter().zip(cells) {
        let _ = write!(s, "| {} |", w.name());
        for cell in row {
            let _ = write!(
                s,
                " {} | {} | {} |",
                num(cell.throughput(), 0),
                num(cell.p(0.5), 2),
                num(cell.p(0.99), 2)
            );
        }
        for &(i, j) in ratios {
            let (a, b) = (&row[i], &row[j]);
            let _ = write!(
                s,
                " {} | {} | {} |",
                ratio(a.throughput(), b.throughput()),
                ratio(a.p(0.5), b.p(0.5)),
                ratio(a.p(0.99), b.p(0.99))
            );
        }
        s.push('\n');
    }
    s
}
