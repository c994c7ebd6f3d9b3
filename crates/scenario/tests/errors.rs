//! Scenario diagnostics (message and line:column), well-formed scenarios, parameters and suite kernels.

use mmcheck_model::program::{map, prot, Advice, Instruction, Operand};
use mmcheck_model::{KernelConfig, KernelVersion, Patch, ViolationKind};
use mmcheck_scenario::{parse, Diagnostic, KernelRange, Outcome, Scenario};

/// Wraps statements in a minimal scenario: the statements start on line 3, column 3.
fn in_process(body: &str) -> String {
    format!("scenario t\nprocess p {{\n  {body}\n}}\n")
}

/// A process that maps `buf` on line 3, then `body` from line 4, column 3.
fn with_buffer(body: &str) -> String {
    in_process(&format!("buf = mmap(4K, read|write, private|anonymous)\n  {body}"))
}

#[track_caller]
fn error(source: &str) -> Diagnostic {
    match parse(source) {
        Ok(scenario) => panic!("`{source}` parsed as scenario {}", scenario.name),
        Err(diagnostic) => diagnostic,
    }
}

/// Asserts the error's message mentions `mention` and that it points at `line:column`.
#[track_caller]
fn assert_error(source: &str, mention: &str, line: usize, column: usize) -> Diagnostic {
    let diagnostic = error(source);
    assert!(
        diagnostic.message.contains(mention),
        "message `{}` does not mention `{mention}`\nsource:\n{source}",
        diagnostic.message
    );
    assert_eq!(
        diagnostic.line_column(source),
        (line, column),
        "`{}` points at the wrong place\nsource:\n{source}",
        diagnostic.message
    );
    assert!(diagnostic.start <= diagnostic.end && diagnostic.end <= source.len() + 1, "span {diagnostic:?}");
    diagnostic
}

/// The text the diagnostic's span covers.
fn spanned(source: &str, diagnostic: &Diagnostic) -> String {
    source[diagnostic.start..diagnostic.end.min(source.len())].to_string()
}

#[track_caller]
fn ok(source: &str) -> Scenario {
    parse(source).unwrap_or_else(|d| {
        let (line, column) = d.line_column(source);
        panic!("{line}:{column}: {}\nsource:\n{source}", d.message)
    })
}

// ---- malformed scenarios -------------------------------------------------------------------------

#[test]
fn unknown_item() {
    let source = "scenario t\nparam pages = 1\nprocedure p {\n}\n";
    let d = assert_error(source, "unknown item `procedure`", 3, 1);
    assert_eq!(spanned(source, &d), "procedure");
    assert!(!d.notes.is_empty(), "the note lists the items");
}

#[test]
fn missing_scenario_header() {
    assert_error("\n\nprocess p {\n}\n", "expected `scenario`", 3, 1);
}

#[test]
fn unknown_call() {
    let source = with_buffer("frobnicate(buf, 4K)");
    let d = assert_error(&source, "unknown call `frobnicate`", 4, 3);
    assert_eq!(spanned(&source, &d), "frobnicate(buf, 4K)");
    assert!(d.notes.iter().any(|n| n.contains("mmap")), "the note lists the calls: {:?}", d.notes);
}

#[test]
fn unknown_name() {
    let source = with_buffer("store(bfu, 4K, 1)");
    let d = assert_error(&source, "unknown name `bfu`", 4, 9);
    assert_eq!(spanned(&source, &d), "bfu");
}

#[test]
fn a_variable_is_unknown_before_it_is_assigned() {
    let source = in_process("store(buf, 4K, 1)\n  buf = mmap(4K, read|write, private|anonymous)");
    assert_error(&source, "unknown name `buf`", 3, 9);
}

#[test]
fn unknown_name_in_a_parameter_expression() {
    assert_error("scenario t\nparam a = 1\nparam b = a + c\n", "unknown name `c`", 3, 15);
}

#[test]
fn unknown_flag() {
    let source = in_process("buf = mmap(4K, read|exec, private|anonymous)");
    let d = assert_error(&source, "unknown flag `exec`", 3, 23);
    assert!(d.notes.iter().any(|n| n.contains("read")), "the note lists the flags: {:?}", d.notes);
}

#[test]
fn unknown_advice() {
    assert_error(&with_buffer("madvise(buf, 4K, willneed)"), "unknown advice `willneed`", 4, 20);
}

#[test]
fn missing_closing_parenthesis() {
    // The error is at the end of the line, where `)` should have been.
    let source = with_buffer("store(buf, 4K, 1\n  store(buf, 4K, 2)");
    let d = assert_error(&source, "`)`", 4, 19);
    assert_eq!(&source[d.start..d.start + 1], "\n");
}

#[test]
fn missing_closing_parenthesis_in_an_expression() {
    assert_error(&with_buffer("store(buf, (1 + 2, 1)"), "expected `)`", 4, 20);
}

#[test]
fn unterminated_string() {
    let source = "scenario t \"a title that never ends\nprocess p {\n}\n";
    let d = assert_error(source, "unterminated string", 1, 12);
    assert!(spanned(source, &d).starts_with("\"a title"));
}

#[test]
fn unterminated_string_at_the_end_of_the_file() {
    assert_error("scenario t\nref \"abc", "unterminated string", 2, 5);
}

