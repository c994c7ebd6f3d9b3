//! The mmcheck command line: the only crate that touches argv, files, the terminal and exit
//! codes. Exit codes: 0 no violation (or the suite matched), 1 a violation (or a suite
//! mismatch), 2 a usage or scenario error.

mod litmus;

use clap::{Parser, Subcommand, ValueEnum};
use codespan_reporting::diagnostic::{Diagnostic as Report, Label};
use codespan_reporting::files::SimpleFile;
use codespan_reporting::term::{self, termcolor};
use mmcheck_explorer::{Limits, Strategy};
use mmcheck_model::{KernelConfig, KernelVersion, Patch, PATCHES};
use mmcheck_report::format::{self, SuiteRow};
use mmcheck_report::token::parse_set;
use mmcheck_report::{CheckOptions, ReplayToken};
use mmcheck_scenario::{Diagnostic, Scenario, BUILTIN};
use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Instant;

/// The explorer clones and drops states at a high rate: a faster allocator pays.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "mmcheck", version, about = "Explore the interleavings of a model of the Linux mm core")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Clone, Copy, ValueEnum)]
enum StrategyArgument {
    Exhaustive,
    Random,
    Pct,
}

#[derive(Subcommand)]
enum Command {
    /// Every built-in scenario under every kernel its `expect` lines name (the default), or the
    /// scenarios given (built-in names or files).
    Suite {
        scenarios: Vec<String>,
        /// Only the lines under these memory models (sc, x86, arm64, lkmm; commas): default all.
        #[arg(long, value_delimiter = ',')]
        memory_model: Vec<String>,
        /// Bounded passes store every state instead of sampling runs without choices, so that
        /// counts depend on the states alone (bench/suite-diff.sh: a reshaped model's check).
        #[arg(long)]
        store_every_state: bool,
        #[arg(long)]
        json: bool,
    },
    /// The built-in scenarios.
    List,
    /// The modelled upstream changes and the version each landed in.
    Kernels,
    /// Explore one scenario (a built-in name or a file).
    Check {
        scenario: String,
        /// Kernel version: every registered change landed by it (default: the newest modelled).
        #[arg(long)]
        kernel: Option<String>,
        /// Override one change: NAME=on|off (NAME or commit id).
        #[arg(long = "patch", value_name = "NAME=on|off")]
        patches: Vec<String>,
        /// Override a scenario parameter: NAME=VALUE.
        #[arg(long = "set", value_name = "NAME=VALUE")]
        sets: Vec<String>,
        #[arg(long, value_enum, default_value = "exhaustive")]
        strategy: StrategyArgument,
        /// Exhaustive search of the schedules with at most N preemptions (at most 16777215).
        #[arg(long, value_parser = clap::value_parser!(u32).range(..=i64::from(mmcheck_explorer::PREEMPTION_BOUND_MAX)))]
        preemption_bound: Option<u32>,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// PCT: number of priority change points plus one.
        #[arg(long, default_value_t = 3)]
        pct_depth: u32,
        /// States stored in the visited set (the bounded search stores only some of a run
        /// without choices)
        #[arg(long)]
        max_states: Option<u64>,
        #[arg(long)]
        max_depth: Option<u64>,
        #[arg(long, value_parser = parse_seconds)]
        max_seconds: Option<f64>,
        /// At most 17592186044415 (bytes must fit in 64 bits).
        #[arg(long, value_parser = parse_memory_mb)]
        max_memory_mb: Option<u64>,
        /// Random and PCT: how many schedules.
        #[arg(long)]
        max_schedules: Option<u64>,
        /// Turn partial-order reduction off (for cross-checks).
        #[arg(long)]
        no_reduction: bool,
        /// sc (default), x86, arm64 or lkmm: which stores a load may read.
        #[arg(long, default_value = "sc")]
        memory_model: String,
        #[arg(long)]
        json: bool,
    },
    /// Run a scenario's sequential part on this machine's kernel through real syscalls and print
    /// what each instruction observed.
    Host {
        scenario: String,
        #[arg(long = "set", value_name = "NAME=VALUE")]
        sets: Vec<String>,
        /// The watchdog: a run not finished by then is killed and reported as a timeout at
        /// the instruction it was at.
        #[arg(long, default_value_t = 5.0)]
        max_seconds: f64,
        #[arg(long)]
        json: bool,
    },
    /// Run scenarios in the model (sequentially) and on the live kernel and compare every
    /// observation. Without arguments: every built-in scenario tagged `conformance`.
    Conform {
        scenarios: Vec<String>,
        /// Per scenario: the model's sequential run's time limit, and the live run's watchdog.
        #[arg(long, default_value_t = 5.0)]
        max_seconds: f64,
        /// Per scenario: the model's sequential run's step limit.
        #[arg(long, default_value_t = 1_000_000)]
        max_steps: u64,
        #[arg(long)]
        json: bool,
    },
    /// Run C litmus tests (herd7's format; files or directories) through the weak-memory
    /// engine and compare with each test's `Result:` line (the LKMM's verdict). Exit 1 if an
    /// outcome the verdict forbids is shown.
    Litmus {
        paths: Vec<String>,
        /// sc, x86, arm64 or lkmm; several with commas.
        #[arg(long, default_value = "lkmm", value_delimiter = ',')]
        memory_model: Vec<String>,
        /// Per test.
        #[arg(long, default_value_t = 10.0, value_parser = parse_seconds)]
        max_seconds: f64,
        /// List every test, not only those that do not agree.
        #[arg(long)]
        all: bool,
        #[arg(long)]
        json: bool,
    },
    /// Re-execute a violation from its replay token (or a JSON report) step by step.
    Replay {
        /// A token `mmc1/...` or `mmc2/...` or a file holding a `--json` report.
        token: String,
        /// The scenario file, when the token names a scenario that is not built in.
        #[arg(long)]
        file: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

/// A failure that ends the run with exit code 2.
struct UsageError(String);

impl<T: Into<String>> From<T> for UsageError {
    fn from(message: T) -> Self {
        UsageError(message.into())
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command.unwrap_or(Command::Suite {
        scenarios: Vec::new(),
        memory_model: Vec::new(),
        store_every_state: false,
        json: false,
    }) {
        Command::Suite { scenarios, memory_model, store_every_state, json } => {
            memory_models(&memory_model).and_then(|models| suite(&scenarios, &models, store_every_state, json))
        }
        Command::List => list(),
        Command::Kernels => kernels(),
        Command::Check {
            scenario,
            kernel,
            patches,
            sets,
            strategy,
            preemption_bound,
            seed,
            pct_depth,
            max_states,
            max_depth,
            max_seconds,
            max_memory_mb,
            max_schedules,
            no_reduction,
            memory_model,
            json,
        } => {
            let limits = limits(max_states, max_depth, max_seconds, max_memory_mb, max_schedules);
            let strategy = match strategy {
                StrategyArgument::Exhaustive => Strategy::Exhaustive,
                StrategyArgument::Random => Strategy::Random,
                StrategyArgument::Pct => Strategy::Pct,
            };
            check(
                &scenario,
                kernel.as_deref(),
                &patches,
                &sets,
                strategy,
                preemption_bound,
                seed,
                pct_depth,
                limits,
                !no_reduction,
                memory_model,
                json,
            )
        }
        Command::Replay { token, file, json } => replay(&token, file.as_deref(), json),
        Command::Host { scenario, sets, max_seconds, json } => {
            seconds(max_seconds).and_then(|watchdog| host(&scenario, &sets, watchdog, json))
        }
        Command::Conform { scenarios, max_seconds, max_steps, json } => seconds(max_seconds).and_then(|time_max| {
            conform(&scenarios, mmcheck_host::ModelLimits { steps_max: max_steps, time_max }, json)
        }),
        Command::Litmus { paths, memory_model, max_seconds, all, json } => {
            memory_models(&memory_model).and_then(|models| litmus::litmus(&paths, &models, max_seconds, all, json))
        }
    };
    match result {
        Ok(code) => code,
        Err(UsageError(message)) => {
            if !message.is_empty() {
                eprintln!("error: {message}");
            }
            ExitCode::from(2)
        }
    }
}

fn memory_models(names: &[String]) -> Result<Vec<mmcheck_explorer::memory::MemoryModel>, UsageError> {
    names
        .iter()
        .map(|name| {
            mmcheck_explorer::memory::MemoryModel::parse(name)
                .ok_or_else(|| UsageError(format!("`{name}` is not a memory model (sc, x86, arm64, lkmm)")))
        })
        .collect()
}

/// `--max-seconds`: a finite number of seconds, not negative (NaN would never time out).
fn parse_seconds(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(seconds) if seconds.is_finite() && seconds >= 0.0 => Ok(seconds),
        _ => Err(format!("`{text}` is not a number of seconds (a finite number, 0 or more)")),
    }
}

/// `--max-memory-mb`: MiB whose bytes fit in 64 bits (a larger value would wrap).
fn parse_memory_mb(text: &str) -> Result<u64, String> {
    let mb: u64 = text.parse().map_err(|_| format!("`{text}` is not a number of MiB"))?;
    match mb.checked_mul(1 << 20) {
        Some(_) => Ok(mb),
        None => Err(format!("{mb} MiB is more bytes than 64 bits hold (at most {} MiB)", u64::MAX >> 20)),
    }
}

fn limits(
    states: Option<u64>,
    depth: Option<u64>,
    seconds: Option<f64>,
    memory_mb: Option<u64>,
    schedules: Option<u64>,
) -> Limits {
    let mut limits = Limits::default();
    if let Some(states) = states {
        limits.states_max = states;
    }
    if let Some(depth) = depth {
        limits.depth_max = depth;
    }
    if let Some(seconds) = seconds {
        limits.seconds_max = seconds;
    }
    if let Some(memory_mb) = memory_mb {
        // parse_memory_mb() checked that the bytes fit.
        limits.memory_bytes_max = memory_mb.saturating_mul(1 << 20);
    }
    if let Some(schedules) = schedules {
        limits.schedules_max = schedules;
    }
    limits
}

/// Prints a scenario error with file:line:col and the offending source.
fn render(path: &str, source: &str, diagnostic: &Diagnostic) {
    let file = SimpleFile::new(path, source);
    let (line, column) = diagnostic.line_column(source);
    let report = Report::error()
        .with_message(format!("{path}:{line}:{column}: {}", diagnostic.message))
        .with_labels(vec![Label::primary((), diagnostic.start..diagnostic.end.min(source.len()).max(diagnostic.start))])
        .with_notes(diagnostic.notes.clone());
    let choice =
        if std::io::stderr().is_terminal() { termcolor::ColorChoice::Auto } else { termcolor::ColorChoice::Never };
    let writer = termcolor::StandardStream::stderr(choice);
    let _ = term::emit(&mut writer.lock(), &term::Config::default(), &file, &report);
}

/// 1 for a violation of the kernel, 2 for a run that ended in the scenario's own error (an
/// address computation that overflowed at run time), 0 otherwise.
/// 2 for a scenario error, 1 for a violation or a vacuous run, 0 otherwise.
fn exit_code(report: &mmcheck_report::check::CheckReport) -> ExitCode {
    match &report.violation {
        Some(v) if v.message.starts_with(mmcheck_model::SCENARIO_ERROR) => ExitCode::from(2),
        Some(_) => ExitCode::from(1),
        None if report.verdict == "vacuous" => ExitCode::from(1),
        None => ExitCode::SUCCESS,
    }
}

/// A file's first bytes, one more than a scenario may have (the parser says it is too long):
/// `/dev/zero` or a huge file is not read to the end.
fn read_bounded(path: &str, bytes_max: usize) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path)?.take(bytes_max as u64 + 1).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// The largest JSON report `replay` reads its token from (a report's trace is long, not this
/// long; serde_json bounds the nesting itself).
const REPORT_BYTES_MAX: usize = 256 << 20;

/// A scenario by built-in name or file path.
fn load(reference: &str) -> Result<(String, String), UsageError> {
    if let Some(text) = mmcheck_scenario::builtin(reference) {
        return Ok((format!("scenarios/{reference}.mmc"), text.to_string()));
    }
    match read_bounded(reference, mmcheck_scenario::limits::SOURCE_BYTES_MAX) {
        Ok(bytes) if bytes.len() > mmcheck_scenario::limits::SOURCE_BYTES_MAX => Err(format!(
            "`{reference}` is longer than a scenario may be ({} KiB)",
            mmcheck_scenario::limits::SOURCE_BYTES_MAX >> 10
        )
        .into()),
        Ok(bytes) => String::from_utf8(bytes).map(|text| (reference.to_string(), text)).map_err(|error| {
            // Located like a scenario error: the line and column of the first invalid byte.
            let at = error.utf8_error().valid_up_to();
            let text = String::from_utf8_lossy(error.as_bytes());
            let replacement = char::REPLACEMENT_CHARACTER.len_utf8();
            render(reference, &text, &Diagnostic::new("the file is not valid UTF-8", at, at + replacement));
            UsageError(String::new())
        }),
        Err(error) => {
            let names: Vec<String> = BUILTIN.iter().map(|(f, _)| f.trim_end_matches(".mmc").to_string()).collect();
            Err(format!(
                "`{reference}` is neither a built-in scenario ({}) nor a readable file: {error}",
                names.join(", ")
            )
            .into())
        }
    }
}

/// A scenario, or every error in it rendered to stderr (the parser and the builder go on after
/// an error, up to `limits::ERRORS_MAX`).
fn parse(path: &str, text: &str) -> Result<Scenario, UsageError> {
    mmcheck_scenario::parse_all(text).map_err(|diagnostics| {
        for diagnostic in &diagnostics {
            render(path, text, diagnostic);
        }
        UsageError(String::new())
    })
}

/// A scenario by name or file, or the one-line error that says why not (`path:line:col:
/// message` for a parse error, whose diagnostic goes to stderr as `parse` renders it).
fn load_scenario(reference: &str) -> Result<Scenario, String> {
    let (path, text) = load(reference).map_err(|error| error.0)?;
    mmcheck_scenario::parse_all(&text).map_err(|diagnostics| {
        for diagnostic in &diagnostics {
            render(&path, &text, diagnostic);
        }
        let (line, column) = diagnostics[0].line_column(&text);
        let more = match diagnostics.len() {
            1 => String::new(),
            n => format!(" (and {} more)", n - 1),
        };
        format!("{path}:{line}:{column}: {}{more}", diagnostics[0].message)
    })
}

fn kernel_config(kernel: Option<&str>, patches: &[String]) -> Result<KernelConfig, UsageError> {
    let version = match kernel {
        Some(text) => KernelVersion::parse(text)
            .ok_or_else(|| format!("`{text}` is not a kernel version: {}", KernelVersion::FORM))?,
        None => KernelVersion::NEWEST,
    };
    if version > KernelVersion::NEWEST {
        return Err(format!("the newest modelled kernel is {}", KernelVersion::NEWEST).into());
    }
    let mut config = KernelConfig::for_version(version);
    for text in patches {
        let (name, state) = text.split_once('=').ok_or_else(|| format!("`--patch {text}`: expected NAME=on|off"))?;
        let patch = Patch::by_name(name).ok_or_else(|| format!("unknown patch `{name}` (see `mmcheck kernels`)"))?;
        let on = match state {
            "on" => true,
            "off" => false,
            _ => return Err(format!("`--patch {text}`: expected on or off").into()),
        };
        config.set(patch, on);
    }
    if let Some(conflict) = config.conflict() {
        return Err(format!("kernel {}: {conflict}", config.label()).into());
    }
    Ok(config)
}

/// A progress bar on a terminal, shown once a search has run for a second.
fn progress_bar() -> Option<(indicatif::ProgressBar, Instant)> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::hidden();
    bar.set_style(indicatif::ProgressStyle::with_template("{spinner} {msg}").expect("a valid template"));
    Some((bar, Instant::now()))
}

