//! `mmcheck litmus`: C litmus tests (files or directories, walked in sorted order) through the
//! weak-memory engine, each judged against its `Result:` line.

use crate::UsageError;
use mmcheck_explorer::memory::MemoryModel;
use mmcheck_explorer::Limits;
use mmcheck_report::litmus::LitmusReport;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// One test's limits: litmus tests are small, a test that needs more is reported incomplete.
fn test_limits(seconds_max: f64) -> Limits {
    Limits { seconds_max, states_max: 2_000_000, memory_bytes_max: 2 << 30, ..Limits::default() }
}

pub fn litmus(
    paths: &[String],
    models: &[MemoryModel],
    seconds_max: f64,
    all: bool,
    json: bool,
) -> Result<ExitCode, UsageError> {
    if paths.is_empty() {
        return Err("name at least one litmus file or directory".into());
    }
    let mut files = Vec::new();
    for path in paths {
        collect(Path::new(path), &mut files).map_err(|e| format!("{path}: {e}"))?;
    }
    let sources: Vec<(String, String)> = files
        .iter()
        .map(|file| std::fs::read_to_string(file).map(|text| (file.display().to_string(), text)))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("reading the tests: {e}"))?;
    let mut reports = Vec::new();
    for &model in models {
        // A table prints each row as its test ends: a corpus run takes minutes.
        let mut print_row = |report: &LitmusReport| {
            let row = report.tests.last().expect("a row was just added");
            if !json && (all || row.status != "agree") {
                println!("{}", LitmusReport::row(row));
            }
        };
        if !json {
            println!("{}", LitmusReport::header());
        }
        reports.push(run_all(&sources, model, &test_limits(seconds_max), &mut print_row));
    }
    if json {
        let text = match reports.as_slice() {
            [one] => serde_json::to_string_pretty(one),
            many => serde_json::to_string_pretty(many),
        };
        println!("{}", text.expect("reports serialise"));
    } else {
        for report in &reports {
            print!("{}", report.summary());
        }
    }
    let forbidden: u64 = reports.iter().map(|r| r.forbidden_shown).sum();
    Ok(if forbidden == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn run_all(
    sources: &[(String, String)],
    model: MemoryModel,
    limits: &Limits,
    on_row: &mut dyn FnMut(&LitmusReport),
) -> LitmusReport {
    let mut report = LitmusReport::new(model);
    for (file, text) in sources {
        match mmcheck_scenario::litmus::parse(text) {
            Ok(test) => report.add(file, &mmcheck_scenario::litmus::check(&test, model, limits)),
            Err(error) => report.add_unparsed(file, &format!("{file}:{error}")),
        }
        on_row(&report);
    }
    report
}

/// A file, or every `.litmus` file below a directory, sorted.
fn collect(path: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    if !path.is_dir() {
        out.push(path.to_path_buf());
        return Ok(());
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(path)?.map(|e| e.map(|e| e.path())).collect::<Result<_, _>>()?;
    entries.sort();
    for entry in entries {
        if entry.is_dir() {
            collect(&entry, out)?;
        } else if entry.extension().is_some_and(|e| e == "litmus") {
            out.push(entry);
        }
    }
    Ok(())
}