#[test]
fn unexpected_character() {
    assert_error(&with_buffer("store(buf, 4K, 1) ; store(buf, 4K, 2)"), "unexpected character `;`", 4, 21);
}

#[test]
fn unknown_violation_kind_in_expect() {
    let source = "scenario t\nexpect kernel < 5.18: violation data-corruption\n";
    let d = assert_error(source, "unknown violation kind `data-corruption`", 2, 33);
    assert!(d.notes.iter().any(|n| n.contains("data-loss")), "the note lists the kinds: {:?}", d.notes);
}

#[test]
fn unknown_outcome_in_expect() {
    assert_error("scenario t\nexpect kernel >= 5.18: fine\n", "expected `verified` or `violation KIND`", 2, 24);
}

#[test]
fn bad_kernel_version() {
    assert_error("scenario t\nexpect kernel < 5: verified\n", "`5` is not a kernel version", 2, 17);
    assert_error("scenario t\nexpect kernel >= 5.x: verified\n", "`5.x` is not a kernel version", 2, 18);
    assert_error("scenario t\nexpect kernel >= five: verified\n", "`five` is not a kernel version", 2, 18);
}

#[test]
fn unsupported_kernel_comparison() {
    assert_error("scenario t\nexpect kernel > 5.18: verified\n", "use `<`, `>=` or an exact version", 2, 17);
}

#[test]
fn two_versions_of_one_fix_in_expect() {
    // 5.18 and later have 6c8e2a256915 (v3): its v1 or v2 on top is refused...
    assert_error(
        "scenario t\nexpect kernel >= 5.18 +madv-free-refcount-check-v2: verified\n",
        "madv-free-gup-race and madv-free-refcount-check-v2 are versions of one fix",
        2,
        23,
    );
    assert_error(
        "scenario t\nexpect kernel 5.16 +madv-free-refcount-check-v1 +madv-free-refcount-check-v2: verified\n",
        "are versions of one fix",
        2,
        20,
    );
    // ...unless the merged version is turned off.
    ok("scenario t\nexpect kernel 6.18 -madv-free-gup-race +madv-free-refcount-check-v2: verified\n");
}

#[test]
fn expect_without_colon() {
    assert_error("scenario t\nexpect kernel >= 5.18 verified\n", "expected `:`", 2, 23);
}

#[test]
fn reclaim_inside_a_process() {
    let source = with_buffer("reclaim(all)");
    let d = assert_error(&source, "reclaim runs in a kernel thread", 4, 3);
    assert_eq!(spanned(&source, &d), "reclaim(all)");
}

#[test]
fn user_calls_inside_a_kernel_thread() {
    let source = "scenario t\nkthread k {\n  buf = mmap(4K, read|write, private|anonymous)\n}\n";
    assert_error(source, "`mmap` needs a process", 3, 9);
}

#[test]
fn reclaim_of_something_else_than_all() {
    assert_error("scenario t\nkthread k { reclaim(anon) }\n", "only `reclaim(all)`", 2, 21);
}

#[test]
fn mmap_without_destination() {
    let source = in_process("mmap(4K, read|write, private|anonymous)");
    let d = assert_error(&source, "mmap's address must be kept", 3, 3);
    assert_eq!(spanned(&source, &d), "mmap(4K, read|write, private|anonymous)");
}

#[test]
fn a_variable_offset_by_a_variable() {
    let source = in_process(concat!(
        "a = mmap(4K, read|write, private|anonymous)\n",
        "  b = mmap(4K, read|write, private|anonymous)\n",
        "  store(a + b, 4K, 1)",
    ));
    let d = assert_error(&source, "a variable can only be offset by a constant", 5, 9);
    assert_eq!(spanned(&source, &d), "a + b");
}

#[test]
fn a_variable_times_a_constant() {
    assert_error(&with_buffer("store(buf * 2, 4K, 1)"), "a variable can only be offset by a constant", 4, 9);
}

#[test]
fn a_variable_where_a_constant_is_needed() {
    assert_error(&with_buffer("store(buf, buf, 1)"), "expected a constant", 4, 14);
}

#[test]
fn unclosed_block() {
    // Reported at the brace that is never closed, not at the end of the file.
    let source = "scenario t\nprocess p {\n  buf = mmap(4K, read|write, private|anonymous)\n";
    assert_error(source, "this `{` is never closed", 2, 11);
    let source = "scenario t\nprocess p {\n  buf = mmap(4K, read|write, private|anonymous)";
    assert_error(source, "this `{` is never closed", 2, 11);
}

#[test]
fn unclosed_nested_thread_block() {
    // The `}` closes the thread's block: the process's brace is the one left open.
    let source = "scenario t\nprocess p {\n  thread a {\n    signal go\n}\n";
    assert_error(source, "this `{` is never closed", 2, 11);
    let source = "scenario t\nprocess p {\n  thread a {\n    signal go\n";
    assert_error(source, "this `{` is never closed", 3, 12);
}

#[test]
fn parameter_declared_twice() {
    let source = "scenario t\nparam pages = 1\nparam size = 4K\nparam pages = 2\n";
    let d = assert_error(source, "parameter `pages` is declared twice", 4, 7);
    assert_eq!(spanned(source, &d), "pages");
}

