//! Conformance with the live kernel. A scenario's program runs twice, sequentially and in the
//! same order (the lowest runnable thread first, one instruction at a time): in the model
//! (`observe_model`, no I/O) and on the machine's kernel through real syscalls
//! (`live::run_host`). Each instruction's outcome is an [`Observation`]; [`compare`] pairs
//! them up.
//!
//! Architecture invariant: besides the CLI, this is the only crate that does I/O, and it only
//! touches its own process, the children it forks for a scenario's `fork`, and its own
//! temporary files: it never writes to /sys or /proc/sys, never enables swap, never loads
//! modules.

mod child;
pub mod live;
mod scratch;

use mmcheck_explorer::StepEffects;
use mmcheck_model::program::Instruction;
use mmcheck_model::system::run_sequential_with;
use mmcheck_model::violation::ViolationKind;
use mmcheck_model::{KernelConfig, System, SystemSpec};
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

/// What one instruction gave: compared as-is, except addresses and file descriptors, which are
/// only compared as "a valid one" (they differ between worlds).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind", content = "value")]
pub enum Observed {
    /// A return value (a count, a status, a field, an errno).
    Value(i64),
    /// An address or file descriptor that is valid.
    Valid,
    /// The call failed with this errno (negative) where a valid address or fd was expected.
    Error(i64),
    /// A store completed.
    Stored,
    /// Every byte of a load matched.
    Loaded,
    /// A load read another byte: the first differing offset and the byte.
    Mismatch { offset: u64, byte: u8 },
    /// The access faulted (SIGSEGV or SIGBUS).
    Fault,
    /// The instruction had not finished when the run's time ran out (the live runner's
    /// watchdog killed it).
    Timeout,
    /// A scenario `assert` held.
    Held,
    /// A scenario `assert` failed.
    Failed,
}

/// One instruction's outcome.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observation {
    pub thread: String,
    /// The instruction's index in its thread's program.
    pub pc: usize,
    /// What the instruction is (`mmap`, `load`, `smaps Rss`...).
    pub what: String,
    pub observed: Observed,
}

impl Observation {
    pub fn new(thread: &str, pc: usize, instruction: &Instruction, observed: Observed) -> Self {
        Observation { thread: thread.to_string(), pc, what: describe(instruction), observed }
    }
}

/// A sequential run: the observations, and why it stopped early if it did.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Run {
    pub observations: Vec<Observation>,
    /// A violation (model) or a failure that ends the run (host).
    pub stopped: Option<String>,
}

/// How an instruction's value is compared.
pub(crate) fn classify(instruction: &Instruction, value: i64) -> Option<Observed> {
    match instruction {
        Instruction::Mmap { .. } | Instruction::Userfaultfd { .. } | Instruction::Mremap { dst: Some(_), .. } => {
            Some(if value >= 0 { Observed::Valid } else { Observed::Error(value) })
        }
        Instruction::Munmap { dst: Some(_), .. }
        | Instruction::Mprotect { dst: Some(_), .. }
        | Instruction::Madvise { dst: Some(_), .. }
        | Instruction::Pread { dst: Some(_), .. }
        | Instruction::Ftruncate { dst: Some(_), .. }
        | Instruction::MovePagesStatus { dst: Some(_), .. }
        | Instruction::Smaps { dst: Some(_), .. }
        | Instruction::ProcPage { dst: Some(_), .. }
        | Instruction::UffdioApi { dst: Some(_), .. }
        | Instruction::UffdioRegister { dst: Some(_), .. }
        | Instruction::UffdioFill { dst: Some(_), .. }
        | Instruction::UffdioMove { dst: Some(_), .. } => Some(Observed::Value(value)),
        _ => None,
    }
}