#[allow(clippy::too_many_arguments)]
fn check(
    reference: &str,
    kernel: Option<&str>,
    patches: &[String],
    sets: &[String],
    strategy: Strategy,
    preemption_bound: Option<u32>,
    seed: u64,
    pct_depth: u32,
    limits: Limits,
    reduction: bool,
    memory_model: String,
    json: bool,
) -> Result<ExitCode, UsageError> {
    let memory_model = memory_models(&[memory_model])?[0];
    if preemption_bound.is_some() && strategy != Strategy::Exhaustive {
        return Err("--preemption-bound bounds the exhaustive search; it does not apply to random or pct".into());
    }
    let (path, text) = load(reference)?;
    let scenario = parse(&path, &text)?;
    let mut options = CheckOptions::new(kernel_config(kernel, patches)?);
    options.overrides = sets.iter().map(|s| parse_set(s)).collect::<Result<_, _>>()?;
    options.strategy = strategy;
    options.preemption_bound = preemption_bound;
    options.seed = seed;
    options.pct_depth = pct_depth;
    options.limits = limits;
    options.reduction = reduction;
    options.memory_model = memory_model;
    let bar = progress_bar();
    let mut on_progress = |p: &mmcheck_explorer::Progress| {
        if let Some((bar, started)) = &bar {
            if started.elapsed().as_secs() >= 1 {
                bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
                let rate = p.states * 1000 / p.elapsed_ms.max(1);
                bar.set_message(format!("{} states, {rate} states/s, depth {}, queue {}", p.states, p.depth, p.queue));
                bar.tick();
            }
        }
    };
    let report = mmcheck_report::check(&scenario, &options, Some(&mut on_progress))?;
    if let Some((bar, _)) = &bar {
        bar.finish_and_clear();
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&report).expect("reports serialise"));
    } else {
        print!("{}", format::summary(&report));
    }
    Ok(exit_code(&report))
}

