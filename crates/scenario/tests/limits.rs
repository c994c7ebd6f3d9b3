//! The language's limits (docs/SCENARIOS.md, "Limits"): each at its bound works, one past it is
//! a located error, and nothing past it recurses without bound or allocates for it. These run
//! in the test harness's threads (2 MiB stacks, debug build): a scenario at the nesting and
//! depth limits must parse and build there.

use mmcheck_model::program::{Instruction, Operand};
use mmcheck_model::KernelVersion;
use mmcheck_scenario::limits::*;
use mmcheck_scenario::{builtin, parse, Diagnostic};

#[track_caller]
fn error_at(source: &str, mention: &str, line: usize, column: usize) -> Diagnostic {
    let diagnostic = match parse(source) {
        Ok(scenario) => panic!("parsed as scenario {}", scenario.name),
        Err(diagnostic) => diagnostic,
    };
    assert!(diagnostic.message.contains(mention), "`{}` does not mention `{mention}`", diagnostic.message);
    assert_eq!(diagnostic.line_column(source), (line, column), "{}", diagnostic.message);
    diagnostic
}

/// `param a = EXPR` in an otherwise empty scenario: the expression starts at 2:11.
fn parameter(expression: &str) -> String {
    format!("scenario t\nparam a = {expression}\n")
}

/// `head`, one line per index, then `tail`.
fn lines(head: &str, indexes: std::ops::Range<usize>, line: impl Fn(usize) -> String, tail: &str) -> String {
    let mut source = head.to_string();
    indexes.for_each(|index| source.push_str(&line(index)));
    source + tail
}

fn value(source: &str) -> i64 {
    parse(source).expect("parses").parameters["a"]
}

#[test]
fn parentheses_nest_up_to_the_limit() {
    let at = format!("{}7{}", "(".repeat(NESTING_MAX), ")".repeat(NESTING_MAX));
    assert_eq!(value(&parameter(&at)), 7);
    let over = format!("{}7{}", "(".repeat(NESTING_MAX + 1), ")".repeat(NESTING_MAX + 1));
    // The error points at the parenthesis that opens one level too many.
    error_at(&parameter(&over), "nesting deeper than 256", 2, 11 + NESTING_MAX);
}

#[test]
fn unary_minus_nests_up_to_the_limit() {
    assert_eq!(value(&parameter(&format!("{}5", "- ".repeat(NESTING_MAX)))), 5, "an even number of signs");
    error_at(&parameter(&format!("{}5", "- ".repeat(NESTING_MAX + 1))), "nesting deeper", 2, 11 + 2 * NESTING_MAX);
}

#[test]
fn a_long_chain_of_operators_is_bounded() {
    // n terms are n - 1 operators deep (the tree is left-deep).
    let at = format!("1{}", " + 1".repeat(EXPRESSION_DEPTH_MAX));
    assert_eq!(value(&parameter(&at)), EXPRESSION_DEPTH_MAX as i64 + 1);
    let over = format!("1{}", " + 1".repeat(EXPRESSION_DEPTH_MAX + 1));
    // At the term that would make the tree one operator too deep.
    error_at(&parameter(&over), "at most 256 operators deep", 2, 11 + 1 + 4 * EXPRESSION_DEPTH_MAX + 3);
    // A chain of products is bounded the same way, and so is a tree deep through both.
    let products = format!("1{}", " * 1".repeat(EXPRESSION_DEPTH_MAX + 1));
    error_at(&parameter(&products), "operators deep", 2, 11 + 1 + 4 * EXPRESSION_DEPTH_MAX + 3);
}

#[test]
fn blocks_nest_up_to_the_limit() {
    // The process's block is level 1; each fork opens one more.
    let nested = |forks: usize| {
        let tail = "}\n".repeat(forks + 1);
        lines("scenario t\nprocess p {\n", 0..forks, |index| format!("fork c{index} {{\n"), &tail)
    };
    // At the nesting limit the parser is done and the thread limit speaks, at the fork that
    // starts the 33rd thread (line 3 is the first fork, c0, the process's second thread).
    error_at(&nested(NESTING_MAX - 1), "at most 32 threads", 3 + THREADS_MAX - 1, 1);
    // One level more: the nesting error too, at the fork past the limit (every error of the
    // file is reported, the thread limit's first).
    let source = nested(NESTING_MAX);
    let errors = mmcheck_scenario::parse_all(&source).expect_err("errors");
    let nesting = errors.iter().find(|d| d.message.contains("nesting deeper than 256")).expect("the nesting error");
    assert_eq!(nesting.line_column(&source), (2 + NESTING_MAX, 11));
}

