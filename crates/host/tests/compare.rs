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