fn replay(token_or_file: &str, file: Option<&str>, json: bool) -> Result<ExitCode, UsageError> {
    let token_text = if token_or_file.starts_with("mmc1/") || token_or_file.starts_with("mmc2/") {
        token_or_file.to_string()
    } else {
        let bytes =
            read_bounded(token_or_file, REPORT_BYTES_MAX).map_err(|e| format!("cannot read `{token_or_file}`: {e}"))?;
        if bytes.len() > REPORT_BYTES_MAX {
            return Err(format!(
                "`{token_or_file}` is longer than a JSON report may be ({} MiB)",
                REPORT_BYTES_MAX >> 20
            )
            .into());
        }
        let value: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| format!("`{token_or_file}` is not a JSON report: {e}"))?;
        value
            .get("replay")
            .and_then(|v| v.as_str())
            .ok_or_else(|| format!("`{token_or_file}` has no replay token"))?
            .to_string()
    };
    let token = ReplayToken::decode(&token_text)?;
    let (path, text) = load(file.unwrap_or(&token.scenario))?;
    let scenario = parse(&path, &text)?;
    let report = mmcheck_report::replay(&scenario, &token)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report).expect("reports serialise"));
    } else {
        print!("{}", format::summary(&report));
    }
    Ok(exit_code(&report))
}