#[test]
fn an_unknown_advice() {
    let source = with_buffer("madvise(buf, 4K, willneed)");
    let d = assert_error(&source, "unknown advice `willneed`", 4, 20);
    assert_eq!(spanned(&source, &d), "willneed");
    assert!(d.notes.iter().any(|n| n.contains("cold") && n.contains("pageout")));
}

#[test]
fn shared_mappings_are_not_modelled() {
    let source = in_process("buf = mmap(4K, read|write, shared|anonymous)");
    let d = assert_error(&source, "not modelled yet: only private|anonymous mappings", 3, 30);
    assert_eq!(spanned(&source, &d), "shared|anonymous");
}

#[test]
fn a_read_mode_other_than_direct_or_buffered_is_an_error() {
    let source = concat!(
        "scenario t\n",
        "file disk size 4K fill 1\n",
        "process p {\n",
        "  buf = mmap(4K, read|write, private|anonymous)\n",
        "  n = pread(disk, buf, 4K, 0, cached)\n",
        "}\n",
    );
    let d = assert_error(source, "expected `direct` (O_DIRECT) or `buffered`", 5, 31);
    assert_eq!(spanned(source, &d), "cached");
}

#[test]
fn a_truncation_that_is_not_whole_pages_is_not_modelled() {
    let source = "scenario t\nfile disk size 8K fill 1\nprocess p {\n  r = ftruncate(disk, 100)\n}\n";
    let d = assert_error(source, "not modelled yet: a truncation to 100 bytes", 4, 23);
    assert_eq!(spanned(source, &d), "100");
}

#[test]
fn pread_of_an_undeclared_file() {
    assert_error(&with_buffer("pread(disk, buf, 4K, 0, direct)"), "unknown file `disk`", 4, 9);
}

#[test]
fn wrong_number_of_arguments() {
    let d = assert_error(&with_buffer("store(buf, 4K)"), "`store` takes 3 argument(s)", 4, 3);
    assert!(d.message.contains("store(address, length, byte)"), "{}", d.message);
}

#[test]
fn a_byte_out_of_range() {
    assert_error(&with_buffer("store(buf, 4K, 256)"), "a byte is 0 to 255", 4, 18);
}

#[test]
fn a_non_positive_length() {
    assert_error(&with_buffer("store(buf, 4K - 4K, 1)"), "a length must be positive", 4, 14);
}

#[test]
fn a_load_outside_an_assertion() {
    assert_error(&with_buffer("load(buf, 4K)"), "a load is checked in an assertion", 4, 3);
}

#[test]
fn a_load_compared_with_something_else_than_equality() {
    assert_error(&with_buffer("assert load(buf, 4K) != 1"), "compared with `==`", 4, 3);
}

#[test]
fn a_thread_inside_a_thread() {
    let source = in_process("thread a {\n    thread b {\n    }\n  }");
    assert_error(&source, "threads are started from a process's main body", 4, 5);
}

#[test]
fn a_variable_of_a_thread_is_not_silently_zero_in_the_parent() {
    // `r` is -EINVAL in thread t; the parent's `assert r == 0` must not pass vacuously. Either the
    // compiler rejects `r` in the parent, or the assertion sees the thread's value.
    let source = concat!(
        "scenario t\n",
        "process p {\n",
        "  buf = mmap(4K, read|write, private|anonymous)\n",
        "  thread t {\n",
        "    r = madvise(buf + 1, 4K, free)\n",
        "  }\n",
        "  assert r == 0\n",
        "}\n",
    );
    match parse(source) {
        Err(d) => {
            assert!(d.message.contains("`r`"), "{}", d.message);
            assert_eq!(d.line_column(source), (7, 10));
        }
        Ok(scenario) => {
            let spec = scenario.system(&[]).expect("builds");
            let system =
                mmcheck_model::System::new(spec, mmcheck_model::KernelConfig::for_version(KernelVersion::NEWEST));
            let (_, violation, _) = mmcheck_model::system::run_sequential(&system);
            let violation = violation.expect("the parent's assert r == 0 must fail: r is -EINVAL");
            assert_eq!(violation.kind, ViolationKind::Assertion, "{violation}");
        }
    }
}

#[test]
fn two_statements_on_one_line() {
    assert_error(&with_buffer("store(buf, 4K, 1) store(buf, 4K, 2)"), "expected the end of the line", 4, 21);
}

#[test]
fn division_by_zero() {
    assert_error("scenario t\nparam a = 4K / (2 - 2)\n", "division by zero", 2, 11);
}

#[test]
fn a_file_of_no_size() {
    assert_error("scenario t\nfile disk size 0 fill 1\n", "a file's size must be positive", 2, 16);
}

#[test]
fn a_number_too_large() {
    assert_error("scenario t\nparam a = 9999999999999G\n", "too large", 2, 11);
}

#[test]
fn line_column_is_one_based_and_counts_bytes_of_the_line() {
    let source = "ab\ncd\n";
    assert_eq!(Diagnostic::new("x", 0, 1).line_column(source), (1, 1));
    assert_eq!(Diagnostic::new("x", 1, 2).line_column(source), (1, 2));
    assert_eq!(Diagnostic::new("x", 3, 4).line_column(source), (2, 1));
    assert_eq!(Diagnostic::new("x", 6, 6).line_column(source), (3, 1));
    assert_eq!(Diagnostic::new("x", 100, 100).line_column(source), (3, 1), "clamped to the end of the source");
}

