//! The live-kernel side: a scenario's instructions executed through real syscalls by a child
//! process of this one (`child::run_in_child`), threads interleaved exactly as the model's
//! sequential run interleaves them (the lowest runnable thread, one instruction at a time), all
//! in the child's one thread.
//!
//! Only the child, the processes it forks and files in the run's own temporary directory are
//! touched. A user access is checked against the mappings the run made before it is performed,
//! so an access the kernel would answer with SIGSEGV is reported as a fault without taking the
//! signal; a fault the check cannot foresee (SIGBUS past a file's end) kills only the child and
//! is reported as the access's fault by the parent, and a hang is ended by the watchdog.

use crate::child::{self, End, Message, Reporter};
use crate::{classify, describe, Observation, Observed, Run};
use mmcheck_model::folio::PageData;
use mmcheck_model::fs::proc::page::{kpf, ProcPageFile, PAGEMAP_FLAGS, PM_PRESENT, PM_SWAP};
use mmcheck_model::program::{prot, Advice, Instruction, Operand};
use mmcheck_model::SystemSpec;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

const PAGE: u64 = 4096;
const PMD: u64 = 2 << 20;

/// ioctl numbers of include/uapi/linux/userfaultfd.h (_IOWR(0xAA, nr, size)).
mod uffdio {
    pub const API: u64 = 0xc018_aa3f;
    pub const REGISTER: u64 = 0xc020_aa00;
    pub const COPY: u64 = 0xc028_aa03;
    pub const ZEROPAGE: u64 = 0xc020_aa04;
    pub const MOVE: u64 = 0xc028_aa05;
    pub const REGISTER_MODE_MISSING: u64 = 1;
    pub const MOVE_MODE_ALLOW_SRC_HOLES: u64 = 1 << 1;
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Status {
    NotStarted,
    Running,
    Done,
}

struct HostThread {
    pc: usize,
    registers: Vec<i64>,
    status: Status,
    /// A forked child waiting to run its whole program when it is scheduled.
    remote: Option<Remote>,
}

/// A child process forked for a scenario's `fork`: it waits for a byte on `go`, runs its
/// threads, writes its observations to `results` and exits.
#[derive(Clone, Copy)]
struct Remote {
    pid: libc::pid_t,
    go: i32,
    results: i32,
}

/// A mapping the run made: [start, end) with its protection. Whether a userfaultfd covers
/// it is read from the kernel (smaps' VmFlags) when it matters.
#[derive(Clone, Copy)]
struct Mapping {
    start: u64,
    end: u64,
    prot: u32,
}

struct Host<'a> {
    spec: &'a SystemSpec,
    threads: Vec<HostThread>,
    events: u64,
    mappings: Vec<Mapping>,
    files: Vec<PathBuf>,
    fds: Vec<i32>,
    run: Run,
    reporter: Reporter,
}

pub(crate) fn errno() -> i64 {
    -i64::from(std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO))
}

/// How long a live run may go without finishing before its processes are killed and the
/// instruction it was at is reported as a timeout.
pub const WATCHDOG_DEFAULT: Duration = Duration::from_secs(5);

/// Real (non-zero) file data the runner writes into its temporary directory at most, over all
/// of a scenario's files; zero pages beyond it are left as holes (the file is sized with
/// ftruncate), and a scenario with more non-zero data is not run live.
pub const FILE_BYTES_MAX: u64 = 1 << 30;

/// Bytes one instruction may touch live at most (a store, a load, a read's buffer, a
/// populate, a UFFDIO_COPY): the runner's memory is the machine's, shared with others.
pub const ACCESS_BYTES_MAX: u64 = 1 << 30;

/// Memory one process of a live run may hold resident at most (checked before each
/// instruction that may fault pages in): the machine is shared.
pub const RESIDENT_BYTES_MAX: u64 = 4 << 30;

/// Runs the scenario's program on this machine, in `dir` (a fresh directory of the caller's),
/// under [`WATCHDOG_DEFAULT`].
pub fn run_host(spec: &SystemSpec, dir: &Path) -> Result<Run, String> {
    run_host_with(spec, dir, WATCHDOG_DEFAULT)
}

/// Runs the scenario's program on this machine in a temporary directory of its own
/// (`mmcheck-host-PID-N` in the system's), removed afterwards: after a fault, a timeout, and
/// when SIGINT, SIGTERM or SIGHUP ends this process during the run.
pub fn run_host_in_temp_dir(spec: &SystemSpec, watchdog: Duration) -> Result<Run, String> {
    crate::sequentialisable(spec)?;
    let scratch = crate::scratch::ScratchDir::new(spec.files.len())?;
    run_host_with(spec, scratch.path(), watchdog)
}

/// Runs the scenario's program on this machine, in `dir`. The run happens in a forked child
/// process, pinned to one CPU, as the model runs every thread on one (the per-CPU LRU batches
/// then behave the same on every run). A signal that kills the child (SIGSEGV, SIGBUS) is the
/// observation of the instruction it was at; a child still running after `watchdog` is
/// killed with the processes it forked, and the instruction it was at is a timeout.
pub fn run_host_with(spec: &SystemSpec, dir: &Path, watchdog: Duration) -> Result<Run, String> {
    crate::sequentialisable(spec)?;
    let outcome = child::run_in_child(watchdog, crate::scratch::running, |reporter| {
        if let Err(error) = pin_to_one_cpu().and_then(|()| run_pinned(spec, dir, reporter)) {
            reporter.send(&Message::Error(error));
        }
    });
    crate::scratch::running(0);
    assemble(spec, outcome?, watchdog)
}

/// The parent's view of the child's run: its observations, and how it ended.
fn assemble(spec: &SystemSpec, outcome: child::Outcome, watchdog: Duration) -> Result<Run, String> {
    let mut run = Run::default();
    let mut at = None;
    let mut at_observed = true;
    for message in outcome.messages {
        match message {
            Message::At { thread, pc } => {
                at = Some((thread, pc));
                at_observed = false;
            }
            Message::Observed(observation) => {
                run.observations.push(observation);
                at_observed = true;
            }
            Message::Died { signal } => {
                end_at(&mut run, spec, at.filter(|_| !at_observed), Observed::Fault, &fault(signal));
                at_observed = true;
            }
            Message::Stopped(reason) => {
                run.stopped.get_or_insert(reason);
            }
            Message::Error(error) => {
                let place = place(spec, at);
                return Err(if place.is_empty() { error } else { format!("{error} (the instruction{place})") });
            }
        }
    }
    let unobserved = at.filter(|_| !at_observed);
    match outcome.end {
        End::Exited(0) => {}
        End::Exited(code) => return Err(format!("the runner's child exited with status {code}")),
        End::Signaled(signal) => end_at(&mut run, spec, unobserved, Observed::Fault, &fault(signal)),
        End::TimedOut => {
            let reason = format!(
                "timeout: not finished after {} s (the runner's processes were killed)",
                watchdog.as_secs_f64()
            );
            end_at(&mut run, spec, unobserved, Observed::Timeout, &reason);
        }
    }
    Ok(run)
}