fn list() -> Result<ExitCode, UsageError> {
    for (file, text) in BUILTIN {
        let scenario = parse(&format!("scenarios/{file}"), text)?;
        let kernels: Vec<String> = scenario
            .expectations
            .iter()
            .map(|e| format!("{}: {}", e.describe_kernels(), e.outcome.describe()))
            .collect();
        println!("{:<24} {}", scenario.name, scenario.title);
        if !kernels.is_empty() {
            println!("{:<24}   expects {}", "", kernels.join("; "));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn kernels() -> Result<ExitCode, UsageError> {
    println!("Modelled upstream changes (newest modelled kernel: {}).", KernelVersion::NEWEST);
    println!("`--kernel X.Y` means the newest model with the registered changes after X.Y reverted,");
    println!("not a complete model of X.Y. `--patch NAME=on|off` overrides one change.\n");
    for patch in PATCHES {
        let landed = patch.landed.map_or_else(|| "never".to_string(), |v| v.to_string());
        println!("{:<38} {:<12}  {:>5}  {}", patch.name, patch.commit, landed, patch.subject);
        println!("{:<38} {}", "", patch.summary);
    }
    Ok(ExitCode::SUCCESS)
}

fn suite(
    references: &[String],
    models: &[mmcheck_explorer::memory::MemoryModel],
    store_every_state: bool,
    json: bool,
) -> Result<ExitCode, UsageError> {
    let mut scenarios = Vec::new();
    for (file, text) in BUILTIN.iter().filter(|_| references.is_empty()) {
        scenarios.push(parse(&format!("scenarios/{file}"), text)?);
    }
    for reference in references {
        let (path, text) = load(reference)?;
        let scenario = parse(&path, &text)?;
        if scenario.expectations.is_empty() {
            return Err(format!(
                "{path}: no `expect` line: the suite runs a scenario under the kernels its `expect` lines name (`check` runs one kernel)"
            )
            .into());
        }
        scenarios.push(scenario);
    }
    let mut rows = Vec::new();
    let mut reports = Vec::new();
    for scenario in &scenarios {
        let runs = scenario.suite_runs().into_iter().filter(|(_, m)| models.is_empty() || models.contains(m));
        for (kernel, memory_model) in runs {
            let mut options = CheckOptions::new(kernel.clone());
            options.memory_model = memory_model;
            options.store_every_state = store_every_state;
            let report = mmcheck_report::check(scenario, &options, None)?;
            let under = if memory_model.is_weak() { format!(" under {memory_model}") } else { String::new() };
            rows.push(SuiteRow {
                scenario: scenario.name.clone(),
                kernel: kernel.label() + &under,
                expected: report.expected.clone().unwrap_or_else(|| "-".to_string()),
                got: report.violation.as_ref().map_or(report.verdict.clone(), |v| format!("violation {}", v.kind)),
                states: report.states,
                elapsed_ms: report.elapsed_ms,
                ok: report.matches_expectation == Some(true),
            });
            reports.push(report);
        }
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&reports).expect("reports serialise"));
    } else {
        print!("{}", format::table(&rows));
    }
    Ok(if rows.iter().all(|r| r.ok) { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// A `--max-seconds` value as a duration (positive and finite).
fn seconds(value: f64) -> Result<std::time::Duration, UsageError> {
    std::time::Duration::try_from_secs_f64(value)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("--max-seconds {value}: not a positive number of seconds").into())
}

fn host(reference: &str, sets: &[String], watchdog: std::time::Duration, json: bool) -> Result<ExitCode, UsageError> {
    let (path, text) = load(reference)?;
    let scenario = parse(&path, &text)?;
    let overrides: Vec<(String, i64)> = sets.iter().map(|s| parse_set(s)).collect::<Result<_, _>>()?;
    let spec = scenario.system(&overrides)?;
    if let Err(reason) = mmcheck_host::sequentialisable(&spec) {
        return Err(format!("{}: {reason}", scenario.name).into());
    }
    if let Some(missing) = mmcheck_host::missing_feature(&spec) {
        println!("{}: skipped: this machine lacks {missing}", scenario.name);
        return Ok(ExitCode::SUCCESS);
    }
    let run =
        mmcheck_host::live::run_host_in_temp_dir(&spec, watchdog).map_err(|e| format!("{}: {e}", scenario.name))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&run).expect("serialisable"));
    } else {
        for o in &run.observations {
            println!("{:<10} {:>3}  {:<28} {:?}", o.thread, o.pc, o.what, o.observed);
        }
        if let Some(stopped) = &run.stopped {
            println!("stopped: {stopped}");
        }
    }
    Ok(if run.stopped.is_some() { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

#[derive(serde::Serialize)]
struct ConformRow {
    scenario: String,
    status: String,
    observations: usize,
    agree: usize,
    disagreements: Vec<mmcheck_host::Disagreement>,
}

fn conform(references: &[String], limits: mmcheck_host::ModelLimits, json: bool) -> Result<ExitCode, UsageError> {
    let mut sources = Vec::new();
    if references.is_empty() {
        for (file, text) in BUILTIN {
            let scenario = parse(&format!("scenarios/{file}"), text)?;
            if scenario.tags.iter().any(|t| t == "conformance") {
                sources.push(scenario);
            }
        }
    }
    let mut rows = Vec::new();
    for scenario in &sources {
        rows.push(conform_one(scenario, limits)?);
    }
    // Files: one that cannot be read or parsed is a row with its error (the diagnostic on
    // stderr), and the others still run.
    for reference in references {
        match load_scenario(reference) {
            Ok(scenario) => rows.push(conform_one(&scenario, limits)?),
            Err(error) => rows.push(ConformRow {
                scenario: reference.clone(),
                status: format!("error: {error}"),
                observations: 0,
                agree: 0,
                disagreements: Vec::new(),
            }),
        }
    }
    let unreadable = rows.iter().filter(|r| r.status.starts_with("error")).count();
    let skipped = rows.iter().filter(|r| r.status.starts_with("skipped")).count();
    let refused = rows.iter().filter(|r| r.status.starts_with("refused")).count();
    let disagreeing = rows.iter().filter(|r| r.status == "DISAGREE").count();
    let not_modelled = rows.iter().filter(|r| r.status.starts_with("not modelled")).count();
    let stopped = rows.iter().filter(|r| r.status.starts_with("STOPPED")).count();
    let incomplete = rows.iter().filter(|r| r.status.starts_with("incomplete")).count();
    let failed = rows.iter().filter(|r| r.status.starts_with("FAILED")).count();
    if json {
        println!("{}", serde_json::to_string_pretty(&rows).expect("serialisable"));
    } else {
        println!("{:<34} {:>12} {:>6}  status", "scenario", "observations", "agree");
        for row in &rows {
            println!("{:<34} {:>12} {:>6}  {}", row.scenario, row.observations, row.agree, row.status);
            for d in &row.disagreements {
                println!("    {} #{} {}: model {:?}, kernel {:?}", d.thread, d.pc, d.what, d.model, d.kernel);
            }
        }
        let agree =
            rows.len() - disagreeing - skipped - refused - not_modelled - stopped - incomplete - failed - unreadable;
        println!(
            "\n{agree} agree, {disagreeing} disagree, {not_modelled} not modelled, {stopped} stopped early, {incomplete} incomplete (a limit), {failed} failed, {skipped} skipped, {refused} refused, {unreadable} unreadable"
        );
    }
    // Exit 0 iff everything compared agrees (a case skipped for a missing feature says so); 2
    // if a file was bad input, after the others ran.
    let failing = disagreeing + refused + not_modelled + stopped + incomplete + failed;
    Ok(match (unreadable, failing) {
        (0, 0) => ExitCode::SUCCESS,
        (0, _) => ExitCode::from(1),
        _ => ExitCode::from(2),
    })
}

fn conform_one(scenario: &Scenario, limits: mmcheck_host::ModelLimits) -> Result<ConformRow, UsageError> {
    let spec = scenario.system(&[])?;
    let row = |status: String, observations, agree, disagreements| ConformRow {
        scenario: scenario.name.clone(),
        status,
        observations,
        agree,
        disagreements,
    };
    if let Err(reason) = mmcheck_host::sequentialisable(&spec) {
        return Ok(row(format!("refused: {reason}"), 0, 0, Vec::new()));
    }
    if let Some(missing) = mmcheck_host::missing_feature(&spec) {
        return Ok(row(format!("skipped: this machine lacks {missing}"), 0, 0, Vec::new()));
    }
    let config = KernelConfig::for_version(KernelVersion::NEWEST);
    let model = match mmcheck_host::observe_model_limited(&spec, config, limits) {
        Ok(run) => run,
        Err(reason) => return Ok(row(format!("FAILED: {reason}"), 0, 0, Vec::new())),
    };
    let mut kernel = match mmcheck_host::live::run_host_in_temp_dir(&spec, limits.time_max) {
        Ok(run) => run,
        Err(reason) => return Ok(row(format!("skipped: {reason}"), 0, 0, Vec::new())),
    };
    if model.limit_reached() {
        // The model's observations are a prefix: only that much is compared.
        kernel.observations.truncate(model.observations.len());
    }
    let comparison = mmcheck_host::compare(&model, &kernel);
    let status = mmcheck_host::conform_status(&model, &kernel, &comparison);
    Ok(row(status, comparison.observations, comparison.agree, comparison.disagreements))
}
