//! A deterministic mutation fuzzer of the `mmcheck` binary: mutated built-in scenarios (with
//! mutated options) for `check`, and mutated replay tokens for `replay`. An input fails if the
//! binary panics, dies of a signal, exits outside 0–2, or runs past its limits.
//!
//! - `cargo test -p mmcheck --test fuzz`: a small sample (every `cargo test`).
//! - `cargo test --profile fuzz -p mmcheck --test fuzz -- --ignored`: 10,000 inputs (`.ci/run`;
//!   the fuzz profile is release with overflow checks and debug assertions on).
//! - `MMCHECK_FUZZ_INPUTS=N MMCHECK_FUZZ_SEED=S`: any number from any seed (`bench/fuzz.sh`).
//!
//! Input `i` of seed `s` is a function of `(s, i)` alone, so a failure names its input and
//! reproduces whatever the number of workers; each failing input is written to
//! `target/fuzz-findings/` with the command that runs it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The time limit every fuzzed `check` runs with.
const SECONDS_MAX: u64 = 1;
/// How far past its time limit a run may end and still count as honouring it: process start,
/// parsing, building and the report around the search (the clock is checked between steps).
const SLACK_SECONDS: u64 = 4;
/// A run still alive at this point is killed and reported as a hang.
const KILL_SECONDS: u64 = 15;

/// splitmix64: small, fast, and the same on every machine.
struct Rng(u64);