fn fault(signal: i32) -> String {
    format!("fault: {}", child::signal_name(signal))
}

/// Records how the run ended at instruction `at` (thread, pc), which had no observation yet.
fn end_at(run: &mut Run, spec: &SystemSpec, at: Option<(usize, usize)>, observed: Observed, reason: &str) {
    if let Some((t, pc, instruction)) = instruction_at(spec, at) {
        run.observations.push(Observation::new(&spec.threads[t].name, pc, instruction, observed));
    }
    run.stopped.get_or_insert(format!("{reason}{}", place(spec, at)));
}

fn instruction_at(spec: &SystemSpec, at: Option<(usize, usize)>) -> Option<(usize, usize, &Instruction)> {
    at.and_then(|(t, pc)| Some((t, pc, spec.threads.get(t)?.program.get(pc)?)))
}

/// " at THREAD #PC (WHAT, line N)", for reports.
fn place(spec: &SystemSpec, at: Option<(usize, usize)>) -> String {
    match instruction_at(spec, at) {
        Some((t, pc, instruction)) => {
            format!(" at {} #{pc} ({}{})", spec.threads[t].name, describe(instruction), line_of(instruction))
        }
        None => String::new(),
    }
}

/// ", line N" for the instructions that carry their place in the scenario.
fn line_of(instruction: &Instruction) -> String {
    match instruction {
        Instruction::Store { location, .. }
        | Instruction::Load { location, .. }
        | Instruction::Assert { location, .. }
            if location.line > 0 =>
        {
            format!(", line {}", location.line)
        }
        _ => String::new(),
    }
}

/// Pins this process (the child) to the CPU it runs on.
fn pin_to_one_cpu() -> Result<(), String> {
    // SAFETY: sched_getcpu(2)/sched_setaffinity(2) of this process with a cpu_set_t of our own.
    unsafe {
        let cpu = libc::sched_getcpu();
        if cpu < 0 {
            return Err(format!("sched_getcpu: error {}", errno()));
        }
        let mut one: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu as usize, &mut one);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &one) != 0 {
            return Err(format!("sched_setaffinity: error {}", errno()));
        }
    }
    Ok(())
}

fn run_pinned(spec: &SystemSpec, dir: &Path, reporter: Reporter) -> Result<(), String> {
    let files = write_files(spec, dir)?;
    let threads = spec
        .threads
        .iter()
        .map(|t| HostThread {
            pc: 0,
            registers: vec![0; t.registers],
            status: if t.starts { Status::Running } else { Status::NotStarted },
            remote: None,
        })
        .collect();
    let mut host =
        Host { spec, threads, events: 0, mappings: Vec::new(), files, fds: Vec::new(), run: Run::default(), reporter };
    let result = host.schedule();
    host.cleanup();
    result?;
    if let Some(stopped) = host.run.stopped {
        reporter.send(&Message::Stopped(stopped));
    }
    Ok(())
}