// ---- well-formed scenarios -----------------------------------------------------------------------

const FULL: &str = r#"# A comment before the header.
scenario full-syntax "Every construct of the language"   # a trailing comment
ref 6c8e2a256915
ref d17be2d9ff6c
tag madvise
param pages = 2
param size = pages * 4K   # parameters may use earlier ones
param fill = 0x7f

file disk size size fill fill
file small size 1K fill 0xA

process p {
  buf = mmap(size, read|write, private|anonymous)
  big = mmap(2M, read|write, private|anonymous)
  store(buf, size, 0x01)
  store(buf + 4K, 16, 0xff)
  store(buf + 8K - 4K, 1, 2)
  r = madvise(buf, size, free)
  assert r == 0
  madvise(buf, 4K, dontneed)
  signal ready
  thread io {
    wait ready
    n = pread(disk, buf, size, 0, direct)
    assert n == size
    assert load(buf, size) == fill
  }
  thread unmapper {
    m = munmap(big, 2M)
    assert m >= 0
  }
}

kthread kswapd {
  wait ready
  reclaim(all)
}

expect kernel < 5.18: violation data-loss
expect kernel >= 5.18: verified
"#;

#[test]
fn a_scenario_with_every_construct_parses() {
    let scenario = ok(FULL);
    assert_eq!(scenario.name, "full-syntax");
    assert_eq!(scenario.title, "Every construct of the language");
    assert_eq!(scenario.references, vec!["6c8e2a256915", "d17be2d9ff6c"]);
    assert_eq!(scenario.tags, vec!["madvise"]);
    assert_eq!(scenario.parameters.get("pages"), Some(&2));
    assert_eq!(scenario.parameters.get("size"), Some(&(8 << 10)));
    assert_eq!(scenario.parameters.get("fill"), Some(&0x7f));
    assert_eq!(scenario.expectations.len(), 2);
    assert_eq!(scenario.expectations[0].kernels, KernelRange::Below(KernelVersion::new(5, 18)));
    assert_eq!(scenario.expectations[0].outcome, Outcome::Violation(ViolationKind::DataLoss));
    assert_eq!(scenario.expectations[0].line, 40);
    assert_eq!(scenario.expectations[1].line, 41);
    assert_eq!(
        scenario.expected(&KernelConfig::for_version(KernelVersion::new(5, 17))),
        Some(&Outcome::Violation(ViolationKind::DataLoss))
    );
    assert_eq!(scenario.expected(&KernelConfig::for_version(KernelVersion::new(6, 1))), Some(&Outcome::Verified));

    let spec = scenario.system(&[]).expect("builds");
    assert_eq!(spec.mms, 1);
    assert_eq!(spec.files.len(), 2);
    assert_eq!(spec.files[0].len(), 2, "8K is two pages");
    assert_eq!(spec.files[1].len(), 1, "1K rounds up to a page");
    let names: Vec<&str> = spec.threads.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, vec!["p", "io", "unmapper", "kswapd"], "main thread, its threads, kernel threads");
    assert!(spec.threads[0].starts && !spec.threads[1].starts && !spec.threads[2].starts && spec.threads[3].starts);
    assert_eq!(spec.threads[3].mm, None);
    assert!(spec.threads[..3].iter().all(|t| t.mm == Some(0)));
    let registers = spec.threads[0].registers;
    assert!(registers >= 3, "buf, big, r (a thread's own variables reuse numbers after them)");
    assert!(spec.threads[..3].iter().all(|t| t.registers == registers), "registers are per process");

    let main = &spec.threads[0].program;
    let rw = prot::PROT_READ | prot::PROT_WRITE;
    let private_anonymous = map::MAP_PRIVATE | map::MAP_ANONYMOUS;
    assert_eq!(
        main[0],
        Instruction::Mmap { dst: 0, length: 8 << 10, prot: rw, flags: private_anonymous, device: None, file: None }
    );
    assert_eq!(
        main[1],
        Instruction::Mmap { dst: 1, length: 2 << 20, prot: rw, flags: private_anonymous, device: None, file: None }
    );
    assert!(matches!(main[2], Instruction::Store { address: Operand::Register(0, 0), length: 8192, byte: 1, .. }));
    assert!(matches!(main[3], Instruction::Store { address: Operand::Register(0, 4096), length: 16, byte: 0xff, .. }));
    assert!(matches!(main[4], Instruction::Store { address: Operand::Register(0, 4096), length: 1, byte: 2, .. }));
    assert!(matches!(main[5], Instruction::Madvise { dst: Some(_), advice: Advice::Free, .. }));
    assert!(matches!(main[6], Instruction::Assert { .. }));
    assert!(matches!(main[7], Instruction::Madvise { dst: None, advice: Advice::DontNeed, .. }));
    assert!(matches!(main[8], Instruction::Signal { .. }));
    assert_eq!(main[9], Instruction::Spawn { thread: 1 });
    assert_eq!(main[10], Instruction::Spawn { thread: 2 });
    assert_eq!(main[11], Instruction::Join { threads: vec![1, 2] });
    assert_eq!(main[12], Instruction::Exit);
    assert_eq!(main.len(), 13);

    let io = &spec.threads[1].program;
    let Instruction::Signal { event } = main[8] else { unreachable!() };
    assert_eq!(io[0], Instruction::WaitEvent { event }, "`ready` is one event for every thread");
    assert_eq!(spec.threads[3].program[0], Instruction::WaitEvent { event });
    assert!(matches!(io[1], Instruction::Pread { file: 0, length: 8192, offset: 0, direct: true, dst: Some(_), .. }));
    assert!(matches!(io[3], Instruction::Load { length: 8192, expect: 0x7f, .. }));
    assert_eq!(spec.threads[3].program[1], Instruction::Reclaim);
    assert!(!spec.threads[1].program.contains(&Instruction::Exit), "only the main thread exits the mm");
}