impl Rng {
    fn new(seed: u64, input: u64) -> Rng {
        let mut rng = Rng(seed ^ input.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        rng.next();
        rng
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..bound` (`bound > 0`).
    fn below(&mut self, bound: usize) -> usize {
        (self.next() % bound as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
}

/// Numbers at the edges: of the integer types, of page and huge-page sizes, of the limits.
const NUMBERS: &[&str] = &[
    "0",
    "1",
    "2",
    "3",
    "-1",
    "7",
    "31",
    "32",
    "33",
    "63",
    "64",
    "255",
    "511",
    "512",
    "4095",
    "4096",
    "4097",
    "2M",
    "1G",
    "4G",
    "64G",
    "4000G",
    "1T",
    "0x7fffffffffffffff",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775808",
    "18446744073709551615",
    "18446744073709551616",
    "4294967295",
    "4294967296",
    "16777216",
    "99999999999999999999999999",
    "MAX",
    "MIN",
    "0 - 4K",
    "MIN / -1",
    "MIN % -1",
    "1 << 63",
    "1 << 64",
];

/// Fragments of the language and of its errors: brackets, operators, keywords, odd bytes.
const FRAGMENTS: &[&str] = &[
    "(",
    ")",
    "{",
    "}",
    "{\n",
    "}\n",
    "-",
    "+",
    "*",
    "/",
    "%",
    "<<",
    ">>",
    "==",
    ",",
    "=",
    "\"",
    "#",
    "\n",
    "\t",
    "\0",
    "\u{feff}",
    "é",
    "fork c {\n",
    "process q {\n",
    "assert ",
    "expect kernel >= 6.18: verified\n",
    "expect kernel < 5.16: violation data-loss\n",
    "param pages = 1\n",
    "tag conformance\n",
    "load(buf, 4K)",
    "store(buf, 4K, 1)",
    "munmap(buf, 4K)",
    "mmap(4K, read|write, private|anonymous)",
    "madvise(buf, 4K, free)",
    "wait",
    "exit",
    "buf",
    "r",
    "x_very_long_identifier_that_goes_on_and_on_and_on_and_on_and_on_and_on_and_on",
];

const KERNELS: &[&str] = &["6.18", "5.16", "6.1", "6.18 ", "+5.16", "05.016", "0.0", "99.99", "6", "6.18.1", "", "x"];
const MODELS: &[&str] = &["sc", "x86", "arm64", "lkmm", "power", ""];

/// A built-in scenario: its name (the `scenario NAME` line) and text.
struct Seed {
    name: String,
    text: String,
}

fn seeds() -> Vec<Seed> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("the built-in scenarios")
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "mmc"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).expect("a built-in scenario is UTF-8");
            let name = text
                .lines()
                .find_map(|line| line.strip_prefix("scenario "))
                .and_then(|rest| rest.split_whitespace().next())
                .unwrap_or("madv-free-dio")
                .to_string();
            Seed { name, text }
        })
        .collect()
}

/// One generated input: the arguments after `mmcheck`, and the scenario file's bytes if any
/// (the argument `@FILE` stands for its path).
struct Input {
    args: Vec<String>,
    file: Option<Vec<u8>>,
}

impl Input {
    fn describe(&self) -> String {
        self.args.iter().map(|a| format!("'{}'", a.replace('\'', "'\\''"))).collect::<Vec<_>>().join(" ")
    }
}

fn generate(seeds: &[Seed], rng: &mut Rng) -> Input {
    if rng.chance(20) {
        replay_input(seeds, rng)
    } else {
        check_input(seeds, rng)
    }
}

fn check_input(seeds: &[Seed], rng: &mut Rng) -> Input {
    let seed = rng.pick(seeds);
    let mut text = seed.text.clone().into_bytes();
    let mutations = 1 + rng.below(3);
    for _ in 0..mutations {
        mutate_text(&mut text, seeds, rng);
    }
    let mut args: Vec<String> = vec!["check".into(), "@FILE".into()];
    args.extend(["--max-seconds".into(), SECONDS_MAX.to_string()]);
    for _ in 0..rng.below(3) {
        args.extend(option(&seed.text, rng));
    }
    // The states and memory limits unless an option set them (to a value at the edges).
    for (flag, value) in [("--max-states", "20000"), ("--max-memory-mb", "2048")] {
        if !args.iter().any(|a| a == flag) {
            args.extend([flag.to_string(), value.to_string()]);
        }
    }
    Input { args, file: Some(text) }
}

/// One option with a value at the edges. Limits are only ever tightened: `--max-seconds`
/// stays as set, so a run past it is the binary's fault.
fn option(text: &str, rng: &mut Rng) -> Vec<String> {
    let number = rng.pick(NUMBERS).replace(' ', "");
    match rng.below(10) {
        0 => vec!["--kernel".into(), rng.pick(KERNELS).to_string()],
        1 => vec!["--memory-model".into(), rng.pick(MODELS).to_string()],
        2 => vec!["--strategy".into(), "random".into(), "--seed".into(), number],
        3 => vec!["--strategy".into(), "pct".into(), "--pct-depth".into(), number],
        4 => vec!["--preemption-bound".into(), number],
        5 => vec![rng.pick(&["--max-depth", "--max-states"]).to_string(), number],
        6 => vec!["--max-memory-mb".into(), number],
        7 => vec!["--max-schedules".into(), number],
        8 => vec!["--patch".into(), format!("{}={}", identifier(text, rng), rng.pick(&["on", "off", "x"]))],
        _ => vec!["--set".into(), format!("{}={number}", identifier(text, rng))],
    }
}

/// A word of the scenario (parameters, registers, names), or a made-up one.
fn identifier(text: &str, rng: &mut Rng) -> String {
    let words: Vec<&str> = text
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
        .filter(|w| w.chars().next().is_some_and(|c| c.is_ascii_alphabetic()))
        .collect();
    if words.is_empty() || rng.chance(10) {
        "nosuch".into()
    } else {
        rng.pick(&words).to_string()
    }
}

/// One mutation, weighted towards those that keep the scenario parsing (numbers at the edges,
/// whole lines moved), so that most inputs reach the model and not only the parser.
fn mutate_text(text: &mut Vec<u8>, seeds: &[Seed], rng: &mut Rng) {
    match rng.below(100) {
        0..=39 => replace_number(text, rng),
        40..=47 => line_edit(text, rng, LineEdit::Delete),
        48..=55 => line_edit(text, rng, LineEdit::Duplicate),
        56..=61 => line_edit(text, rng, LineEdit::Swap),
        62..=71 => {
            let other = &rng.pick(seeds).text;
            let lines: Vec<&str> = other.lines().collect();
            let line = format!("{}\n", rng.pick(&lines));
            insert(text, rng, line.as_bytes());
        }
        72..=81 => {
            let fragment = rng.pick(FRAGMENTS).as_bytes().to_vec();
            insert(text, rng, &fragment);
        }
        82..=87 => delete_range(text, rng),
        88..=92 => nest(text, rng),
        93..=95 => {
            let at = rng.below(text.len() + 1);
            text.truncate(at);
        }
        _ => {
            if !text.is_empty() {
                let at = rng.below(text.len());
                text[at] = rng.next() as u8;
            }
        }
    }
}

/// Replaces one run of digits (a literal, or part of one) with a number at the edges.
fn replace_number(text: &mut Vec<u8>, rng: &mut Rng) {
    let starts: Vec<usize> = (0..text.len())
        .filter(|&i| text[i].is_ascii_digit() && (i == 0 || !text[i - 1].is_ascii_alphanumeric()))
        .collect();
    if starts.is_empty() {
        return;
    }
    let start = *rng.pick(&starts);
    let end = (start..text.len()).find(|&i| !text[i].is_ascii_alphanumeric()).unwrap_or(text.len());
    let number = rng.pick(NUMBERS).as_bytes().to_vec();
    text.splice(start..end, number);
}

enum LineEdit {
    Delete,
    Duplicate,
    Swap,
}

fn line_edit(text: &mut Vec<u8>, rng: &mut Rng, edit: LineEdit) {
    let mut lines: Vec<Vec<u8>> = text.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect();
    let at = rng.below(lines.len());
    match edit {
        LineEdit::Delete => {
            lines.remove(at);
        }
        LineEdit::Duplicate => {
            let times = if rng.chance(10) { 1 + rng.below(2000) } else { 1 };
            let line = lines[at].clone();
            for _ in 0..times {
                lines.insert(at, line.clone());
            }
        }
        LineEdit::Swap => {
            let other = rng.below(lines.len());
            lines.swap(at, other);
        }
    }
    *text = lines.join(&b'\n');
}

fn insert(text: &mut Vec<u8>, rng: &mut Rng, bytes: &[u8]) {
    let at = rng.below(text.len() + 1);
    text.splice(at..at, bytes.iter().copied());
}

fn delete_range(text: &mut Vec<u8>, rng: &mut Rng) {
    if text.is_empty() {
        return;
    }
    let start = rng.below(text.len());
    let end = (start + 1 + rng.below(40)).min(text.len());
    text.drain(start..end);
}

/// Deep nesting at a random point: brackets, unary minus, long chains, nested blocks.
fn nest(text: &mut Vec<u8>, rng: &mut Rng) {
    let depth = *rng.pick(&[10, 100, 300, 1000, 10_000, 40_000]);
    let (open, middle, close) = match rng.below(5) {
        0 => ("(", "1", ")"),
        1 => ("-", "1", ""),
        2 => ("", "1", " + 1"),
        3 => ("fork c {\n", "wait\n", "}\n"),
        _ => ("[", "", "]"),
    };
    let mut nested = open.repeat(depth);
    nested.push_str(middle);
    nested.push_str(&close.repeat(depth));
    insert(text, rng, nested.as_bytes());
}

fn replay_input(seeds: &[Seed], rng: &mut Rng) -> Input {
    let seed = rng.pick(seeds);
    let kernel = rng.pick(&KERNELS[..3]);
    let runs: Vec<String> = (0..1 + rng.below(12))
        .map(|_| {
            let thread = rng.below(4);
            let count = 1 + rng.below(40);
            if rng.chance(20) {
                format!("{thread}:{}*{count}", rng.below(3))
            } else {
                format!("{thread}*{count}")
            }
        })
        .collect();
    let schedule = runs.join(".");
    let mut token = if rng.chance(50) {
        format!("mmc1/{}/{kernel}/-/{schedule}", seed.name)
    } else {
        format!("mmc2/{}/{kernel}/-/{}/{schedule}", seed.name, rng.pick(&MODELS[..4]))
    }
    .into_bytes();
    for _ in 0..1 + rng.below(3) {
        mutate_token(&mut token, seed, rng);
    }
    Input { args: vec!["replay".into(), String::from_utf8_lossy(&token).into_owned()], file: None }
}

fn mutate_token(token: &mut Vec<u8>, seed: &Seed, rng: &mut Rng) {
    match rng.below(6) {
        0 => replace_number(token, rng),
        1 => {
            let fragment = rng.pick(&["/", "*", ":", ".", ",", "=", "-", "+", "mmc3", " "]).as_bytes().to_vec();
            insert(token, rng, &fragment);
        }
        2 => delete_range(token, rng),
        3 => {
            // A parameter override, the way --set and the token carry them.
            let set = format!("{}={}", identifier(&seed.text, rng), rng.pick(NUMBERS).replace(' ', ""));
            let text = String::from_utf8_lossy(token).replacen("/-/", &format!("/{set}/"), 1);
            *token = text.into_bytes();
        }
        4 => {
            let at = rng.below(token.len() + 1);
            token.truncate(at);
        }
        _ => {}
    }
}

/// What one run did.
enum Outcome {
    Exited { code: i32, elapsed: Duration },
    Failed(String),
}

fn run(input: &Input, file: &Path) -> Outcome {
    if let Some(bytes) = &input.file {
        std::fs::write(file, bytes).expect("the fuzz input is written");
    }
    let args: Vec<String> =
        input.args.iter().map(|a| if a == "@FILE" { file.display().to_string() } else { a.clone() }).collect();
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_mmcheck"))
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mmcheck starts");
    let stderr = child.stderr.take().expect("stderr is piped");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let mut stderr = stderr;
        let _ = std::io::Read::read_to_string(&mut std::io::Read::take(&mut stderr, 1 << 20), &mut text);
        text
    });
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for mmcheck") {
            break Some(status);
        }
        if started.elapsed() > Duration::from_secs(KILL_SECONDS) {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let elapsed = started.elapsed();
    let stderr = reader.join().unwrap_or_default();
    let Some(status) = status else {
        return Outcome::Failed(format!("still running after {KILL_SECONDS} s: killed"));
    };
    if stderr.contains("panicked") {
        return Outcome::Failed(format!("panicked: {}", stderr.lines().find(|l| l.contains("panicked")).unwrap_or("")));
    }
    let Some(code) = status.code() else {
        return Outcome::Failed(format!("killed by a signal ({status})"));
    };
    if code > 2 {
        return Outcome::Failed(format!("exit code {code}: {}", stderr.lines().last().unwrap_or("")));
    }
    if input.args[0] == "check" && elapsed > Duration::from_secs(SECONDS_MAX + SLACK_SECONDS) {
        return Outcome::Failed(format!("ran {} ms under --max-seconds {SECONDS_MAX}", elapsed.as_millis()));
    }
    if std::env::var_os("MMCHECK_FUZZ_VERBOSE").is_some() {
        eprintln!("fuzz: exit {code}: {}", stderr.lines().find(|l| l.starts_with("error")).unwrap_or(""));
    }
    Outcome::Exited { code, elapsed }
}

/// Runs inputs `0..inputs` of `seed` on every core and returns how many ended with each exit
/// code; panics naming every failing input.
fn fuzz(seed: u64, inputs: u64) -> BTreeMap<i32, u64> {
    let seeds = seeds();
    let findings_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("../fuzz-findings");
    let work = tempdir();
    let next = AtomicU64::new(0);
    let codes = Mutex::new(BTreeMap::new());
    let failures = Mutex::new(Vec::new());
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let slowest = Mutex::new((Duration::ZERO, String::new()));
    std::thread::scope(|scope| {
        for worker in 0..workers {
            let (seeds, next, codes, failures, slowest, work) = (&seeds, &next, &codes, &failures, &slowest, &work);
            let findings_dir = &findings_dir;
            scope.spawn(move || {
                let file = work.join(format!("input-{worker}.mmc"));
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    if index >= inputs {
                        break;
                    }
                    let input = generate(seeds, &mut Rng::new(seed, index));
                    match run(&input, &file) {
                        Outcome::Exited { code, elapsed } => {
                            *codes.lock().unwrap().entry(code).or_insert(0) += 1;
                            let mut slowest = slowest.lock().unwrap();
                            if elapsed > slowest.0 {
                                *slowest = (elapsed, input.describe());
                            }
                        }
                        Outcome::Failed(why) => {
                            let saved = save_finding(findings_dir, seed, index, &input);
                            failures.lock().unwrap().push(format!("input {index}: {why}\n  {saved}"));
                        }
                    }
                }
            });
        }
    });
    let _ = std::fs::remove_dir_all(&work);
    let codes = codes.into_inner().unwrap();
    let (slowest_elapsed, slowest_input) = slowest.into_inner().unwrap();
    eprintln!(
        "fuzz: seed {seed}, {inputs} inputs, exit codes {codes:?}, slowest {} ms: mmcheck {slowest_input}",
        slowest_elapsed.as_millis()
    );
    let mut failures = failures.into_inner().unwrap();
    failures.sort();
    assert!(failures.is_empty(), "{} of {inputs} fuzz inputs failed:\n{}", failures.len(), failures.join("\n"));
    codes
}

/// Writes a failing input's file under `dir` and returns the command that reruns it.
fn save_finding(dir: &Path, seed: u64, index: u64, input: &Input) -> String {
    let _ = std::fs::create_dir_all(dir);
    let mut args = input.args.clone();
    if let Some(bytes) = &input.file {
        let path = dir.join(format!("seed{seed}-input{index}.mmc"));
        let _ = std::fs::write(&path, bytes);
        for arg in &mut args {
            if arg == "@FILE" {
                *arg = path.display().to_string();
            }
        }
    }
    format!("mmcheck {}", Input { args, file: None }.describe())
}

fn tempdir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mmcheck-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temp dir for fuzz inputs");
    dir
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Every `cargo test`: a sample, so that the harness itself stays working.
#[test]
fn fuzz_sample() {
    let codes = fuzz(env_number("MMCHECK_FUZZ_SEED", 0), 48);
    assert_eq!(codes.values().sum::<u64>(), 48, "every input ran to an exit code");
}

/// `.ci/run` (release build): 10,000 inputs, or `MMCHECK_FUZZ_INPUTS`.
#[test]
#[ignore = "10,000 runs of the binary: .ci/run runs it under the fuzz profile"]
fn fuzz_inputs() {
    let inputs = env_number("MMCHECK_FUZZ_INPUTS", 10_000);
    let codes = fuzz(env_number("MMCHECK_FUZZ_SEED", 1), inputs);
    assert_eq!(codes.values().sum::<u64>(), inputs, "every input ran to an exit code");
}

/// The generator is a function of the seed and the input's index alone.
#[test]
fn inputs_are_deterministic() {
    let seeds = seeds();
    for index in 0..200 {
        let a = generate(&seeds, &mut Rng::new(7, index));
        let b = generate(&seeds, &mut Rng::new(7, index));
        assert_eq!(a.args, b.args);
        assert_eq!(a.file, b.file);
    }
}