/// A short name of the instruction, for tables.
pub fn describe(instruction: &Instruction) -> String {
    match instruction {
        Instruction::Mmap { .. } => "mmap".into(),
        Instruction::Munmap { .. } => "munmap".into(),
        Instruction::Mprotect { prot, .. } => format!("mprotect {prot:#x}"),
        Instruction::Mremap { flags, .. } => format!("mremap flags {flags:#x}"),
        Instruction::Store { .. } => "store".into(),
        Instruction::Load { .. } => "load".into(),
        Instruction::Madvise { advice, .. } => format!("madvise {}", advice.name()),
        Instruction::Pread { direct: true, .. } => "pread O_DIRECT".into(),
        Instruction::Pread { direct: false, .. } => "pread".into(),
        Instruction::Ftruncate { length, .. } => format!("ftruncate {length:#x}"),
        Instruction::Assert { text, .. } => format!("assert {text}"),
        Instruction::MovePagesStatus { .. } => "move_pages status".into(),
        Instruction::Smaps { field, .. } => format!("smaps {field:?}"),
        Instruction::ProcPage { file, .. } => format!("{file:?}"),
        Instruction::Userfaultfd { .. } => "userfaultfd".into(),
        Instruction::UffdioApi { .. } => "UFFDIO_API".into(),
        Instruction::UffdioRegister { .. } => "UFFDIO_REGISTER".into(),
        Instruction::UffdioFill { from: Some(_), .. } => "UFFDIO_COPY".into(),
        Instruction::UffdioFill { from: None, .. } => "UFFDIO_ZEROPAGE".into(),
        Instruction::UffdioMove { .. } => "UFFDIO_MOVE".into(),
        other => format!("{other:?}").split([' ', '{']).next().unwrap_or("?").to_lowercase(),
    }
}

/// Whether the host can run the scenario sequentially; the reason if not.
pub fn sequentialisable(spec: &SystemSpec) -> Result<(), String> {
    let processes = spec.threads.iter().filter(|t| t.starts && t.mm.is_some()).count();
    if processes > 1 {
        return Err("more than one process: the runner is one process (and the children it forks)".into());
    }
    for thread in &spec.threads {
        for instruction in &thread.program {
            let Instruction::Fork { child, .. } = instruction else { continue };
            let child_program = &spec.threads[*child as usize].program;
            let coupled = child_program.iter().any(|i| {
                matches!(i, Instruction::Fork { .. } | Instruction::Signal { .. } | Instruction::Spawn { .. })
            });
            if coupled {
                return Err(format!(
                    "not sequentialisable on the host: the forked child {} forks, spawns or signals; the runner runs a child whole when its parent waits for it",
                    spec.threads[*child as usize].name
                ));
            }
        }
    }
    if !spec.devices.is_empty() {
        return Err("a scenario device: the live kernel has no such driver".into());
    }
    for thread in &spec.threads {
        for instruction in &thread.program {
            let refused = match instruction {
                Instruction::Reclaim => Some("reclaim(all): kswapd cannot be driven from user space"),
                Instruction::SplitHugePages => Some("split_huge_pages: debugfs is not written to"),
                Instruction::UffdRead { .. } => Some("uffd_read: needs a fault and its handler to run concurrently"),
                _ => None,
            };
            if let Some(reason) = refused {
                return Err(format!("not sequentialisable on the host: {reason} (thread {})", thread.name));
            }
        }
    }
    Ok(())
}

/// What the machine lacks for this scenario, if anything: the case is then skipped.
pub fn missing_feature(spec: &SystemSpec) -> Option<String> {
    if spec.swap_pages > 0 {
        return Some("a swap device (the runner never enables swap)".into());
    }
    if spec.anon_orders != 0 {
        return Some("mTHP sizes enabled in /sys (the runner never writes to /sys)".into());
    }
    None
}

/// The model's sequential run (mmcheck_model::system::run_sequential's order), observed.
/// Unlimited: see [`observe_model_limited`] for a run that must end.
pub fn observe_model(spec: &SystemSpec, config: KernelConfig) -> Run {
    observe_model_each(spec, config, |_| {})
}

/// Limits of the model's sequential run in [`observe_model_limited`].
#[derive(Clone, Copy, Debug)]
pub struct ModelLimits {
    pub steps_max: u64,
    pub time_max: Duration,
}

impl Default for ModelLimits {
    fn default() -> Self {
        ModelLimits { steps_max: 1_000_000, time_max: Duration::from_secs(5) }
    }
}