#[test]
fn numbers_take_hex_and_size_suffixes() {
    let source = concat!(
        "scenario n\n",
        "param a = 0x10\n",
        "param b = 4K\n",
        "param c = 4k\n",
        "param d = 2M\n",
        "param e = 1G\n",
        "param f = 0x1K\n",
        "param g = (1 + 2) * 3 - 8 / 4\n",
        "param h = -3\n",
    );
    let scenario = ok(source);
    let get = |name: &str| scenario.parameters[name];
    assert_eq!(get("a"), 16);
    assert_eq!(get("b"), 4096);
    assert_eq!(get("c"), 4096);
    assert_eq!(get("d"), 2 << 20);
    assert_eq!(get("e"), 1 << 30);
    assert_eq!(get("f"), 1024);
    assert_eq!(get("g"), 7);
    assert_eq!(get("h"), -3);
}

#[test]
fn comments_and_blank_lines_are_ignored() {
    let source = concat!(
        "\n",
        "# leading comment\n",
        "\n",
        "scenario c # header comment\n",
        "\n",
        "# between items\n",
        "\n",
        "process p { # after a brace\n",
        "  # inside a block\n",
        "\n",
        "  buf = mmap(4K, read|write, private|anonymous) # after a call\n",
        "\n",
        "}\n",
        "# trailing comment",
    );
    let scenario = ok(source);
    assert_eq!(scenario.name, "c");
    let spec = scenario.system(&[]).expect("builds");
    assert_eq!(spec.threads[0].program.len(), 2, "mmap and exit");
}

#[test]
fn signal_and_wait_compile_to_events() {
    let source = concat!(
        "scenario e\n",
        "process p {\n",
        "  signal a\n",
        "  signal b\n",
        "  thread t {\n",
        "    wait b\n",
        "    wait a\n",
        "  }\n",
        "}\n",
        "kthread k {\n",
        "  wait a\n",
        "  signal c\n",
        "}\n",
    );
    let spec = ok(source).system(&[]).expect("builds");
    let main = &spec.threads[0].program;
    let (Instruction::Signal { event: a }, Instruction::Signal { event: b }) = (&main[0], &main[1]) else {
        panic!("{main:?}")
    };
    assert_ne!(a, b);
    assert_eq!(
        spec.threads[1].program,
        vec![Instruction::WaitEvent { event: *b }, Instruction::WaitEvent { event: *a }]
    );
    let kthread = &spec.threads[2].program;
    assert_eq!(kthread[0], Instruction::WaitEvent { event: *a });
    let Instruction::Signal { event: c } = kthread[1] else { panic!("{kthread:?}") };
    assert!(c != *a && c != *b);
}

#[test]
fn a_scenario_without_processes_or_expectations_parses() {
    let scenario = ok("scenario empty");
    assert!(scenario.expectations.is_empty());
    assert_eq!(scenario.expected(&KernelConfig::for_version(KernelVersion::NEWEST)), None);
    assert!(scenario.suite_kernels().is_empty());
    assert!(scenario.system(&[]).expect("builds").threads.is_empty());
}

#[test]
fn exact_and_at_least_expectations() {
    let scenario = ok(concat!(
        "scenario x\n",
        "expect kernel 6.5: violation leak\n",
        "expect kernel == 6.6: verified\n",
        "expect kernel >= 6.4: violation use-after-free\n",
    ));
    assert_eq!(scenario.expectations[0].kernels, KernelRange::Exactly(KernelVersion::new(6, 5)));
    assert_eq!(scenario.expectations[1].kernels, KernelRange::Exactly(KernelVersion::new(6, 6)));
    assert_eq!(
        scenario.expected(&KernelConfig::for_version(KernelVersion::new(6, 5))),
        Some(&Outcome::Violation(ViolationKind::Leak))
    );
    assert_eq!(scenario.expected(&KernelConfig::for_version(KernelVersion::new(6, 6))), Some(&Outcome::Verified));
    assert_eq!(
        scenario.expected(&KernelConfig::for_version(KernelVersion::new(6, 7))),
        Some(&Outcome::Violation(ViolationKind::UseAfterFree))
    );
    assert_eq!(scenario.expected(&KernelConfig::for_version(KernelVersion::new(6, 3))), None);
    for kind in ViolationKind::ALL {
        let source = format!("scenario k\nexpect kernel 6.1: violation {}\n", kind.name());
        assert_eq!(ok(&source).expectations[0].outcome, Outcome::Violation(kind));
    }
}