/// Writes the scenario's files into `dir`, as the model's start from disk with nothing cached.
/// Within [`FILE_BYTES_MAX`] every page is written; past it, only non-zero pages are (the rest
/// are holes of ftruncate's), and more non-zero data than that is refused.
fn write_files(spec: &SystemSpec, dir: &Path) -> Result<Vec<PathBuf>, String> {
    let mut budget = FILE_BYTES_MAX;
    let mut files = Vec::new();
    for (index, blocks) in spec.files.iter().enumerate() {
        let path = dir.join(format!("file{index}"));
        let size = blocks.len().saturating_mul(PAGE);
        let sparse = size > budget;
        // Counting stops past the budget: a huge file of non-zero fill is refused at once.
        let budget_pages = (budget / PAGE) as usize;
        let written = if sparse { blocks.nonzero_pages().take(budget_pages + 1).count() as u64 * PAGE } else { size };
        if written > budget {
            return Err(format!(
                "not run live: the scenario's files hold more than {} MiB of non-zero data (the runner's cap)",
                FILE_BYTES_MAX >> 20
            ));
        }
        budget -= written;
        let file = std::fs::File::create(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let fail = |e: std::io::Error| format!("{}: {e}", path.display());
        if sparse {
            for (page, block) in blocks.nonzero_pages() {
                file.write_all_at(&page_bytes(block), page * PAGE).map_err(fail)?;
            }
        } else {
            for (page, block) in blocks.iter().enumerate() {
                file.write_all_at(&page_bytes(block), page as u64 * PAGE).map_err(fail)?;
            }
        }
        file.set_len(size).map_err(fail)?;
        file.sync_all().map_err(fail)?;
        // The model's files start on disk with nothing cached: drop the pages the writes just
        // cached (clean after the sync), so that the first access reads them in here too.
        // SAFETY: a plain syscall on our own file's descriptor.
        let dropped = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        if dropped != 0 {
            return Err(format!("{}: posix_fadvise(POSIX_FADV_DONTNEED): error {dropped}", path.display()));
        }
        files.push(path);
    }
    Ok(files)
}

fn page_bytes(data: &PageData) -> Vec<u8> {
    let mut bytes = vec![0u8; PAGE as usize];
    let runs = data.runs();
    for (index, &(start, byte)) in runs.iter().enumerate() {
        let end = runs.get(index + 1).map_or(PAGE as usize, |r| usize::from(r.0));
        bytes[usize::from(start)..end].fill(byte);
    }
    bytes
}

impl Host<'_> {
    fn runnable(&self, thread: usize) -> bool {
        let t = &self.threads[thread];
        if t.status != Status::Running {
            return false;
        }
        match self.spec.threads[thread].program.get(t.pc) {
            Some(Instruction::Join { threads }) => {
                threads.iter().all(|&c| self.threads[c as usize].status == Status::Done)
            }
            Some(Instruction::WaitEvent { event }) => self.events & (1 << event) != 0,
            _ => true,
        }
    }

    fn schedule(&mut self) -> Result<(), String> {
        loop {
            let Some(thread) = (0..self.threads.len()).find(|&t| self.runnable(t)) else {
                if self.threads.iter().any(|t| t.status == Status::Running) {
                    self.run.stopped = Some("deadlock: no thread can run".into());
                }
                return Ok(());
            };
            if self.run.stopped.is_some() {
                return Ok(());
            }
            self.execute(thread)?;
        }
    }

    fn value(&self, thread: usize, operand: Operand) -> i64 {
        match operand {
            Operand::Constant(value) => value,
            // Wrapping as the machine's registers do (the model checks its own arithmetic).
            Operand::Register(register, offset) => {
                self.threads[thread].registers[register as usize].wrapping_add(offset)
            }
        }
    }

    fn observe(&mut self, thread: usize, pc: usize, observed: Observed) {
        let spec_thread = &self.spec.threads[thread];
        let observation = Observation::new(&spec_thread.name, pc, &spec_thread.program[pc], observed);
        self.reporter.send(&Message::Observed(observation.clone()));
        self.run.observations.push(observation);
    }

    fn execute(&mut self, thread: usize) -> Result<(), String> {
        if let Some(remote) = self.threads[thread].remote.take() {
            return self.run_remote(thread, remote);
        }
        let pc = self.threads[thread].pc;
        let Some(instruction) = self.spec.threads[thread].program.get(pc).cloned() else {
            self.threads[thread].status = Status::Done;
            return Ok(());
        };
        self.threads[thread].pc += 1;
        // The parent's watchdog reports a fault or a hang at the last instruction announced.
        self.reporter.send(&Message::At { thread, pc });
        let result = match &instruction {
            Instruction::Spawn { thread: child } => {
                let registers = self.threads[thread].registers.clone();
                let c = &mut self.threads[*child as usize];
                c.status = Status::Running;
                c.registers = registers;
                None
            }
            Instruction::Join { .. } | Instruction::WaitEvent { .. } => None,
            Instruction::Fork { child, child_mm, .. } => {
                self.fork(thread, *child as usize, *child_mm)?;
                None
            }
            Instruction::Signal { event } => {
                self.events |= 1 << event;
                None
            }
            Instruction::Exit => {
                self.cleanup_mappings();
                None
            }
            Instruction::Assert { .. } | Instruction::Store { .. } | Instruction::Load { .. } => {
                self.check(thread, pc, &instruction)?;
                None
            }
            other => Some(self.syscall(thread, other)?),
        };
        if let Some(value) = result {
            if let Some(register) = instruction.dst() {
                self.threads[thread].registers[register as usize] = value;
            }
            if let Some(observed) = classify(&instruction, value) {
                self.observe(thread, pc, observed);
            }
        }
        Ok(())
    }

    /// The instructions that check what the program sees (assert, store, load): each is an
    /// observation, and one that fails ends the run as in the model.
    fn check(&mut self, thread: usize, pc: usize, instruction: &Instruction) -> Result<(), String> {
        match instruction {
            Instruction::Assert { condition, text, .. } => {
                let held = condition.holds(&mut |operand| self.value(thread, operand));
                self.observe(thread, pc, if held { Observed::Held } else { Observed::Failed });
                if !held {
                    let values = match condition.as_comparison() {
                        Some((left, comparison, right)) => {
                            let (l, r) = (self.value(thread, left), self.value(thread, right));
                            format!(": {l} {} {r}", comparison.symbol())
                        }
                        None => String::new(),
                    };
                    self.run.stopped = Some(format!("assertion: {text}{values}"));
                }
            }
            Instruction::Store { address, length, byte, .. } => {
                let address = self.value(thread, *address) as u64;
                let observed = self.store(address, *length, *byte)?;
                let stop = observed != Observed::Stored;
                self.observe(thread, pc, observed);
                if stop {
                    // As in the model: a fault ends the run (the process would die of it).
                    self.run.stopped = Some("a store faulted".into());
                }
            }
            Instruction::Load { address, length, expect, .. } => {
                let address = self.value(thread, *address) as u64;
                let observed = self.load(address, *length, *expect)?;
                let stop = observed != Observed::Loaded;
                self.observe(thread, pc, observed);
                if stop {
                    self.run.stopped = Some("a load read other bytes or faulted".into());
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// fork(): the child copies this process; it waits until the scheduler reaches it, then
    /// runs its threads (those of `child_mm`) whole, as the model's sequential order does when
    /// the parent blocks in Join.
    fn fork(&mut self, parent: usize, child: usize, child_mm: u32) -> Result<(), String> {
        let (mut go, mut results) = ([0i32; 2], [0i32; 2]);
        // SAFETY: plain pipe(2)/fork(2); the child only runs this interpreter and _exit()s.
        unsafe {
            if libc::pipe(go.as_mut_ptr()) < 0 || libc::pipe(results.as_mut_ptr()) < 0 {
                return Err(format!("pipe: {}", errno()));
            }
        }
        let registers = self.threads[parent].registers.clone();
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(format!("fork: {}", errno()));
        }
        if pid == 0 {
            // SAFETY: the child's own pipes; it dies with the runner process that forked it.
            unsafe {
                libc::close(go[1]);
                libc::close(results[0]);
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            }
            // The go message carries the events the parent has signalled by now; without it
            // (the parent died) the child has nothing to do.
            let mut events = [0u8; 8];
            // SAFETY: reading from our own pipe into our own buffer.
            if unsafe { libc::read(go[0], events.as_mut_ptr().cast(), 8) } != 8 {
                unsafe { libc::_exit(0) };
            }
            self.events = u64::from_le_bytes(events);
            self.run_child(child, child_mm, registers);
            let json = serde_json::to_vec(&self.run).unwrap_or_default();
            let mut written = 0;
            while written < json.len() {
                // SAFETY: writing our own buffer to our own pipe.
                let n = unsafe { libc::write(results[1], json[written..].as_ptr().cast(), json.len() - written) };
                if n <= 0 {
                    break;
                }
                written += n as usize;
            }
            // SAFETY: the child ends here without running the parent's destructors.
            unsafe { libc::_exit(0) };
        }
        unsafe {
            libc::close(go[0]);
            libc::close(results[1]);
        }
        let c = &mut self.threads[child];
        c.status = Status::Running;
        c.remote = Some(Remote { pid, go: go[1], results: results[0] });
        Ok(())
    }

    /// In the child: only its own threads run, the child's main thread with a copy of the
    /// parent's registers (as the model's fork copies them).
    fn run_child(&mut self, child: usize, child_mm: u32, registers: Vec<i64>) {
        self.run = Run::default();
        for (id, thread) in self.threads.iter_mut().enumerate() {
            thread.remote = None;
            if self.spec.threads[id].mm != Some(child_mm) {
                thread.status = Status::Done;
            }
        }
        let c = &mut self.threads[child];
        c.status = Status::Running;
        c.registers = registers;
        if let Err(error) = self.schedule() {
            self.run.stopped = Some(error);
        }
        self.cleanup_mappings();
    }

    /// Lets a waiting child run and takes its observations.
    fn run_remote(&mut self, thread: usize, remote: Remote) -> Result<(), String> {
        // SAFETY: our own pipes and child.
        unsafe { libc::write(remote.go, self.events.to_le_bytes().as_ptr().cast(), 8) };
        let mut json = Vec::new();
        let mut buffer = [0u8; 4096];
        loop {
            let n = unsafe { libc::read(remote.results, buffer.as_mut_ptr().cast(), buffer.len()) };
            if n <= 0 {
                break;
            }
            json.extend_from_slice(&buffer[..n as usize]);
        }
        let mut status = 0;
        unsafe {
            libc::close(remote.go);
            libc::close(remote.results);
            libc::waitpid(remote.pid, &mut status, 0);
        }
        if libc::WIFSIGNALED(status) {
            // The parent reports the fault at the child's last instruction.
            let signal = libc::WTERMSIG(status);
            self.reporter.send(&Message::Died { signal });
            self.run.stopped = Some(fault(signal));
        } else {
            // The child sent its observations to the parent itself; they are kept here too.
            let child_run: Run =
                serde_json::from_slice(&json).map_err(|e| format!("the forked child's report: {e}"))?;
            self.run.observations.extend(child_run.observations);
            if child_run.stopped.is_some() {
                self.run.stopped = child_run.stopped;
            }
        }
        let child_mm = self.spec.threads[thread].mm;
        for (id, t) in self.threads.iter_mut().enumerate() {
            if self.spec.threads[id].mm == child_mm {
                t.status = Status::Done;
            }
        }
        Ok(())
    }

    /// The mapping holding all of [address, address + length), if one does.
    fn mapping(&self, address: u64, length: u64) -> Option<Mapping> {
        let end = address.checked_add(length)?;
        self.mappings.iter().copied().find(|m| m.start <= address && end <= m.end)
    }

    /// Whether `address` lies in a mapping of the run's (the kernel stops an access or a
    /// user copy at the guard gap after it, so nothing of the runner's own is reached).
    fn owns(&self, address: u64) -> bool {
        self.mappings.iter().any(|m| m.start <= address && address < m.end)
    }

    /// Where the run's mappings stop covering [address, end) without a gap, from `address`.
    fn covered_until(&self, address: u64, end: u64) -> u64 {
        let mut reached = address;
        let mut sorted = self.mappings.clone();
        sorted.sort_by_key(|m| m.start);
        for m in sorted.iter().filter(|m| m.start < end && m.end > address) {
            if m.start > reached {
                break;
            }
            reached = m.end.min(end);
        }
        reached
    }

    /// Whether a mapping that is not the run's lies in [start, end) (/proc/self/maps: the
    /// runner's heap, stacks or libraries may have been placed in a hole the run made).
    fn foreign_mapping_in(&self, start: u64, end: u64) -> Result<bool, String> {
        let maps = std::fs::read_to_string("/proc/self/maps").map_err(|e| format!("/proc/self/maps: {e}"))?;
        let foreign = maps.lines().filter_map(|line| line.split_whitespace().next()?.split_once('-')).any(|(a, b)| {
            let (Ok(a), Ok(b)) = (u64::from_str_radix(a, 16), u64::from_str_radix(b, 16)) else { return true };
            a < end && b > start && !self.mappings.iter().any(|m| m.start <= a && b <= m.end)
        });
        Ok(foreign)
    }

    /// Refuses an instruction touching more than [`ACCESS_BYTES_MAX`], or one that would
    /// sleep in handle_userfault() with nobody to wake it: a user access, a user copy or a
    /// GUP of a page registered for missing faults (VmFlags `um`, the kernel's own record,
    /// which follows mremap) that is not populated.
    fn refuse_blocking(&self, address: u64, length: u64, what: &str) -> Result<(), String> {
        capped(length, what)?;
        if self.fds.is_empty() || length == 0 {
            return Ok(());
        }
        let end = address.saturating_add(length);
        let pagemap = std::fs::File::open("/proc/self/pagemap").map_err(|e| format!("/proc/self/pagemap: {e}"))?;
        for (start, stop) in uffd_missing_ranges()? {
            let first = start.max(address & !(PAGE - 1));
            for page in (first..stop.min(end)).step_by(PAGE as usize) {
                let mut entry = [0u8; 8];
                pagemap.read_exact_at(&mut entry, page / PAGE * 8).map_err(|e| format!("/proc/self/pagemap: {e}"))?;
                if u64::from_le_bytes(entry) & (PM_PRESENT | PM_SWAP) == 0 {
                    return Err(format!(
                        "not run live: would block in userfaultfd: {what} needs page {} of the range, registered for missing faults and not populated, and the runner has no fault handler",
                        (page - (address & !(PAGE - 1))) / PAGE
                    ));
                }
            }
        }
        Ok(())
    }

    fn store(&mut self, address: u64, length: u64, byte: u8) -> Result<Observed, String> {
        match self.mapping(address, length) {
            Some(m) if m.prot & prot::PROT_WRITE != 0 => {}
            _ => return Ok(Observed::Fault),
        }
        self.refuse_blocking(address, length, "a store")?;
        // SAFETY: the range lies in a writable mapping this run made and still holds; a fault
        // the check cannot foresee (SIGBUS past a file's end) kills only the runner's child.
        unsafe { std::ptr::write_bytes(address as *mut u8, byte, length as usize) };
        Ok(Observed::Stored)
    }

    fn load(&mut self, address: u64, length: u64, expect: u8) -> Result<Observed, String> {
        match self.mapping(address, length) {
            Some(m) if m.prot & prot::PROT_READ != 0 => {}
            _ => return Ok(Observed::Fault),
        }
        self.refuse_blocking(address, length, "a load")?;
        // SAFETY: as in store().
        let bytes = unsafe { std::slice::from_raw_parts(address as *const u8, length as usize) };
        Ok(match bytes.iter().position(|&b| b != expect) {
            Some(offset) => Observed::Mismatch { offset: offset as u64, byte: bytes[offset] },
            None => Observed::Loaded,
        })
    }

    /// madvise(2) where the run's mappings are; a range reaching past them is advised only on
    /// their part and answered -ENOMEM (the kernel's answer for unmapped parts; the
    /// allocator's memory there is not the scenario's).
    fn madvise(&mut self, address: u64, length: u64, advice: Advice) -> Result<i64, String> {
        let code = match advice {
            Advice::DontNeed => libc::MADV_DONTNEED,
            Advice::Free => libc::MADV_FREE,
            Advice::Cold => libc::MADV_COLD,
            Advice::PageOut => libc::MADV_PAGEOUT,
            Advice::HugePage => libc::MADV_HUGEPAGE,
            Advice::PopulateRead => 22,
            Advice::PopulateWrite => 23,
            Advice::WipeOnFork => libc::MADV_WIPEONFORK,
            Advice::KeepOnFork => libc::MADV_KEEPONFORK,
        };
        let populate = matches!(advice, Advice::PopulateRead | Advice::PopulateWrite);
        if populate {
            self.refuse_blocking(address, length, "a populate")?;
        }
        let Some(end) = page_end(address, length) else { return Ok(errno_of(libc::EINVAL)) };
        if !address.is_multiple_of(PAGE) || length == 0 {
            // SAFETY: madvise(2) refuses these before looking at any memory.
            let result = unsafe { libc::madvise(address as *mut libc::c_void, length as usize, code) };
            return Ok(if result < 0 { errno() } else { 0 });
        }
        let mut sorted = self.mappings.clone();
        sorted.sort_by_key(|m| m.start);
        let mut gap = false;
        let mut reached = address;
        for m in sorted.iter().filter(|m| m.start < end && m.end > address) {
            gap |= m.start > reached;
            // madvise_populate() stops at the first hole; the other advice goes on past it.
            if gap && populate {
                break;
            }
            let (from, to) = (m.start.max(address), m.end.min(end));
            // SAFETY: madvise of a part of a mapping this run made.
            if unsafe { libc::madvise(from as *mut libc::c_void, (to - from) as usize, code) } < 0 {
                return Ok(errno());
            }
            reached = to;
        }
        Ok(if gap || reached < end { errno_of(libc::ENOMEM) } else { 0 })
    }

    fn syscall(&mut self, thread: usize, instruction: &Instruction) -> Result<i64, String> {
        Ok(match instruction {
            Instruction::Mmap { length, prot, flags, file, .. } => {
                self.mmap(*length, *prot, file.map(|f| (f as usize, *flags)))?
            }
            Instruction::Munmap { address, length, .. } => {
                let address = self.value(thread, *address) as u64;
                self.munmap(address, *length)
            }
            Instruction::Mremap { address, old_length, new_length, flags, new_address, .. } => {
                let (address, new_address) =
                    (self.value(thread, *address) as u64, self.value(thread, *new_address) as u64);
                self.mremap(address, *old_length, *new_length, *flags, new_address)
            }
            Instruction::Mprotect { address, length, prot: protection, .. } => {
                let address = self.value(thread, *address) as u64;
                self.mprotect(address, *length, *protection)
            }
            Instruction::Madvise { address, length, advice, .. } => {
                let address = self.value(thread, *address) as u64;
                self.madvise(address, *length, *advice)?
            }
            Instruction::Pread { file, buffer, length, offset, direct, .. } => {
                let buffer = self.value(thread, *buffer) as u64;
                self.pread(*file as usize, buffer, *length, *offset, *direct)?
            }
            Instruction::Ftruncate { file, length, .. } => self.ftruncate(*file as usize, *length)?,
            Instruction::MovePagesStatus { address, .. } => {
                let address = self.value(thread, *address) as u64;
                move_pages_status(address)
            }
            Instruction::Smaps { address, field, .. } => {
                let address = self.value(thread, *address) as u64;
                smaps_field(address, &format!("{field:?}"))?
            }
            Instruction::ProcPage { address, file, .. } => {
                let address = self.value(thread, *address) as u64;
                proc_page(address, *file)?
            }
            Instruction::Userfaultfd { .. }
            | Instruction::UffdioApi { .. }
            | Instruction::UffdioRegister { .. }
            | Instruction::UffdioFill { .. }
            | Instruction::UffdioMove { .. } => self.userfaultfd(thread, instruction)?,
            other => return Err(format!("the runner cannot execute {}", describe(other))),
        })
    }

    /// userfaultfd(2) and its ioctls (UFFDIO_API, REGISTER, COPY, ZEROPAGE, MOVE).
    fn userfaultfd(&mut self, thread: usize, instruction: &Instruction) -> Result<i64, String> {
        Ok(match instruction {
            Instruction::Userfaultfd { .. } => {
                // SAFETY: a plain syscall with no pointers.
                let fd = unsafe { libc::syscall(libc::SYS_userfaultfd, libc::O_CLOEXEC | libc::O_NONBLOCK) };
                if fd < 0 {
                    return Err(format!("userfaultfd() is not available here ({})", errno()));
                }
                self.fds.push(fd as i32);
                fd
            }
            Instruction::UffdioApi { uffd, api, .. } => {
                let mut api = [*api, 0, 0];
                ioctl(self.value(thread, *uffd), uffdio::API, api.as_mut_ptr().cast())
            }
            Instruction::UffdioRegister { uffd, address, length, .. } => {
                let start = self.value(thread, *address) as u64;
                let Some(end) = page_end(start, *length) else { return Ok(errno_of(libc::EINVAL)) };
                // Registering the runner's own memory would make its next access to it sleep;
                // holes the run made are fine (the kernel registers the VMAs it meets).
                if self.covered_until(start, end) < end && self.foreign_mapping_in(start, end)? {
                    return Err("not run live: the range to register holds memory of the runner's own".to_string());
                }
                let mut register = [start, end - start, uffdio::REGISTER_MODE_MISSING, 0];
                ioctl(self.value(thread, *uffd), uffdio::REGISTER, register.as_mut_ptr().cast())
            }
            Instruction::UffdioFill { uffd, to, from, length, .. } => {
                let fd = self.value(thread, *uffd);
                let dst = self.value(thread, *to) as u64;
                capped(*length, "a UFFDIO fill")?;
                match from {
                    Some(from) => {
                        // The source is read with copy_from_user(): a registered missing page
                        // there faults into handle_userfault() (on 6.18, a livelock).
                        let src = self.value(thread, *from) as u64;
                        self.refuse_blocking(src, *length, "UFFDIO_COPY's source")?;
                        let mut copy = [dst, src, *length, 0, 0];
                        let result = ioctl(fd, uffdio::COPY, copy.as_mut_ptr().cast());
                        filled(result, copy[4] as i64)
                    }
                    None => {
                        let mut zeropage = [dst, *length, 0, 0];
                        let result = ioctl(fd, uffdio::ZEROPAGE, zeropage.as_mut_ptr().cast());
                        filled(result, zeropage[3] as i64)
                    }
                }
            }
            Instruction::UffdioMove { uffd, to, from, length, allow_src_holes, .. } => {
                let mode = if *allow_src_holes { uffdio::MOVE_MODE_ALLOW_SRC_HOLES } else { 0 };
                let (dst, src) = (self.value(thread, *to) as u64, self.value(thread, *from) as u64);
                // Moving the runner's own pages away would take its memory (uffd_move_lock():
                // no VMA at the source is -ENOENT).
                if !self.owns(src) {
                    return Ok(errno_of(libc::ENOENT));
                }
                let mut moved = [dst, src, *length, mode, 0];
                let result = ioctl(self.value(thread, *uffd), uffdio::MOVE, moved.as_mut_ptr().cast());
                filled(result, moved[4] as i64)
            }
            other => return Err(format!("the runner cannot execute {}", describe(other))),
        })
    }

    /// mmap() as the model places mappings: a page apart from any other, anonymous ones 2 MiB-
    /// aligned from 2 MiB up (so THP faults happen where they do in the model). `file`: the
    /// scenario file to map from offset 0, and MAP_SHARED or MAP_PRIVATE.
    fn mmap(&mut self, length: u64, protection: u32, file: Option<(usize, u32)>) -> Result<i64, String> {
        if length == 0 {
            return Ok(-i64::from(libc::EINVAL));
        }
        let Some(length) = page_end(0, length) else { return Ok(errno_of(libc::ENOMEM)) };
        let align = if length >= PMD && file.is_none() { PMD } else { PAGE };
        let Some(reserve) = length.checked_add(align + 2 * PAGE) else { return Ok(errno_of(libc::ENOMEM)) };
        // SAFETY: a new private anonymous mapping; nothing else refers to it.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                reserve as usize,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Ok(errno());
        }
        let base = base as u64;
        let start = (base + PAGE).div_ceil(align) * align;
        // Trim the reservation to [start, start + length), leaving guard gaps around it.
        unsafe {
            libc::munmap(base as *mut libc::c_void, (start - base) as usize);
            libc::munmap((start + length) as *mut libc::c_void, (base + reserve - start - length) as usize);
        }
        let result = match file {
            // SAFETY: our own mapping.
            None => match unsafe { libc::mprotect(start as *mut libc::c_void, length as usize, libc_prot(protection)) }
            {
                0 => 0,
                _ => errno(),
            },
            Some((index, flags)) => self.map_file(start, length, protection, index, flags)?,
        };
        if result < 0 {
            // SAFETY: the reservation is ours.
            unsafe { libc::munmap(start as *mut libc::c_void, length as usize) };
            return Ok(result);
        }
        self.mappings.push(Mapping { start, end: start + length, prot: protection });
        Ok(start as i64)
    }

    /// Maps the run's copy of scenario file `index` over [start, start + length) (a reservation
    /// of ours), opened O_RDWR without O_DIRECT; the mapping keeps the file open.
    fn map_file(&self, start: u64, length: u64, protection: u32, index: usize, flags: u32) -> Result<i64, String> {
        let path =
            self.files.get(index).ok_or_else(|| format!("mmap of file {index}: the scenario has no such file"))?;
        let handle = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| format!("{}: open: {e}", path.display()))?;
        let shared =
            if flags & mmcheck_model::program::map::MAP_SHARED != 0 { libc::MAP_SHARED } else { libc::MAP_PRIVATE };
        // SAFETY: MAP_FIXED over the reservation this run just made and owns.
        let address = unsafe {
            libc::mmap(
                start as *mut libc::c_void,
                length as usize,
                libc_prot(protection),
                shared | libc::MAP_FIXED,
                handle.as_raw_fd(),
                0,
            )
        };
        Ok(if address == libc::MAP_FAILED { errno() } else { 0 })
    }

    /// munmap(2) of the run's part of the range, with the kernel's checks of the range
    /// (__do_munmap(): unaligned, empty or past TASK_SIZE is -EINVAL; holes are fine).
    fn munmap(&mut self, address: u64, length: u64) -> i64 {
        const TASK_SIZE: u64 = (1 << 47) - PAGE;
        let Some(end) = page_end(address, length) else { return errno_of(libc::EINVAL) };
        if !address.is_multiple_of(PAGE) || end == address || end > TASK_SIZE {
            return errno_of(libc::EINVAL);
        }
        let pieces: Vec<Mapping> = self.mappings.iter().copied().filter(|m| m.start < end && m.end > address).collect();
        for m in pieces {
            let (from, to) = (m.start.max(address), m.end.min(end));
            // SAFETY: a part of a mapping this run made; the allocator's memory in the range
            // (in the gaps between the run's mappings) is not the scenario's and stays.
            if unsafe { libc::munmap(from as *mut libc::c_void, (to - from) as usize) } < 0 {
                return errno();
            }
        }
        self.forget(address, end);
        0
    }

    fn mprotect(&mut self, address: u64, length: u64, protection: u32) -> i64 {
        let Some(end) = page_end(address, length) else { return errno_of(libc::ENOMEM) };
        if !address.is_multiple_of(PAGE) || end == address {
            // SAFETY: mprotect(2) answers these before looking at any memory.
            let result = unsafe { libc::mprotect(address as *mut libc::c_void, length as usize, 0) };
            return if result < 0 { errno() } else { 0 };
        }
        // The kernel changes the mapped part from the start up to a hole (-ENOMEM then): only
        // the run's mappings are changed, never the allocator's memory past them.
        let reached = self.covered_until(address, end);
        if reached == address {
            return errno_of(libc::ENOMEM);
        }
        // SAFETY: mprotect of [address, reached), all in mappings this run made.
        let result = unsafe {
            libc::mprotect(address as *mut libc::c_void, (reached - address) as usize, libc_prot(protection))
        };
        if result < 0 {
            return errno();
        }
        self.split_range(address, reached, |m| Some(Mapping { prot: protection, ..m }));
        if reached < end {
            errno_of(libc::ENOMEM)
        } else {
            0
        }
    }

    /// mremap(2) of a range this run mapped (a fixed target must be one too: the runner never
    /// moves memory over the allocator's).
    fn mremap(&mut self, address: u64, old_length: u64, new_length: u64, flags: u32, new_address: u64) -> i64 {
        let (Some(old_length), Some(new_length)) = (page_end(0, old_length), page_end(0, new_length)) else {
            return errno_of(libc::EINVAL);
        };
        let Some(old) = self.mapping(address, old_length.max(PAGE)) else {
            return -i64::from(libc::EFAULT);
        };
        let fixed = flags & mmcheck_model::program::mremap::MREMAP_FIXED != 0;
        if fixed && self.mapping(new_address, new_length).is_none() {
            return -i64::from(libc::EINVAL);
        }
        // Growing in place could take the guard gap after the mapping; the model's placement
        // leaves one page free there too.
        // SAFETY: mremap of this run's own mapping, to a target it owns.
        let result = unsafe {
            libc::mremap(
                address as *mut libc::c_void,
                old_length as usize,
                new_length as usize,
                flags as i32,
                new_address as *mut libc::c_void,
            )
        };
        if result == libc::MAP_FAILED {
            return errno();
        }
        let to = result as u64;
        if fixed {
            self.forget(to, to + new_length);
        }
        self.forget(address, address + old_length);
        self.mappings.push(Mapping { start: to, end: to + new_length, prot: old.prot });
        to as i64
    }

    /// Drops [start, end) from the run's record of its mappings.
    fn forget(&mut self, start: u64, end: u64) {
        self.split_range(start, end, |_| None);
    }

    /// Splits the recorded mappings at `start` and `end` and replaces each piece inside
    /// [start, end) with what `inside` makes of it (None: the piece is gone).
    fn split_range(&mut self, start: u64, end: u64, inside: impl Fn(Mapping) -> Option<Mapping>) {
        let mut kept = Vec::new();
        for m in self.mappings.drain(..) {
            if m.end <= start || m.start >= end {
                kept.push(m);
                continue;
            }
            if m.start < start {
                kept.push(Mapping { end: start, ..m });
            }
            kept.extend(inside(Mapping { start: m.start.max(start), end: m.end.min(end), ..m }));
            if m.end > end {
                kept.push(Mapping { start: end, ..m });
            }
        }
        self.mappings = kept;
    }

    fn file(&self, index: usize) -> Result<&PathBuf, String> {
        self.files.get(index).ok_or_else(|| format!("file {index}: the scenario has no such file"))
    }

    fn pread(&mut self, file: usize, buffer: u64, length: u64, offset: u64, direct: bool) -> Result<i64, String> {
        let path = self.file(file)?;
        let handle = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(if direct { libc::O_DIRECT } else { 0 })
            .open(path)
            .map_err(|e| format!("{}: open{}: {e}", path.display(), if direct { " O_DIRECT" } else { "" }))?;
        // The kernel checks the buffer (GUP with FOLL_WRITE, or copy_to_user()'s fixup): an
        // unmapped or read-only one is EFAULT, never a signal, and it stops at the guard gap
        // after the run's mapping. A buffer starting outside the run's mappings could be the
        // runner's own memory: -EFAULT, as the model has nothing there.
        if !self.owns(buffer) && length > 0 {
            return Ok(errno_of(libc::EFAULT));
        }
        let size = handle.metadata().map_err(|e| format!("{}: {e}", path.display()))?.len();
        let transferred = length.min(size.saturating_sub(offset));
        let touched = if direct { page_end(0, transferred).unwrap_or(transferred) } else { transferred };
        self.refuse_blocking(buffer, touched, if direct { "an O_DIRECT read's buffer" } else { "a read's buffer" })?;
        // SAFETY: pread(2) writes only through the kernel's own user-copy/GUP checks.
        let n = unsafe { libc::pread(handle.as_raw_fd(), buffer as *mut libc::c_void, length as usize, offset as i64) };
        Ok(if n < 0 { errno() } else { n as i64 })
    }

    /// ftruncate(2) of one of our own files (a larger size makes a hole: no data is written).
    fn ftruncate(&mut self, file: usize, length: u64) -> Result<i64, String> {
        let path = self.file(file)?;
        let handle = std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(|e| format!("{}: open for ftruncate: {e}", path.display()))?;
        // SAFETY: a plain syscall on our own file descriptor.
        let result = unsafe { libc::ftruncate(handle.as_raw_fd(), length as libc::off_t) };
        Ok(if result < 0 { errno() } else { 0 })
    }

    fn cleanup_mappings(&mut self) {
        for m in self.mappings.drain(..) {
            // SAFETY: our own mapping.
            unsafe { libc::munmap(m.start as *mut libc::c_void, (m.end - m.start) as usize) };
        }
    }

    fn cleanup(&mut self) {
        self.cleanup_mappings();
        for thread in &mut self.threads {
            if let Some(remote) = thread.remote.take() {
                // SAFETY: a child of ours that never ran: stop and reap it.
                unsafe {
                    libc::kill(remote.pid, libc::SIGKILL);
                    libc::close(remote.go);
                    libc::close(remote.results);
                    libc::waitpid(remote.pid, std::ptr::null_mut(), 0);
                }
            }
        }
        for fd in self.fds.drain(..) {
            // SAFETY: an fd this run opened.
            unsafe { libc::close(fd) };
        }
    }
}

/// The model's PROT_* bits as mmap(2)'s.
fn libc_prot(protection: u32) -> i32 {
    let mut flags = libc::PROT_NONE;
    if protection & prot::PROT_READ != 0 {
        flags |= libc::PROT_READ;
    }
    if protection & prot::PROT_WRITE != 0 {
        flags |= libc::PROT_WRITE;
    }
    flags
}

fn errno_of(code: i32) -> i64 {
    -i64::from(code)
}

/// Refuses an instruction touching more than [`ACCESS_BYTES_MAX`], or one that could take
/// this process past [`RESIDENT_BYTES_MAX`] resident.
fn capped(length: u64, what: &str) -> Result<(), String> {
    if length > ACCESS_BYTES_MAX {
        return Err(format!(
            "not run live: {what} of {length:#x} bytes (the runner's cap is {} MiB)",
            ACCESS_BYTES_MAX >> 20
        ));
    }
    let statm = std::fs::read_to_string("/proc/self/statm").map_err(|e| format!("/proc/self/statm: {e}"))?;
    let resident_pages: u64 = statm.split_whitespace().nth(1).and_then(|f| f.parse().ok()).unwrap_or(0);
    if resident_pages.saturating_mul(PAGE).saturating_add(length) > RESIDENT_BYTES_MAX {
        return Err(format!(
            "not run live: {what} could take the run past {} MiB resident (the runner's cap)",
            RESIDENT_BYTES_MAX >> 20
        ));
    }
    Ok(())
}

/// `address + length` rounded up to a page, None past the end of the address space.
fn page_end(address: u64, length: u64) -> Option<u64> {
    address.checked_add(length)?.checked_next_multiple_of(PAGE)
}

/// The VMAs registered with a userfaultfd for missing faults (smaps' VmFlags `um`).
fn uffd_missing_ranges() -> Result<Vec<(u64, u64)>, String> {
    let text = std::fs::read_to_string("/proc/self/smaps").map_err(|e| format!("/proc/self/smaps: {e}"))?;
    let mut ranges = Vec::new();
    let mut current = None;
    for line in text.lines() {
        if let Some(flags) = line.strip_prefix("VmFlags:") {
            if flags.split_whitespace().any(|f| f == "um") {
                ranges.extend(current);
            }
        } else if let Some(range) = vma_range(line) {
            current = Some(range);
        }
    }
    Ok(ranges)
}

/// The range of a smaps header line ("start-end perms ...").
fn vma_range(line: &str) -> Option<(u64, u64)> {
    let (range, _) = line.split_once(' ')?;
    let (start, end) = range.split_once('-')?;
    Some((u64::from_str_radix(start, 16).ok()?, u64::from_str_radix(end, 16).ok()?))
}

fn ioctl(fd: i64, request: u64, argument: *mut libc::c_void) -> i64 {
    // SAFETY: the argument points to a struct of the size the request encodes.
    let result = unsafe { libc::ioctl(fd as i32, request as _, argument) };
    if result < 0 {
        errno()
    } else {
        0
    }
}

/// A UFFDIO_COPY/ZEROPAGE/MOVE result: the bytes done, or the error.
fn filled(result: i64, done: i64) -> i64 {
    if done > 0 {
        done
    } else if result < 0 {
        result
    } else {
        done
    }
}

fn move_pages_status(address: u64) -> i64 {
    let pages = [address as *mut libc::c_void];
    let mut status = [0i32];
    // SAFETY: one page pointer and one status slot, pid 0 (this process).
    let result = unsafe {
        libc::syscall(libc::SYS_move_pages, 0, 1usize, pages.as_ptr(), std::ptr::null::<i32>(), status.as_mut_ptr(), 0)
    };
    if result < 0 {
        errno()
    } else {
        i64::from(status[0])
    }
}

fn read_u64_at(path: &str, index: u64) -> Result<u64, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("{path}: {e}"))?;
    let mut bytes = [0u8; 8];
    file.read_exact_at(&mut bytes, index * 8).map_err(|e| format!("{path}: {e}"))?;
    Ok(u64::from_le_bytes(bytes))
}