/// How a run's `stopped` begins when the run hit one of its limits rather than ending.
pub const LIMIT_PREFIX: &str = "limit: ";

impl Run {
    /// Whether the run was cut short by a limit (its observations are a prefix).
    pub fn limit_reached(&self) -> bool {
        self.stopped.as_deref().is_some_and(|s| s.starts_with(LIMIT_PREFIX))
    }
}

/// [`observe_model`] in a forked child process, ended at `limits`: after `steps_max` steps
/// or `time_max` (checked after each step, and by a watchdog that kills the child if one
/// step alone runs a second past it). A run cut short reports it in `stopped` (beginning
/// with [`LIMIT_PREFIX`]) with the observations made by then.
pub fn observe_model_limited(spec: &SystemSpec, config: KernelConfig, limits: ModelLimits) -> Result<Run, String> {
    let watchdog = limits.time_max + Duration::from_secs(1);
    let outcome = child::run_in_child(
        watchdog,
        |_| {},
        |reporter| {
            let started = Instant::now();
            let mut steps = 0u64;
            let run = observe_model_each(spec, config, |observation| {
                if let Some(observation) = observation {
                    reporter.send(&child::Message::Observed(observation.clone()));
                }
                steps += 1;
                let limit = if steps >= limits.steps_max {
                    Some(format!("its step limit ({steps} steps)"))
                } else if started.elapsed() > limits.time_max {
                    Some(format!("its time limit ({} s, {steps} steps)", limits.time_max.as_secs_f64()))
                } else {
                    None
                };
                if let Some(limit) = limit {
                    reporter.send(&child::Message::Stopped(format!(
                        "{LIMIT_PREFIX}the model's sequential run reached {limit}"
                    )));
                    // SAFETY: the child ends here; the parent has everything it needs.
                    unsafe { libc::_exit(0) };
                }
            });
            if let Some(stopped) = run.stopped {
                reporter.send(&child::Message::Stopped(stopped));
            }
        },
    )?;
    let mut run = Run::default();
    for message in outcome.messages {
        match message {
            child::Message::Observed(observation) => run.observations.push(observation),
            child::Message::Stopped(reason) => run.stopped = Some(reason),
            child::Message::Error(error) => return Err(error),
            child::Message::At { .. } | child::Message::Died { .. } => {}
        }
    }
    match outcome.end {
        child::End::Exited(_) => {}
        child::End::TimedOut => {
            run.stopped = Some(format!(
                "{LIMIT_PREFIX}the model's sequential run reached its time limit ({} s) inside one step",
                limits.time_max.as_secs_f64()
            ))
        }
        child::End::Signaled(signal) => {
            return Err(format!("the model's sequential run died of {}", child::signal_name(signal)))
        }
    }
    Ok(run)
}

/// The model's sequential run, observed; `after_step` sees each step's observation, if any.
fn observe_model_each(
    spec: &SystemSpec,
    config: KernelConfig,
    mut after_step: impl FnMut(Option<&Observation>),
) -> Run {
    let system = System::new(spec.clone(), config);
    let mut effects = StepEffects::new(false);
    let mut run = Run::default();
    let (_, violation) = run_sequential_with(&system, &mut effects, |step, effects| {
        let spec_thread = &spec.threads[step.thread as usize];
        let Some(instruction) = spec_thread.program.get(step.pc) else { return after_step(None) };
        let observed = match &effects.violation {
            Some(violation) => match violation.kind {
                ViolationKind::DataLoss => Some(model_mismatch(&violation.message)),
                ViolationKind::Fault => Some(Observed::Fault),
                ViolationKind::Assertion => Some(Observed::Failed),
                _ => None,
            },
            // The instruction completed (a syscall's steps end by advancing the thread's pc).
            None if step.kernel.thread(step.thread).pc as usize != step.pc => {
                let value = instruction.dst().map(|r| step.kernel.thread(step.thread).registers[r as usize]);
                match instruction {
                    Instruction::Store { .. } => Some(Observed::Stored),
                    Instruction::Load { .. } => Some(Observed::Loaded),
                    Instruction::Assert { .. } => Some(Observed::Held),
                    _ => value.and_then(|v| classify(instruction, v)),
                }
            }
            None => None,
        };
        match observed {
            Some(observed) => {
                run.observations.push(Observation::new(&spec_thread.name, step.pc, instruction, observed));
                after_step(run.observations.last());
            }
            None => after_step(None),
        }
    });
    run.stopped = violation.map(|v| format!("{}: {}", v.kind.name(), v.message));
    run
}