// ---- parameters and the built-in suite ----------------------------------------------------------

fn madv_free_dio() -> Scenario {
    ok(mmcheck_scenario::builtin("madv-free-dio").expect("madv-free-dio is built in"))
}

#[test]
fn parameter_overrides_rebuild_the_system() {
    let scenario = madv_free_dio();
    assert_eq!(scenario.parameters.get("pages"), Some(&1));
    let one = scenario.system(&[]).expect("builds");
    let four = scenario.system(&[("pages".into(), 4)]).expect("builds with pages=4");
    assert_eq!(one.files[0].len(), 1);
    assert_eq!(four.files[0].len(), 4);
    let Instruction::Mmap { length, .. } = four.threads[0].program[0] else { panic!("the first instruction maps") };
    assert_eq!(length, 4 * 4096);
    let pread_length = four.threads[1]
        .program
        .iter()
        .find_map(|i| match i {
            Instruction::Pread { length, .. } => Some(*length),
            _ => None,
        })
        .expect("the io thread reads");
    assert_eq!(pread_length, 4 * 4096);
    assert_eq!(scenario.parameters.get("pages"), Some(&1), "overrides do not change the scenario");
}

#[test]
fn an_unknown_parameter_override_is_an_error() {
    let error = madv_free_dio().system(&[("nosuch".into(), 1)]).expect_err("no parameter `nosuch`");
    assert!(error.contains("nosuch"), "{error}");
    assert!(error.contains("pages"), "the error lists the parameters: {error}");
}

#[test]
fn an_override_that_does_not_build_is_an_error() {
    let error = madv_free_dio().system(&[("pages".into(), 0)]).expect_err("a file of no size");
    assert!(error.contains("positive"), "{error}");
}

#[test]
fn madv_free_dio_suite_kernels() {
    let scenario = madv_free_dio();
    assert_eq!(scenario.name, "madv-free-dio");
    assert!(scenario.references.iter().any(|r| r == "6c8e2a256915"));
    let labels: Vec<String> = scenario.suite_kernels().iter().map(KernelConfig::label).collect();
    assert_eq!(
        labels,
        ["5.16", "5.16 +madv-free-refcount-check-v1", "5.16 +madv-free-refcount-check-v2", "5.17", "5.18", "6.18"]
    );
    assert_eq!(
        scenario.expected(&KernelConfig::for_version(KernelVersion::new(5, 16))),
        Some(&Outcome::Violation(ViolationKind::DataLoss))
    );
    for patch in [Patch::MadvFreeRefcountCheckV1, Patch::MadvFreeRefcountCheckV2] {
        let mut kernel = KernelConfig::for_version(KernelVersion::new(5, 16));
        kernel.set(patch, true);
        assert_eq!(scenario.expected(&kernel), Some(&Outcome::Verified));
    }
    assert_eq!(scenario.expected(&KernelConfig::for_version(KernelVersion::new(5, 18))), Some(&Outcome::Verified));
}

#[test]
fn every_builtin_scenario_parses_and_builds() {
    assert!(!mmcheck_scenario::BUILTIN.is_empty());
    for (file, text) in mmcheck_scenario::BUILTIN {
        let scenario = ok(text);
        assert_eq!(format!("{}.mmc", scenario.name), *file, "a built-in scenario's file is named after it");
        assert!(!scenario.expectations.is_empty(), "{file}: the suite needs expectations");
        scenario.system(&[]).unwrap_or_else(|e| panic!("{file}: {e}"));
    }
    assert!(mmcheck_scenario::builtin("no-such-scenario").is_none());
}

#[test]
fn a_store_has_no_result_to_assign() {
    let source = with_buffer("x = store(buf, 4K, 1)");
    let d = assert_error(&source, "`store` returns nothing to assign", 4, 7);
    assert_eq!(spanned(&source, &d), "store(buf, 4K, 1)");
}

#[test]
fn expectations_name_patch_overrides() {
    let scenario = parse(
        "scenario t\nexpect kernel 6.8 -rmap-silence-large-rmappable-warning: violation kernel-warning\nexpect kernel >= 6.7: verified\n",
    )
    .expect("parses");
    let labels: Vec<String> = scenario.suite_kernels().iter().map(KernelConfig::label).collect();
    assert_eq!(labels, ["6.7", "6.8 -rmap-silence-large-rmappable-warning", "6.18"]);
    let mut window = KernelConfig::for_version(KernelVersion::new(6, 8));
    assert_eq!(scenario.expected(&window), Some(&Outcome::Verified));
    window.set(Patch::RmapSilenceLargeRmappableWarning, false);
    assert_eq!(scenario.expected(&window), Some(&Outcome::Violation(ViolationKind::KernelWarning)));
    let error = parse("scenario t\nexpect kernel 6.8 +no-such-change: verified\n").expect_err("unknown change");
    assert_eq!(error.line_column("scenario t\nexpect kernel 6.8 +no-such-change: verified\n"), (2, 20));
    assert!(error.message.contains("unknown kernel change"), "{}", error.message);
}