fn pagemap_entry(address: u64) -> Result<u64, String> {
    read_u64_at("/proc/self/pagemap", address / PAGE)
}

fn proc_page(address: u64, file: ProcPageFile) -> Result<i64, String> {
    let entry = pagemap_entry(address)?;
    if file == ProcPageFile::Pagemap {
        return Ok((entry & PAGEMAP_FLAGS) as i64);
    }
    if entry & PM_PRESENT == 0 {
        return Ok(0);
    }
    let pfn = entry & ((1 << 55) - 1);
    if pfn == 0 {
        return Err("pagemap shows no pfns (not root?)".into());
    }
    Ok(match file {
        ProcPageFile::KpageCount => read_u64_at("/proc/kpagecount", pfn)? as i64,
        _ => (read_u64_at("/proc/kpageflags", pfn)? & kpf::COMPARED) as i64,
    })
}

/// The field (kB) of the smaps block of the VMA holding `address`; -ENOENT without one.
fn smaps_field(address: u64, field: &str) -> Result<i64, String> {
    let text = std::fs::read_to_string("/proc/self/smaps").map_err(|e| format!("/proc/self/smaps: {e}"))?;
    let name = match field {
        "SharedClean" => "Shared_Clean",
        "SharedDirty" => "Shared_Dirty",
        "PrivateClean" => "Private_Clean",
        "PrivateDirty" => "Private_Dirty",
        "LazyFree" => "LazyFree",
        other => other,
    };
    let mut inside = false;
    for line in text.lines() {
        if let Some((start, end)) = vma_range(line) {
            inside = start <= address && address < end;
            continue;
        }
        if inside {
            if let Some(rest) = line.strip_prefix(name).and_then(|r| r.strip_prefix(':')) {
                let kb = rest.trim().trim_end_matches("kB").trim();
                return kb.parse().map_err(|e| format!("smaps {name}: {e}"));
            }
        }
    }
    Ok(-i64::from(libc::ENOENT))
}

