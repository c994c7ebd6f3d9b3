//! Human-readable output: the trace, a check's summary, and the suite table.

use crate::check::{CheckReport, TraceStep};
use std::fmt::Write;

/// The trace reads like kernel code: step, thread, function: label, what changed.
pub fn trace(steps: &[TraceStep]) -> String {
    let width = steps.iter().map(|s| s.thread.len()).max().unwrap_or(6);
    let mut out = String::new();
    for step in steps {
        let what = format!("{}: {}", step.function, step.label);
        if step.detail.is_empty() {
            writeln!(out, "{:>5}  {:<width$}  {what}", step.step, step.thread).expect("string write");
        } else {
            writeln!(out, "{:>5}  {:<width$}  {what:<44} {}", step.step, step.thread, step.detail)
                .expect("string write");
        }
    }
    out
}

/// `labels    N reached in F functions; never reached there: ...`, the first few unreached.
fn coverage_line(coverage: &crate::check::Coverage) -> String {
    const SHOWN: usize = 6;
    let functions =
        coverage.reached.iter().filter_map(|l| l.split(':').next()).collect::<std::collections::BTreeSet<_>>();
    let mut line = format!("labels    {} reached in {} functions", coverage.reached.len(), functions.len());
    match coverage.unreached.len() {
        0 => line.push_str("; every label of those functions reached"),
        n => {
            let shown: Vec<&str> = coverage.unreached.iter().take(SHOWN).map(String::as_str).collect();
            let more = if n > SHOWN { format!(" (+{} more; --json lists them)", n - SHOWN) } else { String::new() };
            line.push_str(&format!("; never reached there: {}{more}", shown.join(", ")));
        }
    }
    line.push('\n');
    line
}

pub fn summary(report: &CheckReport) -> String {
    let mut out = String::new();
    writeln!(out, "scenario  {}", report.scenario).expect("string write");
    writeln!(out, "kernel    {}", report.kernel).expect("string write");
    writeln!(out, "verdict   {} ({})", report.verdict, report.verdict_detail).expect("string write");
    if let Some(expected) = &report.expected {
        let mark = match report.matches_expectation {
            Some(true) => "as expected",
            _ => "NOT as expected",
        };
        writeln!(out, "expected  {expected} ({mark})").expect("string write");
    }
    let stored = match report.states_stored == report.states {
        true => String::new(),
        false => format!(" ({} stored)", report.states_stored),
    };
    writeln!(
        out,
        "covered   {} states{stored}, {} transitions, depth {}, {} ms, ~{} MiB",
        report.states,
        report.transitions,
        report.depth_max,
        report.elapsed_ms,
        report.memory_bytes_peak >> 20
    )
    .expect("string write");
    if !report.coverage.reached.is_empty() {
        out.push_str(&coverage_line(&report.coverage));
    }
    if let Some(violation) = &report.violation {
        writeln!(out, "\ntrace ({} steps):", report.trace.last().map_or(0, |s| s.step)).expect("string write");
        out.push_str(&trace(&report.trace));
        writeln!(out, "\n{}: {}", violation.kind, violation.message).expect("string write");
        for line in &violation.dump {
            writeln!(out, "  {line}").expect("string write");
        }
    }
    if let Some(token) = &report.replay {
        writeln!(out, "\nreplay: mmcheck replay '{token}'").expect("string write");
    }
    out
}

/// One row of the suite table.
pub struct SuiteRow {
    pub scenario: String,
    pub kernel: String,
    pub expected: String,
    pub got: String,
    pub states: u64,
    pub elapsed_ms: u64,
    pub ok: bool,
}

pub fn table(rows: &[SuiteRow]) -> String {
    let mut out = String::new();
    let name_width = rows.iter().map(|r| r.scenario.len()).max().unwrap_or(8).max(8);
    let got_width = rows.iter().map(|r| r.got.len()).max().unwrap_or(3).max(24);
    let kernel_width = rows.iter().map(|r| r.kernel.len()).max().unwrap_or(6).max(6);
    writeln!(
        out,
        "{:<name_width$}  {:<kernel_width$}  {:<24}  {:<got_width$}  {:>10}  {:>9}",
        "scenario", "kernel", "expected", "got", "states", "time"
    )
    .expect("string write");
    for row in rows {
        writeln!(
            out,
            "{:<name_width$}  {:<kernel_width$}  {:<24}  {:<got_width$}  {:>10}  {:>7}ms{}",
            row.scenario,
            row.kernel,
            row.expected,
            row.got,
            row.states,
            row.elapsed_ms,
            if row.ok { "" } else { "  MISMATCH" }
        )
        .expect("string write");
    }
    let failed = rows.iter().filter(|r| !r.ok).count();
    writeln!(out, "\n{} passed, {} failed", rows.len() - failed, failed).expect("string write");
    out
}
