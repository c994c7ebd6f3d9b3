//! The comparison logic of `mmcheck conform`, on hand-made runs and on the model's own run.

use mmcheck_host::{compare, conform_status, observe_model, Observation, Observed, Run};
use mmcheck_model::program::{map, prot, Instruction, Operand};
use mmcheck_model::{KernelConfig, KernelVersion, SystemSpec, ThreadSpec};

fn observation(pc: usize, what: &str, observed: Observed) -> Observation {
    Observation { thread: "p".into(), pc, what: what.into(), observed }
}

fn run(observations: Vec<Observation>) -> Run {
    Run { observations, stopped: None }
}

#[test]
fn equal_runs_agree() {
    let a = run(vec![observation(0, "mmap", Observed::Valid), observation(1, "smaps Rss", Observed::Value(4))]);
    let comparison = compare(&a, &a.clone());
    assert_eq!((comparison.observations, comparison.agree), (2, 2));
    assert!(comparison.disagreements.is_empty());
}

#[test]
fn a_different_value_is_a_disagreement_with_both_values() {
    let model =
        run(vec![observation(0, "mmap", Observed::Valid), observation(1, "smaps LazyFree", Observed::Value(8))]);
    let kernel =
        run(vec![observation(0, "mmap", Observed::Valid), observation(1, "smaps LazyFree", Observed::Value(0))]);
    let comparison = compare(&model, &kernel);
    assert_eq!(comparison.agree, 1);
    let d = &comparison.disagreements[0];
    assert_eq!((d.pc, d.what.as_str()), (1, "smaps LazyFree"));
    assert_eq!((d.model.clone(), d.kernel.clone()), (Some(Observed::Value(8)), Some(Observed::Value(0))));
}

#[test]
fn an_observation_only_one_side_made_is_a_disagreement() {
    let model = run(vec![observation(0, "load", Observed::Loaded), observation(1, "assert", Observed::Held)]);
    let kernel = run(vec![observation(0, "load", Observed::Fault)]);
    let comparison = compare(&model, &kernel);
    assert_eq!(comparison.disagreements.len(), 2);
    assert_eq!(comparison.disagreements[1].kernel, None);
    // Loads that read other bytes agree when the byte read agrees, wherever they noticed it.
    let a = run(vec![observation(0, "load", Observed::Mismatch { offset: 0, byte: 0 })]);
    let b = run(vec![observation(0, "load", Observed::Mismatch { offset: 12, byte: 0 })]);
    assert!(compare(&a, &b).disagreements.is_empty());
}

/// One process: map a page, store to it, then `last`.
fn one_page(last: Instruction) -> SystemSpec {
    let program = vec![
        Instruction::Mmap {
            dst: 0,
            length: 4096,
            prot: prot::PROT_READ | prot::PROT_WRITE,
            flags: map::MAP_PRIVATE | map::MAP_ANONYMOUS,
            device: None,
            file: None,
        },
        Instruction::Store { address: Operand::Register(0, 0), length: 4096, byte: 7, location: Default::default() },
        last,
    ];
    SystemSpec {
        threads: vec![ThreadSpec { name: "p".into(), mm: Some(0), program, starts: true, registers: 2 }],
        mms: 1,
        ..SystemSpec::default()
    }
}

#[test]
fn the_model_run_observes_each_instruction() {
    let spec = one_page(Instruction::Smaps {
        dst: Some(1),
        address: Operand::Register(0, 0),
        field: mmcheck_model::fs::proc::task_mmu::SmapsField::Rss,
    });
    let observed = observe_model(&spec, KernelConfig::for_version(KernelVersion::NEWEST));
    let values: Vec<Observed> = observed.observations.iter().map(|o| o.observed.clone()).collect();
    assert_eq!(values, [Observed::Valid, Observed::Stored, Observed::Value(4)]);
    assert!(observed.stopped.is_none());
}