#[test]
fn device_declarations_and_their_errors() {
    let good = "scenario t\ndevice cam insert_page compound order 2\ndevice mem remap_pfn size 8K fill 0x5a\nswap size 16K\nprocess p {\n  a = mmap(16K, read|write, shared, cam)\n  b = mmap(8K, read, private, mem)\n}\n";
    let spec = parse(good).expect("parses").system(&[]).expect("builds");
    assert_eq!(spec.devices.len(), 2);
    assert_eq!(spec.swap_pages, 4);
    let Instruction::Mmap { device, flags, .. } = &spec.threads[0].program[0] else { panic!("an mmap") };
    assert_eq!((*device, *flags), (Some(0), map::MAP_SHARED));
    assert_error("scenario t\ndevice cam insert_page order 2\n", "compound", 2, 12);
    assert_error("scenario t\ndevice cam teleport\n", "unknown device kind `teleport`", 2, 12);
    assert_error("scenario t\ndevice mem remap_pfn\n", "needs `size`", 2, 12);
    assert_error("scenario t\nswap size 4K\nswap size 8K\n", "one swap device", 3, 1);
    // The first page holds the swap header: one page is no usable swap.
    assert_error("scenario t\nswap size 4K\n", "the first holds the swap header", 2, 11);
    let unknown = in_process("a = mmap(4K, read, shared, nosuch)");
    assert_error(&unknown, "unknown device or file `nosuch`", 3, 30);
    let anonymous_shared =
        "scenario t\ndevice cam insert_page\nprocess p {\n  a = mmap(4K, read, shared|anonymous, cam)\n}\n";
    assert_error(anonymous_shared, "`private` or `shared`", 4, 22);
}

#[test]
fn file_mappings_and_their_errors() {
    let good = "scenario t\nfile disk size 8K fill 0x5a\nprocess p {\n  a = mmap(8K, read|write, shared, disk)\n  b = mmap(8K, read, private, disk)\n}\n";
    let spec = parse(good).expect("parses").system(&[]).expect("builds");
    let Instruction::Mmap { device, file, flags, .. } = &spec.threads[0].program[0] else { panic!("an mmap") };
    assert_eq!((*device, *file, *flags), (None, Some(0), map::MAP_SHARED));
    let Instruction::Mmap { file, flags, .. } = &spec.threads[0].program[1] else { panic!("an mmap") };
    assert_eq!((*file, *flags), (Some(0), map::MAP_PRIVATE));
    let unknown = in_process("a = mmap(8K, read, shared, nosuchname)");
    assert_error(&unknown, "unknown device or file `nosuchname`", 3, 30);
    let declared =
        |statement: &str| format!("scenario t\nfile disk size 8K fill 0x5a\nprocess p {{\n  {statement}\n}}\n");
    assert_error(
        &declared("a = mmap(8K, read, shared|anonymous, disk)"),
        "a file mapping is `private` or `shared`",
        4,
        22,
    );
    assert_error(&declared("a = mmap(8K, read, shared, disk, 4K)"), "3 or 4 arguments", 4, 7);
    assert_error(&declared("a = mmap(8K, read, shared, 0x5a)"), "a device or a file", 4, 30);
    let both = "scenario t\nfile disk size 8K fill 0\ndevice disk insert_page\nprocess p {\n  a = mmap(4K, read, shared, disk)\n}\n";
    assert_error(both, "names both a device and a file", 5, 30);
}

#[test]
fn userfaultfd_smaps_move_pages_and_split_statements() {
    let source = with_buffer(
        "u = userfaultfd()\n  a = uffdio_api(u)\n  r = uffdio_register(u, buf, 4K)\n  n = uffdio_move(u, buf, buf, 4K, allow_src_holes)\n  s = move_pages(buf)\n  k = smaps(buf, AnonHugePages)\n  assert s == -ENOENT",
    );
    let spec = parse(&source).expect("parses").system(&[]).expect("builds");
    assert!(matches!(spec.threads[0].program[4], Instruction::UffdioMove { allow_src_holes: true, .. }));
    let Instruction::Assert { condition, .. } = &spec.threads[0].program[7] else { panic!("an assert") };
    assert!(matches!(condition.as_comparison(), Some((_, _, Operand::Constant(-2)))));
    assert_error(&with_buffer("k = smaps(buf, Heap)"), "unknown smaps field `Heap`", 4, 18);
    assert_error(&with_buffer("n = uffdio_move(u, buf, buf, 4K, fast)"), "allow_src_holes", 4, 36);
    assert_error(&with_buffer("split_huge_pages(all)"), "kernel thread", 4, 3);
    assert_error("scenario t\nkthread k { split_huge_pages(some) }\n", "split_huge_pages(all)", 2, 30);
}

/// Every errno name of the kernel's headers is a constant of the language, not only the few the
/// model returns: a scenario may compare with whatever the live kernel says.
#[test]
fn every_errno_name_is_a_constant() {
    for (name, value) in [("EACCES", 13), ("ENOSYS", 38), ("EOPNOTSUPP", 95), ("EWOULDBLOCK", 11)] {
        let source = format!("scenario e\nparam p = -{name}\nprocess p {{\n}}\n");
        let scenario = mmcheck_scenario::parse(&source).unwrap_or_else(|d| panic!("{name}: {}", d.message));
        assert_eq!(scenario.parameters["p"], -value, "{name}");
    }
    let source = "scenario e\nparam p = -ENOTANERRNO\nprocess p {\n}\n";
    let d = mmcheck_scenario::parse(source).expect_err("an unknown name");
    assert!(d.message.contains("unknown name `ENOTANERRNO`"), "{}", d.message);
}