#[test]
fn threads_up_to_the_limit() {
    let threads = |count: usize| {
        let thread = |index| format!("  thread t{index} {{ signal e{} }}\n", index % 8);
        lines("scenario t\nprocess p {\n", 1..count, thread, "}\n")
    };
    assert_eq!(parse(&threads(THREADS_MAX)).unwrap().system(&[]).unwrap().threads.len(), THREADS_MAX);
    // The 33rd thread's statement is line 3 + 31.
    error_at(&threads(THREADS_MAX + 1), "at most 32 threads", 3 + THREADS_MAX - 1, 3);
    // Kernel threads count too: the error points at the `kthread` line.
    let source = format!("{}kthread k {{ reclaim(all) }}\n", threads(THREADS_MAX));
    error_at(&source, "at most 32 threads", 4 + THREADS_MAX - 1, 1);
}

#[test]
fn names_up_to_the_limit() {
    let at = "n".repeat(IDENTIFIER_BYTES_MAX);
    let source = format!("scenario t\nparam {at} = 3\n");
    assert_eq!(parse(&source).unwrap().parameters[&at], 3);
    let over = "n".repeat(IDENTIFIER_BYTES_MAX + 1);
    error_at(&format!("scenario t\nparam {over} = 3\n"), "at most 64 characters", 2, 7);
}

#[test]
fn variables_up_to_the_limit() {
    let variables = |count: usize| {
        let variable = |index| format!("  v{index} = userfaultfd()\n");
        lines("scenario t\nprocess p {\n", 0..count, variable, "  v0 = userfaultfd()\n}\n")
    };
    let spec = parse(&variables(VARIABLES_MAX)).unwrap().system(&[]).unwrap();
    assert_eq!(spec.threads[0].registers, VARIABLES_MAX, "assigning v0 again reuses its register");
    error_at(&variables(VARIABLES_MAX + 1), "at most 256 variables", 3 + VARIABLES_MAX, 3);
}

#[test]
fn files_up_to_the_limit() {
    let files = |count: usize| lines("scenario t\n", 0..count, |index| format!("file f{index} size 4K fill 0\n"), "");
    assert_eq!(parse(&files(FILES_MAX)).unwrap().system(&[]).unwrap().files.len(), FILES_MAX);
    error_at(&files(FILES_MAX + 1), "at most 64 files", 2 + FILES_MAX, 1);
}

#[test]
fn sizes_up_to_the_limit() {
    assert_eq!(SIZE_BYTES_MAX, 1024 << 30);
    // A mapping's length only names a range: any positive value builds (the kernel's own
    // checks answer it). A store's is bounded: the model writes it page by page.
    let mapping =
        |length: &str| format!("scenario t\nprocess p {{\n  b = mmap({length}, read, private|anonymous)\n}}\n");
    let spec = parse(&mapping("4096G * 1024")).unwrap().system(&[]).unwrap();
    assert!(matches!(spec.threads[0].program[0], Instruction::Mmap { length, .. } if length == 1 << 52));
    let store = |length: &str| {
        format!(
            "scenario t\nprocess p {{\n  b = mmap(8K, read|write, private|anonymous)\n  store(b, {length}, 1)\n}}\n"
        )
    };
    assert!(parse(&store("1024G")).unwrap().system(&[]).is_ok());
    error_at(&store("1024G + 1"), "a length is at most 1024G", 4, 12);
    // A file at the limit builds, sparse: nothing is allocated for its pages.
    let spec = parse("scenario t\nfile f size 1024G fill 0\n").unwrap().system(&[]).unwrap();
    assert_eq!(spec.files[0].len(), 1 << 28);
    // A file past the limit is refused before anything is allocated for its pages.
    error_at("scenario t\nfile f size 4000G fill 0\n", "a file is at most 1024G", 2, 13);
    let truncate = "scenario t\nfile f size 4K fill 0\nprocess p {\n  ftruncate(f, 2048G)\n}\n";
    error_at(truncate, "a file is at most 1024G", 4, 16);
    // (A 64G file stays accepted: bigfile-64G.mmc in the CLI's robustness tests.)
}

#[test]
fn a_parameter_set_past_a_limit_is_a_located_error() {
    let scenario = parse(builtin("madv-free-dio").unwrap()).unwrap();
    let error = scenario.system(&[("pages".into(), 1 << 30)]).unwrap_err();
    assert!(error.contains("a file is at most 1024G"), "{error}");
    assert!(error.contains("scenario madv-free-dio line "), "the error says where: {error}");
    assert!(error.contains("`pages * 4K`") && error.contains("pages=1073741824"), "and with what: {error}");
}

