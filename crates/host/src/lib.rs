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

pub mod live;

use mmcheck_explorer::StepEffects;
use mmcheck_model::program::Instruction;
use mmcheck_model::system::run_sequential_with;
use mmcheck_model::violation::ViolationKind;
use mmcheck_model::{KernelConfig, System, SystemSpec};
use serde::{Deserialize, Serialize};

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
pub fn observe_model(spec: &SystemSpec, config: KernelConfig) -> Run {
    let system = System::new(spec.clone(), config);
    let mut effects = StepEffects::new(false);
    let mut run = Run::default();
    let (_, violation) = run_sequential_with(&system, &mut effects, |step, effects| {
        let spec_thread = &spec.threads[step.thread as usize];
        let Some(instruction) = spec_thread.program.get(step.pc) else { return };
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
        if let Some(observed) = observed {
            run.observations.push(Observation::new(&spec_thread.name, step.pc, instruction, observed));
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