/// Every error of a file is reported, parser's and builder's, in the order of the file: the
/// parser goes on at the next line, the builder at the next statement.
#[test]
fn every_error_in_a_file_is_reported() {
    let source = "scenario x \"y\"\nprocess p {\n  buf = mmap(4K, read|write, private|anonymous)\n  frob(buf)\n  store(buf, 4K, 300)\n  madvise(buf, 4K, nope)\n  thread t {\n    x = (\n  }\n  store(nothere, 4K, 1)\n}\nbogus item\n";
    let errors = mmcheck_scenario::parse_all(source).expect_err("errors");
    let found: Vec<(usize, usize, &str)> = errors
        .iter()
        .map(|d| {
            let (line, column) = d.line_column(source);
            (line, column, d.message.as_str())
        })
        .collect();
    let expected = [
        (4, 3, "unknown call `frob`"),
        (5, 18, "a byte is 0 to 255 (this is 300)"),
        (6, 20, "unknown advice `nope`"),
        (8, 9, "expected a call such as mmap(...)"),
        (10, 9, "unknown name `nothere`"),
        (12, 1, "unknown item `bogus`"),
    ];
    assert_eq!(found.len(), expected.len(), "{found:?}");
    for ((line, column, message), (want_line, want_column, want)) in found.iter().zip(expected) {
        assert_eq!((*line, *column), (want_line, want_column), "{message}");
        assert!(message.starts_with(want), "{message} is not {want}");
    }
    // The first is what `parse` reports.
    let first = mmcheck_scenario::parse(source).expect_err("an error");
    assert_eq!(first.message, errors[0].message);
}

/// At most ERRORS_MAX errors, then a note that more may follow.
#[test]
fn errors_stop_at_their_limit() {
    use mmcheck_scenario::limits::ERRORS_MAX;
    let source = format!("scenario x\n{}", "bogus item\n".repeat(ERRORS_MAX + 10));
    let errors = mmcheck_scenario::parse_all(&source).expect_err("errors");
    assert_eq!(errors.len(), ERRORS_MAX + 1);
    assert!(errors[..ERRORS_MAX].iter().all(|d| d.message.starts_with("unknown item `bogus`")));
    assert!(errors[ERRORS_MAX].message.contains("more errors may follow"), "{}", errors[ERRORS_MAX].message);
    let source = format!("scenario x\nprocess p {{\n{}}}\n", "  frob()\n".repeat(ERRORS_MAX + 10));
    let errors = mmcheck_scenario::parse_all(&source).expect_err("errors");
    assert_eq!(errors.len(), ERRORS_MAX);
}

/// Assertions join comparisons with `||` (weakest), `&&` and `!`, and test bits with `&`; a `(`
/// opens a condition or a comparison's value.
#[test]
fn assertions_have_connectives_and_bit_tests() {
    use mmcheck_model::program::{Comparison, Condition};
    let source = with_buffer("assert buf == 1 || buf & 4 != 0 && !(buf == 2)\n  assert (1 + 1) * 2 == 4");
    let spec = parse(&source).expect("parses").system(&[]).expect("builds");
    let Instruction::Assert { condition, text, .. } = &spec.threads[0].program[1] else { panic!("an assert") };
    assert_eq!(text, "buf == 1 || buf & 4 != 0 && !(buf == 2)");
    let Condition::Or(first, rest) = condition else { panic!("|| binds weakest: {condition:?}") };
    assert!(matches!(**first, Condition::Compare { mask: None, comparison: Comparison::Equal, .. }));
    let Condition::And(bits, not) = &**rest else { panic!("&& binds tighter: {rest:?}") };
    assert!(matches!(**bits, Condition::Compare { mask: Some(Operand::Constant(4)), .. }), "{bits:?}");
    assert!(matches!(**not, Condition::Not(_)), "{not:?}");
    let Instruction::Assert { condition, .. } = &spec.threads[0].program[2] else { panic!("an assert") };
    assert!(condition.as_comparison().is_some(), "a parenthesised value: {condition:?}");
    // Holds as C would have it: 0 == 1 || (0 & 4 != 0 && ...) is false; 5 & 4 != 0 && !(5 == 2).
    let registers = |value: i64| {
        move |operand: Operand| match operand {
            Operand::Constant(c) => c,
            Operand::Register(_, offset) => value + offset,
        }
    };
    let Instruction::Assert { condition, .. } = &spec.threads[0].program[1] else { panic!("an assert") };
    assert!(!condition.holds(&mut registers(0)));
    assert!(condition.holds(&mut registers(5)));
    assert!(condition.holds(&mut registers(1)));
    assert_error(&with_buffer("assert buf == 1 &&"), "expected a number, a name or `(`", 4, 21);
    let deep = format!("assert buf == 1{}", " && buf == 1".repeat(300));
    assert_error(&with_buffer(&deep), "a condition is at most 256", 4, 19 + 12 * 256);
}