#[test]
fn the_source_is_bounded() {
    let source = format!("scenario t\n{}", "#".repeat(SOURCE_BYTES_MAX));
    let diagnostic = parse(&source).unwrap_err();
    assert!(diagnostic.message.contains("at most 1024 KiB"), "{}", diagnostic.message);
    // At the limit, a scenario of comments parses.
    assert!(parse(&source[..SOURCE_BYTES_MAX]).is_ok());
    // The limit falls inside a two-byte character (line 2 holds them from byte 11, columns
    // count bytes): the error is at that character.
    let source = format!("scenario t\n{}", "é".repeat(SOURCE_BYTES_MAX / 2));
    let diagnostic = parse(&source).unwrap_err();
    assert_eq!(diagnostic.line_column(&source), (2, SOURCE_BYTES_MAX - 1 - 11 + 1));
}

#[test]
fn arithmetic_that_overflows_is_a_located_error() {
    let minimum = "(0 - 9223372036854775807 - 1)";
    // A parenthesised operand's span starts inside its parentheses.
    error_at(&parameter(&format!("{minimum} / -1")), "arithmetic overflow", 2, 12);
    error_at(&parameter(&format!("-{minimum}")), "arithmetic overflow", 2, 11);
    error_at(&parameter("9223372036854775807 + 1"), "arithmetic overflow", 2, 11);
    error_at(&parameter("4611686018427387904 * 2"), "arithmetic overflow", 2, 11);
    error_at(&parameter("1 / 0"), "division by zero", 2, 11);
    assert_eq!(value(&parameter(&format!("{minimum} / 1"))), i64::MIN);
}

#[test]
fn a_register_offset_that_overflows_is_a_located_error() {
    let store = |address: &str| {
        format!(
            "scenario t\nprocess p {{\n  b = mmap(4K, read|write, private|anonymous)\n  store({address}, 4K, 1)\n}}\n"
        )
    };
    let wrapped = store("b + 9223372036854775807 + 9223372036854775807 + 2");
    error_at(&wrapped, "arithmetic overflow", 4, 9);
    error_at(&store("b - 9223372036854775807 - 2"), "arithmetic overflow", 4, 9);
    let spec = parse(&store("b + 9223372036854775807 - 9223372036854775807")).unwrap().system(&[]).unwrap();
    assert!(matches!(spec.threads[0].program[1], Instruction::Store { address: Operand::Register(0, 0), .. }));
}

#[test]
fn kernel_versions_are_strict() {
    assert_eq!(KernelVersion::parse("6.18"), Some(KernelVersion::new(6, 18)));
    assert_eq!(KernelVersion::parse("5.0"), Some(KernelVersion::new(5, 0)));
    assert_eq!(KernelVersion::parse("1.0"), Some(KernelVersion::new(1, 0)));
    for text in
        ["6.18 ", " 6.18", "+5.16", "05.16", "5.016", "05.016", "0.0", "0.18", "6", "6.", ".18", "6.18.1", "256.1"]
    {
        assert_eq!(KernelVersion::parse(text), None, "`{text}`");
    }
    let source = "scenario t\nexpect kernel 05.16: verified\n";
    let diagnostic = error_at(source, "`05.16` is not a kernel version", 2, 15);
    assert!(diagnostic.notes.iter().any(|note| note.contains("leading zeros")), "{:?}", diagnostic.notes);
}

/// C litmus tests: a chain of binary operators is a tree as deep as it is long, which the
/// compiler and the checker recurse over; 200 operators in one expression or condition are
/// accepted, 201 refused (the parser's nesting limit is 50 and its own test checks it).
#[test]
fn litmus_operator_chains_are_bounded() {
    use mmcheck_explorer::memory::MemoryModel;
    use mmcheck_explorer::Limits;
    use mmcheck_scenario::litmus;
    let test = |operators: usize, conjuncts: usize| {
        let sum = vec!["1"; operators + 1].join(" + ");
        let condition = vec!["0:r0=201"; conjuncts + 1].join(" /\\ ");
        format!("C chain\n{{ x=0; }}\nP0(int *x)\n{{\n\tint r0;\n\tr0 = {sum};\n\tWRITE_ONCE(*x, r0);\n}}\nexists ({condition})\n")
    };
    // At the limit, parsed, compiled and checked in a 1 MiB stack (debug build): r0 is 201.
    let source = test(200, 200);
    let checker = std::thread::Builder::new().stack_size(1 << 20).spawn(move || {
        let parsed = litmus::parse(&source).expect("parses");
        litmus::check(&parsed, MemoryModel::Sc, &Limits::default()).observed
    });
    let observed = checker.expect("a thread").join().expect("no stack overflow");
    assert!(matches!(observed, Some(litmus::Observed::Always) | Some(litmus::Observed::Sometimes)), "{observed:?}");
    for source in [test(201, 0), test(0, 201)] {
        let error = litmus::parse(&source).unwrap_err();
        assert!(error.message.contains("more than 200 binary operators"), "{error}");
    }
}