/// Runs one scenario on this machine's kernel (needs root for /proc/kpage*).
#[test]
#[ignore = "touches the live kernel; run with --ignored"]
fn the_live_kernel_agrees_on_an_anonymous_write() {
    let spec = one_page(Instruction::ProcPage {
        dst: Some(1),
        address: Operand::Register(0, 0),
        file: mmcheck_model::fs::proc::page::ProcPageFile::KpageCount,
    });
    let dir = std::env::temp_dir().join(format!("mmcheck-host-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let kernel = mmcheck_host::live::run_host(&spec, &dir).expect("runs");
    let _ = std::fs::remove_dir_all(&dir);
    let model = observe_model(&spec, KernelConfig::for_version(KernelVersion::NEWEST));
    let comparison = compare(&model, &kernel);
    assert!(comparison.disagreements.is_empty(), "{:?}", comparison.disagreements);
}

fn values_run(values: &[i64], stopped: Option<&str>) -> Run {
    let observations = values
        .iter()
        .enumerate()
        .map(|(pc, &v)| Observation { thread: "p".into(), pc, what: "x".into(), observed: Observed::Value(v) })
        .collect();
    Run { observations, stopped: stopped.map(str::to_string) }
}

#[test]
fn only_complete_equal_runs_agree() {
    let status = |m: &Run, k: &Run| conform_status(m, k, &compare(m, k));
    assert_eq!(status(&values_run(&[1, 2], None), &values_run(&[1, 2], None)), "agree");
    assert_eq!(status(&values_run(&[1, 3], None), &values_run(&[1, 2], None)), "DISAGREE");
    let failed = Some("assertion: line 3: assert x == 1 failed");
    assert!(status(&values_run(&[1], failed), &values_run(&[1], failed)).starts_with("STOPPED: assertion"));
    let gap = Some("invariant: not modelled: UFFDIO_MOVE of a whole PMD-mapped THP");
    assert_eq!(
        status(&values_run(&[1], gap), &values_run(&[1, 2], None)),
        "not modelled: UFFDIO_MOVE of a whole PMD-mapped THP"
    );
}

/// The language's errno names (mmcheck_model::thread::errno::ALL) are the C library's: every one
/// has the value libc gives it on this target, and the table names each value once.
#[test]
fn errno_names_have_the_c_librarys_values() {
    use mmcheck_model::thread::errno;
    let libc_values: &[(&str, i32)] = &[
        ("EPERM", libc::EPERM),
        ("ENOENT", libc::ENOENT),
        ("ESRCH", libc::ESRCH),
        ("EINTR", libc::EINTR),
        ("EIO", libc::EIO),
        ("ENXIO", libc::ENXIO),
        ("E2BIG", libc::E2BIG),
        ("ENOEXEC", libc::ENOEXEC),
        ("EBADF", libc::EBADF),
        ("ECHILD", libc::ECHILD),
        ("EAGAIN", libc::EAGAIN),
        ("ENOMEM", libc::ENOMEM),
        ("EACCES", libc::EACCES),
        ("EFAULT", libc::EFAULT),
        ("ENOTBLK", libc::ENOTBLK),
        ("EBUSY", libc::EBUSY),
        ("EEXIST", libc::EEXIST),
        ("EXDEV", libc::EXDEV),
        ("ENODEV", libc::ENODEV),
        ("ENOTDIR", libc::ENOTDIR),
        ("EISDIR", libc::EISDIR),
        ("EINVAL", libc::EINVAL),
        ("ENFILE", libc::ENFILE),
        ("EMFILE", libc::EMFILE),
        ("ENOTTY", libc::ENOTTY),
        ("ETXTBSY", libc::ETXTBSY),
        ("EFBIG", libc::EFBIG),
        ("ENOSPC", libc::ENOSPC),
        ("ESPIPE", libc::ESPIPE),
        ("EROFS", libc::EROFS),
        ("EMLINK", libc::EMLINK),
        ("EPIPE", libc::EPIPE),
        ("EDOM", libc::EDOM),
        ("ERANGE", libc::ERANGE),
        ("EDEADLK", libc::EDEADLK),
        ("ENAMETOOLONG", libc::ENAMETOOLONG),
        ("ENOLCK", libc::ENOLCK),
        ("ENOSYS", libc::ENOSYS),
        ("ENOTEMPTY", libc::ENOTEMPTY),
        ("ELOOP", libc::ELOOP),
        ("ENOMSG", libc::ENOMSG),
        ("EIDRM", libc::EIDRM),
        ("ECHRNG", libc::ECHRNG),
        ("EL2NSYNC", libc::EL2NSYNC),
        ("EL3HLT", libc::EL3HLT),
        ("EL3RST", libc::EL3RST),
        ("ELNRNG", libc::ELNRNG),
        ("EUNATCH", libc::EUNATCH),
        ("ENOCSI", libc::ENOCSI),
        ("EL2HLT", libc::EL2HLT),
        ("EBADE", libc::EBADE),
        ("EBADR", libc::EBADR),
        ("EXFULL", libc::EXFULL),
        ("ENOANO", libc::ENOANO),
        ("EBADRQC", libc::EBADRQC),
        ("EBADSLT", libc::EBADSLT),
        ("EBFONT", libc::EBFONT),
        ("ENOSTR", libc::ENOSTR),
        ("ENODATA", libc::ENODATA),
        ("ETIME", libc::ETIME),
        ("ENOSR", libc::ENOSR),
        ("ENONET", libc::ENONET),
        ("ENOPKG", libc::ENOPKG),
        ("EREMOTE", libc::EREMOTE),
        ("ENOLINK", libc::ENOLINK),
        ("EADV", libc::EADV),
        ("ESRMNT", libc::ESRMNT),
        ("ECOMM", libc::ECOMM),
        ("EPROTO", libc::EPROTO),
        ("EMULTIHOP", libc::EMULTIHOP),
        ("EDOTDOT", libc::EDOTDOT),
        ("EBADMSG", libc::EBADMSG),
        ("EOVERFLOW", libc::EOVERFLOW),
        ("ENOTUNIQ", libc::ENOTUNIQ),
        ("EBADFD", libc::EBADFD),
        ("EREMCHG", libc::EREMCHG),
        ("ELIBACC", libc::ELIBACC),
        ("ELIBBAD", libc::ELIBBAD),
        ("ELIBSCN", libc::ELIBSCN),
        ("ELIBMAX", libc::ELIBMAX),
        ("ELIBEXEC", libc::ELIBEXEC),
        ("EILSEQ", libc::EILSEQ),
        ("ERESTART", libc::ERESTART),
        ("ESTRPIPE", libc::ESTRPIPE),
        ("EUSERS", libc::EUSERS),
        ("ENOTSOCK", libc::ENOTSOCK),
        ("EDESTADDRREQ", libc::EDESTADDRREQ),
        ("EMSGSIZE", libc::EMSGSIZE),
        ("EPROTOTYPE", libc::EPROTOTYPE),
        ("ENOPROTOOPT", libc::ENOPROTOOPT),
        ("EPROTONOSUPPORT", libc::EPROTONOSUPPORT),
        ("ESOCKTNOSUPPORT", libc::ESOCKTNOSUPPORT),
        ("EOPNOTSUPP", libc::EOPNOTSUPP),
        ("EPFNOSUPPORT", libc::EPFNOSUPPORT),
        ("EAFNOSUPPORT", libc::EAFNOSUPPORT),
        ("EADDRINUSE", libc::EADDRINUSE),
        ("EADDRNOTAVAIL", libc::EADDRNOTAVAIL),
        ("ENETDOWN", libc::ENETDOWN),
        ("ENETUNREACH", libc::ENETUNREACH),
        ("ENETRESET", libc::ENETRESET),
        ("ECONNABORTED", libc::ECONNABORTED),
        ("ECONNRESET", libc::ECONNRESET),
        ("ENOBUFS", libc::ENOBUFS),
        ("EISCONN", libc::EISCONN),
        ("ENOTCONN", libc::ENOTCONN),
        ("ESHUTDOWN", libc::ESHUTDOWN),
        ("ETOOMANYREFS", libc::ETOOMANYREFS),
        ("ETIMEDOUT", libc::ETIMEDOUT),
        ("ECONNREFUSED", libc::ECONNREFUSED),
        ("EHOSTDOWN", libc::EHOSTDOWN),
        ("EHOSTUNREACH", libc::EHOSTUNREACH),
        ("EALREADY", libc::EALREADY),
        ("EINPROGRESS", libc::EINPROGRESS),
        ("ESTALE", libc::ESTALE),
        ("EUCLEAN", libc::EUCLEAN),
        ("ENOTNAM", libc::ENOTNAM),
        ("ENAVAIL", libc::ENAVAIL),
        ("EISNAM", libc::EISNAM),
        ("EREMOTEIO", libc::EREMOTEIO),
        ("EDQUOT", libc::EDQUOT),
        ("ENOMEDIUM", libc::ENOMEDIUM),
        ("EMEDIUMTYPE", libc::EMEDIUMTYPE),
        ("ECANCELED", libc::ECANCELED),
        ("ENOKEY", libc::ENOKEY),
        ("EKEYEXPIRED", libc::EKEYEXPIRED),
        ("EKEYREVOKED", libc::EKEYREVOKED),
        ("EKEYREJECTED", libc::EKEYREJECTED),
        ("EOWNERDEAD", libc::EOWNERDEAD),
        ("ENOTRECOVERABLE", libc::ENOTRECOVERABLE),
        ("ERFKILL", libc::ERFKILL),
        ("EHWPOISON", libc::EHWPOISON),
    ];
    assert_eq!(errno::ALL.len(), libc_values.len());
    for (&(name, value), &(libc_name, libc_value)) in errno::ALL.iter().zip(libc_values) {
        assert_eq!((name, value), (libc_name, i64::from(libc_value)));
        assert_eq!(errno::by_name(name), Some(value));
        assert_eq!(errno::name(-value), Some(name));
    }
    assert_eq!(errno::by_name("EWOULDBLOCK"), Some(i64::from(libc::EWOULDBLOCK)));
    assert_eq!(errno::by_name("EDEADLOCK"), Some(i64::from(libc::EDEADLOCK)));
    assert_eq!(errno::by_name("ENOTANERRNO"), None);
}

/// A load that read other bytes in both worlds ends both runs at the same place: the
/// observations agree, but the scenario did not run to its end, so it is STOPPED; a fault in
/// both worlds is an outcome compared like any other, and agrees.
#[test]
fn a_failed_load_check_in_both_worlds_is_stopped_and_a_fault_agrees() {
    let ending = |observed: Observed, stopped: &str| Run {
        observations: vec![
            observation(0, "mmap", Observed::Valid),
            observation(1, "store", Observed::Stored),
            observation(2, "load", observed),
        ],
        stopped: Some(stopped.to_string()),
    };
    let model = ending(
        Observed::Mismatch { offset: 0, byte: 1 },
        "data-loss: load at 0x7f0000000000: expected 0x02, read 0x01",
    );
    let kernel = ending(Observed::Mismatch { offset: 0, byte: 1 }, "a load read other bytes or faulted");
    let comparison = compare(&model, &kernel);
    assert!(comparison.disagreements.is_empty(), "{:?}", comparison.disagreements);
    let status = conform_status(&model, &kernel, &comparison);
    assert!(status.starts_with("STOPPED: data-loss"), "{status}");
    let model = ending(Observed::Fault, "fault: SIGSEGV at 0x7f0000000000");
    let kernel = ending(Observed::Fault, "a load read other bytes or faulted");
    assert_eq!(conform_status(&model, &kernel, &compare(&model, &kernel)), "agree");
}