/// The model reports a differing load as "load at ADDR: expected X, read Y"; the host reports
/// the offset. Both compare as a mismatch of the byte read.
fn model_mismatch(message: &str) -> Observed {
    let byte = message
        .split("read ")
        .nth(1)
        .and_then(|rest| rest.get(2..4))
        .and_then(|hex| u8::from_str_radix(hex, 16).ok())
        .unwrap_or(0);
    Observed::Mismatch { offset: 0, byte }
}

/// One disagreement: what the model and the kernel observed for the same instruction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Disagreement {
    pub thread: String,
    pub pc: usize,
    pub what: String,
    pub model: Option<Observed>,
    pub kernel: Option<Observed>,
}

/// The comparison of two runs of one scenario.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Comparison {
    pub observations: usize,
    pub agree: usize,
    pub disagreements: Vec<Disagreement>,
}

/// Pairs the runs' observations in order: a mismatch in value, or an observation only one
/// side made, is a disagreement. Mismatching loads agree when the byte read agrees.
pub fn compare(model: &Run, kernel: &Run) -> Comparison {
    let mut comparison = Comparison::default();
    let length = model.observations.len().max(kernel.observations.len());
    for index in 0..length {
        let (m, k) = (model.observations.get(index), kernel.observations.get(index));
        comparison.observations += 1;
        let same = match (m, k) {
            (Some(m), Some(k)) => {
                m.thread == k.thread
                    && m.pc == k.pc
                    && match (&m.observed, &k.observed) {
                        (Observed::Mismatch { byte: a, .. }, Observed::Mismatch { byte: b, .. }) => a == b,
                        (a, b) => a == b,
                    }
            }
            _ => false,
        };
        if same {
            comparison.agree += 1;
        } else {
            let any = m.or(k).expect("one side has it");
            comparison.disagreements.push(Disagreement {
                thread: any.thread.clone(),
                pc: any.pc,
                what: any.what.clone(),
                model: m.map(|o| o.observed.clone()),
                kernel: k.map(|o| o.observed.clone()),
            });
        }
    }
    comparison
}

/// "agree" only when every observation agrees and no check failed: a path the model does not
/// implement is "not modelled", and a run both worlds stopped at a failed `assert` or load
/// check of the scenario is "STOPPED"; neither counts as agreement.
pub fn conform_status(model: &Run, kernel: &Run, comparison: &Comparison) -> String {
    if let Some(reason) = model.stopped.as_deref().filter(|r| r.contains("not modelled")) {
        let what = reason.split_once("not modelled: ").map_or(reason, |(_, what)| what);
        return format!("not modelled: {what}");
    }
    if !comparison.disagreements.is_empty() {
        return "DISAGREE".to_string();
    }
    if let Some(reason) = model.stopped.as_deref().filter(|_| model.limit_reached()) {
        let what = reason.strip_prefix(LIMIT_PREFIX).unwrap_or(reason);
        return format!("incomplete: {what}; the {} observations before it agree", comparison.observations);
    }
    // A fault ends both runs by design (it is an observation, compared like any other); a
    // failed check, an `assert` or a load that read other bytes, means the scenario's
    // expectation is wrong in both worlds and the rest of it never ran.
    let failed_check =
        |run: &Run| run.observations.iter().any(|o| matches!(o.observed, Observed::Failed | Observed::Mismatch { .. }));
    if failed_check(model) || failed_check(kernel) {
        let reason = model.stopped.as_deref().or(kernel.stopped.as_deref()).unwrap_or("a check failed");
        return format!("STOPPED: {reason}");
    }
    match model.stopped.as_deref().or(kernel.stopped.as_deref()).filter(|r| r.starts_with("assertion")) {
        Some(reason) => format!("STOPPED: {reason}"),
        None => "agree".to_string(),
    }
}