#[cfg(test)]
mod tests {
    use super::{assemble, child, Duration, Message};
    use crate::Observed;
    use mmcheck_model::program::{Instruction, Operand};
    use mmcheck_model::system::ThreadSpec;
    use mmcheck_model::SystemSpec;

    fn spec() -> SystemSpec {
        let load =
            Instruction::Load { address: Operand::Constant(0), length: 1, expect: 0, location: Default::default() };
        let program = vec![load.clone(), load];
        SystemSpec {
            threads: vec![ThreadSpec { name: "p".into(), mm: Some(0), program, starts: true, registers: 1 }],
            mms: 1,
            ..SystemSpec::default()
        }
    }

    fn outcome(end: child::End) -> child::Outcome {
        child::Outcome { messages: vec![Message::At { thread: 0, pc: 1 }], end }
    }

    #[test]
    fn a_timeout_is_the_observation_of_the_instruction_it_was_at() {
        let run = assemble(&spec(), outcome(child::End::TimedOut), Duration::from_secs(2)).expect("a run");
        assert_eq!(run.observations.len(), 1);
        assert_eq!((run.observations[0].pc, &run.observations[0].observed), (1, &Observed::Timeout));
        assert_eq!(
            run.stopped.as_deref(),
            Some("timeout: not finished after 2 s (the runner's processes were killed) at p #1 (load)")
        );
    }

    #[test]
    fn a_signal_is_a_fault_of_the_instruction_it_was_at() {
        let run =
            assemble(&spec(), outcome(child::End::Signaled(libc::SIGBUS)), Duration::from_secs(2)).expect("a run");
        assert_eq!(run.observations[0].observed, Observed::Fault);
        assert!(run.stopped.as_deref().is_some_and(|s| s.starts_with("fault: SIGBUS at p #1")));
    }
}
