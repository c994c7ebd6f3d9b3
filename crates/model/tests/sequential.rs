//! Sequential semantics of each modelled kernel operation, run one thread at a time with `run_sequential`.

use mmcheck_model::access::Event;
use mmcheck_model::drivers::{DeviceKind, DeviceSpec};
use mmcheck_model::folio::{
    pfn_folio, Folio, FolioId, LruList, Mapping, PageData, PageFlag, PAGE_SHIFT, PAGE_SIZE, ZERO_FOLIO,
};
use mmcheck_model::fs::proc::task_mmu::SmapsField;
use mmcheck_model::mm::mmap::MMAP_BASE;
use mmcheck_model::pgtable::{PresentPte, Pte};
use mmcheck_model::program::{map, prot, Advice, Instruction, Operand, SourceLocation};
use mmcheck_model::state::{vm_flags, Kernel, ThreadId};
use mmcheck_model::system::run_sequential;
use mmcheck_model::thread::{errno, ThreadStatus};
use mmcheck_model::{KernelConfig, KernelVersion, System, SystemSpec, ThreadSpec, Violation, ViolationKind};

const REGISTERS: usize = 6;
const PAGE: u64 = PAGE_SIZE;

// ---- building programs -------------------------------------------------------------------------

fn mmap(dst: u16, length: u64) -> Instruction {
    Instruction::Mmap {
        dst,
        length,
        prot: prot::PROT_READ | prot::PROT_WRITE,
        flags: map::MAP_PRIVATE | map::MAP_ANONYMOUS,
        device: None,
        file: None,
    }
}

fn mmap_read_only(dst: u16, length: u64) -> Instruction {
    Instruction::Mmap {
        dst,
        length,
        prot: prot::PROT_READ,
        flags: map::MAP_PRIVATE | map::MAP_ANONYMOUS,
        device: None,
        file: None,
    }
}

/// Register `r` plus `offset`.
fn at(r: u16, offset: i64) -> Operand {
    Operand::Register(r, offset)
}

fn store(address: Operand, length: u64, byte: u8) -> Instruction {
    Instruction::Store { address, length, byte, location: Default::default() }
}

/// A load every byte of which must be `expect`; reported as line 42 of a scenario.
fn load(address: Operand, length: u64, expect: u8) -> Instruction {
    Instruction::Load { address, length, expect, location: SourceLocation { line: 42, column: 3 } }
}

fn madvise(dst: u16, address: Operand, length: u64, advice: Advice) -> Instruction {
    Instruction::Madvise { dst: Some(dst), address, length, advice }
}

fn munmap(dst: u16, address: Operand, length: u64) -> Instruction {
    Instruction::Munmap { dst: Some(dst), address, length }
}

fn pread(dst: u16, buffer: Operand, length: u64, offset: u64) -> Instruction {
    Instruction::Pread { dst: Some(dst), file: 0, buffer, length, offset, direct: true }
}

/// A system under construction: processes (one mm each), their extra threads, kernel threads and
/// files, as the scenario compiler lays them out.
#[derive(Default)]
struct Spec {
    spec: SystemSpec,
}

impl Spec {
    fn new() -> Self {
        Spec::default()
    }

    /// A process whose main thread runs `program` from the start, in its own address space.
    fn process(mut self, program: Vec<Instruction>) -> Self {
        let mm = self.spec.mms as u32;
        self.spec.mms += 1;
        let name = format!("p{mm}");
        self.spec.threads.push(ThreadSpec { name, mm: Some(mm), program, starts: true, registers: REGISTERS });
        self
    }

    /// A thread of process `mm` that waits for a `Spawn`.
    fn thread(mut self, mm: u32, program: Vec<Instruction>) -> Self {
        let name = format!("t{}", self.spec.threads.len());
        self.spec.threads.push(ThreadSpec { name, mm: Some(mm), program, starts: false, registers: REGISTERS });
        self
    }

    fn kthread(mut self, program: Vec<Instruction>) -> Self {
        self.spec.threads.push(ThreadSpec { name: "kswapd".into(), mm: None, program, starts: true, registers: 0 });
        self
    }

    fn device(mut self, kind: DeviceKind, fill: u8) -> Self {
        let name = format!("dev{}", self.spec.devices.len());
        self.spec.devices.push(DeviceSpec { name, kind, fill });
        self
    }

    fn run_with(self, config: KernelConfig) -> Run {
        let system = System::new(self.spec, config);
        let (k, violation, events) = run_sequential(&system);
        Run { k, violation, events }
    }

    fn file(mut self, blocks: Vec<PageData>) -> Self {
        self.spec.files.push(blocks.into());
        self
    }

    fn run(self) -> Run {
        self.run_on(KernelVersion::NEWEST)
    }

    fn run_on(self, version: KernelVersion) -> Run {
        self.run_with(KernelConfig::for_version(version))
    }
}

/// A single process running `program` on the newest kernel.
fn run(program: Vec<Instruction>) -> Run {
    Spec::new().process(program).run()
}

struct Run {
    k: Kernel,
    violation: Option<Violation>,
    events: Vec<Event>,
}

impl Run {
    fn ok(&self) -> &Self {
        assert!(self.violation.is_none(), "unexpected violation: {}", self.violation.as_ref().unwrap());
        self
    }

    fn violation(&self, kind: ViolationKind) -> &Violation {
        let violation = self.violation.as_ref().unwrap_or_else(|| panic!("expected a {} violation", kind.name()));
        assert_eq!(violation.kind, kind, "wrong violation: {violation}");
        violation
    }

    fn register(&self, thread: ThreadId, register: usize) -> i64 {
        self.k.thread(thread).registers[register]
    }

    /// Register 0 of the first thread: where the first mmap went.
    fn buffer(&self) -> u64 {
        self.register(0, 0) as u64
    }

    fn pte(&self, address: u64) -> Pte {
        self.k.mms[0].pte(address >> PAGE_SHIFT)
    }

    fn present(&self, address: u64) -> PresentPte {
        self.pte(address)
            .present()
            .unwrap_or_else(|| panic!("PTE of {address:#x} not present: {:?}", self.pte(address)))
    }

    fn folio(&self, id: FolioId) -> &Folio {
        self.k.folio(id)
    }

    /// The folio the PTE of `address` maps.
    fn mapped_folio(&self, address: u64) -> FolioId {
        pfn_folio(self.present(address).pfn)
    }

    fn allocated(&self) -> Vec<FolioId> {
        (0..self.k.folios.len() as FolioId).filter(|&id| self.k.folio(id).allocated).collect()
    }

    fn lru(&self) -> Vec<(FolioId, LruList)> {
        self.k.lruvec.folios.clone()
    }

    fn has_event(&self, function: &str, label: &str) -> bool {
        self.events.iter().any(|e| e.function == function && e.label == label)
    }
}

fn flags(list: &[PageFlag]) -> u32 {
    list.iter().fold(0, |set, flag| set | flag.mask())
}

// ---- mmap / munmap -----------------------------------------------------------------------------

#[test]
fn mmap_returns_an_address_in_the_vma_list() {
    let r = run(vec![mmap(0, 3 * PAGE), mmap(1, PAGE)]);
    r.ok();
    let (first, second) = (r.register(0, 0) as u64, r.register(0, 1) as u64);
    assert_eq!(first, MMAP_BASE, "the first mapping of a process goes at the mmap base");
    assert_eq!(first % PAGE, 0);
    assert_eq!(second % PAGE, 0);
    let vmas = &r.k.mms[0].vmas;
    assert_eq!(vmas.len(), 2);
    let vma = vmas.iter().find(|v| v.start == first).expect("the first mapping is a VMA");
    assert_eq!(vma.end, first + 3 * PAGE);
    assert_eq!(vma.flags & (vm_flags::VM_READ | vm_flags::VM_WRITE), vm_flags::VM_READ | vm_flags::VM_WRITE);
    assert_eq!(vma.flags & vm_flags::VM_SHARED, 0);
    assert_eq!(vma.file, None);
    assert_eq!(vma.anon_vma, None, "the anon_vma is made on the first fault");
    let other = vmas.iter().find(|v| v.start == second).expect("the second mapping is a VMA");
    assert!(other.start >= vma.end || other.end <= vma.start, "mappings do not overlap");
    assert!(r.k.mms[0].ptes.is_empty(), "mmap populates nothing");
    assert_eq!(r.allocated(), vec![ZERO_FOLIO]);
}

#[test]
fn mmap_rounds_the_length_up_to_pages() {
    let r = run(vec![mmap(0, 100)]);
    r.ok();
    let vma = &r.k.mms[0].vmas[0];
    assert_eq!(vma.end - vma.start, PAGE);
}

#[test]
fn mmap_of_zero_bytes_is_einval() {
    let r = run(vec![mmap(0, 0)]);
    r.ok();
    assert_eq!(r.register(0, 0), -errno::EINVAL);
    assert!(r.k.mms[0].vmas.is_empty());
}

#[test]
fn munmap_then_access_faults() {
    let r = run(vec![mmap(0, PAGE), store(at(0, 0), PAGE, 1), munmap(1, at(0, 0), PAGE), store(at(0, 0), 1, 2)]);
    let violation = r.violation(ViolationKind::Fault);
    assert!(violation.message.contains("SIGSEGV"), "{violation}");
    assert_eq!(r.register(0, 1), 0, "munmap returned 0");
    assert!(r.k.mms[0].vmas.is_empty());
    assert!(r.k.mms[0].ptes.is_empty());
    assert!(!r.folio(1).allocated, "the unmapped folio went back to the allocator");
}

#[test]
fn munmap_then_load_faults() {
    let r = run(vec![mmap(0, PAGE), munmap(1, at(0, 0), PAGE), load(at(0, 0), 1, 0)]);
    let violation = r.violation(ViolationKind::Fault);
    assert!(violation.message.contains("line 42"), "{violation}");
}

#[test]
fn munmap_of_the_middle_page_splits_the_vma() {
    let r = run(vec![
        mmap(0, 3 * PAGE),
        store(at(0, 0), 3 * PAGE, 7),
        munmap(1, at(0, PAGE as i64), PAGE),
        load(at(0, 0), PAGE, 7),
        load(at(0, 2 * PAGE as i64), PAGE, 7),
    ]);
    r.ok();
    let base = r.buffer();
    let ranges: Vec<(u64, u64)> = r.k.mms[0].vmas.iter().map(|v| (v.start, v.end)).collect();
    assert_eq!(ranges, vec![(base, base + PAGE), (base + 2 * PAGE, base + 3 * PAGE)]);
    assert!(r.pte(base + PAGE).is_none());
    // The folio of the middle page is freed; the others stay mapped.
    let live: Vec<FolioId> = r.allocated().into_iter().filter(|&f| f != ZERO_FOLIO).collect();
    assert_eq!(live.len(), 2);
    assert_eq!(r.k.mms[0].rss_anon, 2);
}

#[test]
fn munmap_of_an_unaligned_address_is_einval() {
    let r = run(vec![mmap(0, PAGE), munmap(1, at(0, 8), PAGE)]);
    r.ok();
    assert_eq!(r.register(0, 1), -errno::EINVAL);
    assert_eq!(r.k.mms[0].vmas.len(), 1);
}

// ---- faults --------------------------------------------------------------------------------------

#[test]
fn store_faults_in_an_anonymous_folio() {
    let r = run(vec![mmap(0, 2 * PAGE), store(at(0, 0), 10, 0xab)]);
    r.ok();
    let base = r.buffer();
    let pte = r.present(base);
    assert!(pte.write && pte.dirty && pte.young && !pte.special, "PTE {pte:?}");
    let folio = r.mapped_folio(base);
    assert_ne!(folio, ZERO_FOLIO);
    let f = r.folio(folio);
    assert!(f.allocated);
    assert_eq!(f.refcount, 1);
    assert_eq!(f.mapcount(), 1);
    assert_eq!(
        f.flags,
        flags(&[PageFlag::Anon, PageFlag::Swapbacked, PageFlag::Lru, PageFlag::Uptodate]),
        "{}",
        f.dump(folio)
    );
    assert!(f.pages[0].anon_exclusive);
    assert_eq!(f.pages[0].data.first_mismatch(0, 10, 0xab), None);
    assert_eq!(f.pages[0].data.first_mismatch(10, PAGE as usize - 10, 0), None, "the rest of a new folio is zero");
    assert_eq!(r.lru(), vec![(folio, LruList::InactiveAnon)]);
    assert_eq!(r.k.mms[0].rss_anon, 1);
    // Only the touched page is populated, and the VMA got its anon_vma.
    assert!(r.pte(base + PAGE).is_none());
    assert!(r.k.mms[0].vmas[0].anon_vma.is_some());
    assert!(r.has_event("do_anonymous_page", "set_ptes"));
}

#[test]
fn store_to_a_read_only_mapping_faults() {
    let r = run(vec![mmap_read_only(0, PAGE), store(at(0, 0), 1, 1)]);
    r.violation(ViolationKind::Fault);
}

#[test]
fn load_of_never_written_memory_maps_the_zero_page() {
    let r = run(vec![mmap(0, PAGE), load(at(0, 0), PAGE, 0)]);
    r.ok();
    let pte = r.present(r.buffer());
    assert!(pte.special, "the zero page is mapped by a special PTE");
    assert!(!pte.write, "the zero page is mapped read-only");
    assert_eq!(pfn_folio(pte.pfn), ZERO_FOLIO);
    assert_eq!(r.allocated(), vec![ZERO_FOLIO], "a read fault allocates nothing");
    assert_eq!(r.folio(ZERO_FOLIO).refcount, 1, "the zero page is not refcounted by mappings");
    assert_eq!(r.k.mms[0].rss_anon, 0);
    assert!(r.has_event("do_anonymous_page", "set_pte_at zero page"));
}

#[test]
fn load_of_never_written_memory_expecting_data_is_data_loss() {
    let r = run(vec![mmap(0, PAGE), load(at(0, 0), PAGE, 0x79)]);
    let violation = r.violation(ViolationKind::DataLoss);
    assert!(violation.message.contains("zero page"), "{violation}");
}

#[test]
fn store_then_load_returns_the_byte() {
    let r = run(vec![
        mmap(0, 2 * PAGE),
        store(at(0, 0), 2 * PAGE, 0x5a),
        load(at(0, 0), 2 * PAGE, 0x5a),
        store(at(0, 100), 8, 0x11),
        load(at(0, 100), 8, 0x11),
        load(at(0, 108), PAGE, 0x5a),
    ]);
    r.ok();
}

#[test]
fn store_then_load_across_a_page_boundary() {
    let r = run(vec![mmap(0, 2 * PAGE), store(at(0, PAGE as i64 - 2), 4, 0x33), load(at(0, PAGE as i64 - 2), 4, 0x33)]);
    r.ok();
    let base = r.buffer();
    assert_ne!(r.mapped_folio(base), r.mapped_folio(base + PAGE), "each page has its own folio");
}

#[test]
fn load_of_a_wrong_byte_is_data_loss() {
    let r = run(vec![mmap(0, PAGE), store(at(0, 0), PAGE, 0x01), load(at(0, 0), PAGE, 0x02)]);
    let violation = r.violation(ViolationKind::DataLoss);
    assert!(violation.message.contains("line 42"), "{violation}");
    assert!(violation.message.contains("expected 0x02"), "{violation}");
    assert!(violation.message.contains("read 0x01"), "{violation}");
    assert_eq!(violation.dump.len(), 1, "the folio is dumped");
}

#[test]
fn write_after_read_fault_copies_the_zero_page() {
    let r = run(vec![mmap(0, PAGE), load(at(0, 0), PAGE, 0), store(at(0, 0), 1, 0x5a), load(at(0, 0), 1, 0x5a)]);
    r.ok();
    assert!(r.has_event("do_wp_page", "wp_page_copy"), "the write to the zero page goes through do_wp_page");
    assert!(r.has_event("wp_page_copy", "set_pte_at"));
    let base = r.buffer();
    let pte = r.present(base);
    assert!(pte.write && !pte.special);
    let folio = r.mapped_folio(base);
    assert_ne!(folio, ZERO_FOLIO, "a new folio replaced the zero page");
    let f = r.folio(folio);
    assert_eq!((f.refcount, f.mapcount()), (1, 1));
    assert!(f.test(PageFlag::Anon) && f.test(PageFlag::Swapbacked) && f.test(PageFlag::Lru));
    assert_eq!(f.pages[0].data.first_mismatch(1, PAGE as usize - 1, 0), None, "copied from zeroes");
    assert_eq!(r.folio(ZERO_FOLIO).refcount, 1);
    assert_eq!(r.folio(ZERO_FOLIO).pages[0].data, PageData::Fill(0), "the zero page stays zero");
    assert_eq!(r.k.mms[0].rss_anon, 1);
}

// ---- madvise -------------------------------------------------------------------------------------

#[test]
fn madv_dontneed_zaps_and_frees() {
    let r =
        run(vec![mmap(0, 2 * PAGE), store(at(0, 0), 2 * PAGE, 0x42), madvise(1, at(0, 0), 2 * PAGE, Advice::DontNeed)]);
    r.ok();
    let base = r.buffer();
    assert_eq!(r.register(0, 1), 0);
    assert!(r.pte(base).is_none() && r.pte(base + PAGE).is_none());
    assert_eq!(r.allocated(), vec![ZERO_FOLIO], "both folios were freed");
    assert!(r.lru().is_empty());
    assert_eq!(r.k.mms[0].rss_anon, 0);
    assert_eq!(r.k.mms[0].vmas.len(), 1, "the mapping stays");
}

#[test]
fn load_after_madv_dontneed_reads_zero() {
    let r = run(vec![
        mmap(0, PAGE),
        store(at(0, 0), PAGE, 0x42),
        madvise(1, at(0, 0), PAGE, Advice::DontNeed),
        load(at(0, 0), PAGE, 0),
    ]);
    r.ok();
    assert_eq!(r.mapped_folio(r.buffer()), ZERO_FOLIO);
    let lost = Spec::new()
        .process(vec![
            mmap(0, PAGE),
            store(at(0, 0), PAGE, 0x42),
            madvise(1, at(0, 0), PAGE, Advice::DontNeed),
            load(at(0, 0), PAGE, 0x42),
        ])
        .run();
    lost.violation(ViolationKind::DataLoss);
}

/// MADV_COLD of a scratch page: its lru_add_drain() drains the lazyfree batch.
fn drain_with_cold(scratch: u16) -> Vec<Instruction> {
    vec![mmap(scratch, PAGE), madvise(scratch, at(scratch, 0), PAGE, Advice::Cold)]
}

#[test]
fn madv_free_makes_the_folio_lazyfree_and_keeps_the_data() {
    let program = vec![
        mmap(0, PAGE),
        store(at(0, 0), PAGE, 0x33),
        madvise(1, at(0, 0), PAGE, Advice::Free),
        load(at(0, 0), PAGE, 0x33),
    ];
    let r = run(program.clone());
    r.ok();
    assert_eq!(r.register(0, 1), 0);
    let base = r.buffer();
    let folio = r.mapped_folio(base);
    let f = r.folio(folio);
    // folio_mark_lazyfree() only queues it: still swap-backed, off the LRU, and referenced.
    assert!(f.test(PageFlag::Swapbacked) && !f.test(PageFlag::Lru), "{}", f.dump(folio));
    assert_eq!((f.refcount, f.mapcount()), (2, 1), "the batch holds a reference");
    assert_eq!(r.k.lru_lazyfree.to_vec(), vec![folio]);
    let mut drained = program;
    drained.extend(drain_with_cold(2));
    let r = run(drained);
    r.ok();
    assert_ne!(folio, ZERO_FOLIO, "no reclaim ran: the folio is still mapped");
    let f = r.folio(folio);
    assert!(f.allocated);
    assert!(!f.test(PageFlag::Swapbacked), "lru_lazyfree clears PG_swapbacked: {}", f.dump(folio));
    assert!(f.test(PageFlag::Anon) && f.test(PageFlag::Lru));
    assert!(!f.test(PageFlag::Dirty) && !f.test(PageFlag::Active));
    assert!(r.lru().contains(&(folio, LruList::InactiveFile)), "lazyfree folios sit on the inactive file LRU");
    assert_eq!((f.refcount, f.mapcount()), (1, 1));
    assert!(r.k.lru_lazyfree.is_empty());
}

#[test]
fn madv_free_cleans_the_pte() {
    let r = run(vec![mmap(0, PAGE), store(at(0, 0), PAGE, 0x33), madvise(1, at(0, 0), PAGE, Advice::Free)]);
    r.ok();
    let pte = r.present(r.buffer());
    assert!(!pte.dirty, "clear_young_dirty_ptes(): the PTE is clean");
    assert!(!pte.young, "clear_young_dirty_ptes(): the PTE is old");
    assert!(pte.write, "the mapping stays writable");
}

#[test]
fn store_after_madv_free_redirties_the_pte() {
    let r = run(vec![
        mmap(0, PAGE),
        store(at(0, 0), PAGE, 0x33),
        madvise(1, at(0, 0), PAGE, Advice::Free),
        store(at(0, 0), 1, 0x44),
        load(at(0, 0), 1, 0x44),
        load(at(0, 1), PAGE - 1, 0x33),
    ]);
    r.ok();
    let pte = r.present(r.buffer());
    assert!(pte.dirty && pte.young, "the MMU sets the dirty and accessed bits again");
}

#[test]
fn madv_free_clears_pg_dirty_left_by_direct_io() {
    let before = vec![mmap(0, PAGE), pread(1, at(0, 0), PAGE, 0), madvise(2, at(0, 0), PAGE, Advice::Free)];
    let mut drained = before.clone();
    drained.extend(drain_with_cold(3));
    let r = Spec::new().file(vec![PageData::Fill(0x79)]).process(drained).run();
    r.ok();
    let folio = r.mapped_folio(r.buffer());
    let f = r.folio(folio);
    assert!(!f.test(PageFlag::Dirty), "madvise_free_pte_range() clears PG_dirty of an exclusive folio");
    assert!(!f.test(PageFlag::Locked), "and unlocks it");
    assert!(!f.test(PageFlag::Swapbacked));
    assert!(r.lru().contains(&(folio, LruList::InactiveFile)));
    // With no IO in flight, reclaim may then discard the DMA'd data.
    let r = with_reclaim(before, vec![load(at(0, 0), PAGE, 0)]).file(vec![PageData::Fill(0x79)]).run();
    r.ok();
    assert_eq!(r.mapped_folio(r.buffer()), ZERO_FOLIO);
}

#[test]
fn madv_free_of_the_zero_page_does_nothing() {
    let r = run(vec![
        mmap(0, PAGE),
        load(at(0, 0), PAGE, 0),
        madvise(1, at(0, 0), PAGE, Advice::Free),
        load(at(0, 0), PAGE, 0),
    ]);
    r.ok();
    assert_eq!(r.register(0, 1), 0);
    assert_eq!(r.mapped_folio(r.buffer()), ZERO_FOLIO);
    assert_eq!(r.allocated(), vec![ZERO_FOLIO]);
}

#[test]
fn madvise_of_an_unaligned_address_is_einval() {
    for advice in [Advice::DontNeed, Advice::Free] {
        let r = run(vec![mmap(0, 2 * PAGE), store(at(0, 0), 2 * PAGE, 1), madvise(1, at(0, 1), PAGE, advice)]);
        r.ok();
        assert_eq!(r.register(0, 1), -errno::EINVAL, "{advice:?}");
        let folio = r.mapped_folio(r.buffer());
        assert!(r.folio(folio).test(PageFlag::Swapbacked), "{advice:?}: nothing was done");
    }
}

#[test]
fn madvise_over_a_hole_is_enomem() {
    // Nothing is mapped at all.
    let r = run(vec![madvise(1, Operand::Constant(0x1000_0000), PAGE, Advice::DontNeed)]);
    r.ok();
    assert_eq!(r.register(0, 1), -errno::ENOMEM);
    let r = run(vec![mmap(0, PAGE), madvise(1, at(0, 4 * PAGE as i64), PAGE, Advice::Free)]);
    r.ok();
    assert_eq!(r.register(0, 1), -errno::ENOMEM);
}

#[test]
fn madvise_across_a_hole_is_enomem_and_still_advises_the_mapped_parts() {
    let r = run(vec![
        mmap(0, PAGE),
        mmap(1, PAGE),
        store(at(0, 0), PAGE, 1),
        store(at(1, 0), PAGE, 2),
        madvise(2, at(0, 0), 3 * PAGE, Advice::DontNeed),
    ]);
    r.ok();
    let (first, second) = (r.register(0, 0) as u64, r.register(0, 1) as u64);
    assert_eq!(second, first + 2 * PAGE, "the model leaves one page between mappings: the hole");
    assert_eq!(r.register(0, 2), -errno::ENOMEM);
    assert!(r.pte(first).is_none() && r.pte(second).is_none(), "both mapped pages were zapped");
    assert_eq!(r.allocated(), vec![ZERO_FOLIO]);
}

#[test]
fn madvise_of_zero_length_is_a_no_op() {
    let r = run(vec![mmap(0, PAGE), store(at(0, 0), PAGE, 1), madvise(1, at(0, 0), 0, Advice::DontNeed)]);
    r.ok();
    assert_eq!(r.register(0, 1), 0);
    assert!(r.pte(r.buffer()).present().is_some());
}

// ---- O_DIRECT ------------------------------------------------------------------------------------

#[test]
fn direct_pread_fills_the_buffer_and_dirties_the_folios() {
    let r = Spec::new()
        .file(vec![PageData::Fill(0x79); 2])
        .process(vec![
            mmap(0, 2 * PAGE),
            store(at(0, 0), 2 * PAGE, 0x01),
            pread(1, at(0, 0), 2 * PAGE, 0),
            load(at(0, 0), 2 * PAGE, 0x79),
        ])
        .run();
    r.ok();
    assert_eq!(r.register(0, 1), 2 * PAGE as i64, "pread returns the length");
    let base = r.buffer();
    for address in [base, base + PAGE] {
        let folio = r.mapped_folio(address);
        let f = r.folio(folio);
        assert!(f.test(PageFlag::Dirty), "bio_release_pages() dirties the folio: {}", f.dump(folio));
        assert_eq!(f.refcount, 1, "the GUP reference or pin was dropped: {}", f.dump(folio));
        assert_eq!(f.pincount, 0);
        assert_eq!(f.pages[0].data, PageData::Fill(0x79));
    }
    assert!(r.has_event("submit_bio_wait", "dma"));
}

#[test]
fn direct_pread_faults_in_an_untouched_buffer() {
    let r = Spec::new()
        .file(vec![PageData::Fill(0x79)])
        .process(vec![mmap(0, PAGE), pread(1, at(0, 0), PAGE, 0), load(at(0, 0), PAGE, 0x79)])
        .run();
    r.ok();
    assert_eq!(r.register(0, 1), PAGE as i64);
    let folio = r.mapped_folio(r.buffer());
    assert_ne!(folio, ZERO_FOLIO);
    assert!(r.folio(folio).test(PageFlag::Dirty));
    assert_eq!(r.folio(folio).refcount, 1);
}

#[test]
fn direct_pread_reads_from_the_offset() {
    let r = Spec::new()
        .file(vec![PageData::Fill(0x11), PageData::Fill(0x22), PageData::Fill(0x33)])
        .process(vec![mmap(0, PAGE), pread(1, at(0, 0), PAGE, PAGE), load(at(0, 0), PAGE, 0x22)])
        .run();
    r.ok();
    assert_eq!(r.register(0, 1), PAGE as i64);
}

#[test]
fn direct_pread_is_short_at_the_end_of_the_file() {
    let r = Spec::new()
        .file(vec![PageData::Fill(0x11)])
        .process(vec![mmap(0, 2 * PAGE), pread(1, at(0, 0), 2 * PAGE, 0), load(at(0, 0), PAGE, 0x11)])
        .run();
    r.ok();
    assert_eq!(r.register(0, 1), PAGE as i64);
}

#[test]
fn direct_pread_needs_512_byte_alignment_and_may_straddle_pages() {
    let r = Spec::new()
        .file(vec![PageData::Fill(0x11)])
        .process(vec![mmap(0, 2 * PAGE), pread(1, at(0, 1), PAGE, 0)])
        .run();
    r.ok();
    assert_eq!(r.register(0, 1), -errno::EINVAL, "off the DMA alignment");
    let program = vec![
        mmap(0, 2 * PAGE),
        store(at(0, 0), 2 * PAGE, 0x01),
        pread(1, at(0, 512), PAGE, 0),
        load(at(0, 0), 512, 0x01),
        load(at(0, 512), PAGE, 0x11),
        load(at(0, PAGE as i64 + 512), PAGE - 512, 0x01),
    ];
    let r = Spec::new().file(vec![PageData::Fill(0x11)]).process(program).run();
    r.ok();
    assert_eq!(r.register(0, 1), PAGE as i64, "a 512-byte-aligned buffer straddling two pages");
}

#[test]
fn direct_pread_into_unmapped_or_read_only_memory_is_efault() {
    let r = Spec::new()
        .file(vec![PageData::Fill(0x11)])
        .process(vec![pread(1, Operand::Constant(0x1000_0000), PAGE, 0)])
        .run();
    r.ok();
    assert_eq!(r.register(0, 1), -errno::EFAULT);
    let r = Spec::new()
        .file(vec![PageData::Fill(0x11)])
        .process(vec![mmap_read_only(0, PAGE), pread(1, at(0, 0), PAGE, 0)])
        .run();
    r.ok();
    assert_eq!(r.register(0, 1), -errno::EFAULT);
}

#[test]
fn direct_pread_takes_pins_since_6_5_and_references_before() {
    let program = || vec![mmap(0, PAGE), store(at(0, 0), PAGE, 1), pread(1, at(0, 0), PAGE, 0)];
    let new = Spec::new().file(vec![PageData::Fill(0x79)]).process(program()).run_on(KernelVersion::new(6, 5));
    new.ok();
    assert!(new.events.iter().any(|e| e.label == "unpin_user_page"));
    let old = Spec::new().file(vec![PageData::Fill(0x79)]).process(program()).run_on(KernelVersion::new(6, 4));
    old.ok();
    assert!(old.events.iter().any(|e| e.label == "put_page"));
    for r in [&new, &old] {
        assert_eq!(r.register(0, 1), PAGE as i64);
        assert_eq!(r.folio(r.mapped_folio(r.buffer())).refcount, 1);
    }
}

// ---- reclaim -------------------------------------------------------------------------------------

/// A process that runs `before`, lets kswapd run one reclaim pass, then runs `after`.
fn with_reclaim(before: Vec<Instruction>, after: Vec<Instruction>) -> Spec {
    let mut program = before;
    program.push(Instruction::Signal { event: 0 });
    program.push(Instruction::WaitEvent { event: 1 });
    program.extend(after);
    Spec::new().process(program).kthread(vec![
        Instruction::WaitEvent { event: 0 },
        Instruction::Reclaim,
        Instruction::Signal { event: 1 },
    ])
}

#[test]
fn reclaim_discards_a_clean_lazyfree_folio() {
    let before = vec![mmap(0, PAGE), store(at(0, 0), PAGE, 0x01), madvise(1, at(0, 0), PAGE, Advice::Free)];
    let r = with_reclaim(before.clone(), vec![]).run();
    r.ok();
    assert!(r.has_event("try_to_unmap_one", "discard"));
    assert!(r.has_event("shrink_folio_list", "free_it"));
    assert!(r.pte(r.buffer()).is_none(), "try_to_unmap() cleared the PTE");
    assert_eq!(r.allocated(), vec![ZERO_FOLIO], "the lazyfree folio was freed");
    assert!(r.lru().is_empty());
    assert_eq!(r.k.mms[0].rss_anon, 0);
    // MADV_FREE data may be discarded: a later load reads zeroes.
    let r = with_reclaim(before, vec![load(at(0, 0), PAGE, 0)]).run();
    r.ok();
    assert_eq!(r.mapped_folio(r.buffer()), ZERO_FOLIO);
}

#[test]
fn reclaim_keeps_a_swapbacked_folio_and_its_data() {
    let r = with_reclaim(vec![mmap(0, PAGE), store(at(0, 0), PAGE, 0x42)], vec![load(at(0, 0), PAGE, 0x42)]).run();
    r.ok();
    let folio = r.mapped_folio(r.buffer());
    assert_ne!(folio, ZERO_FOLIO);
    let f = r.folio(folio);
    assert!(f.allocated);
    // folio_check_references(): one young PTE and no PG_referenced yet: FOLIOREF_KEEP, with
    // PG_referenced set "for another trip around the inactive list".
    assert!(!f.test(PageFlag::Active), "kept, not activated: {}", f.dump(folio));
    assert!(f.test(PageFlag::Referenced), "marked referenced: {}", f.dump(folio));
    assert!(f.test(PageFlag::Swapbacked) && f.test(PageFlag::Lru));
    assert!(!f.test(PageFlag::Locked), "reclaim unlocked the folio");
    assert_eq!(f.refcount, 1, "the isolation reference was dropped");
    assert_eq!(r.lru(), vec![(folio, LruList::InactiveAnon)]);
    assert!(r.has_event("shrink_folio_list", "keep_locked"));
}

#[test]
fn reclaim_keeps_a_lazyfree_folio_written_again() {
    let before = vec![
        mmap(0, PAGE),
        store(at(0, 0), PAGE, 0x01),
        madvise(1, at(0, 0), PAGE, Advice::Free),
        store(at(0, 0), PAGE, 0x02),
    ];
    let r = with_reclaim(before, vec![load(at(0, 0), PAGE, 0x02)]).run();
    r.ok();
    let folio = r.mapped_folio(r.buffer());
    assert_ne!(folio, ZERO_FOLIO, "the redirtied lazyfree folio was not discarded");
    assert!(r.folio(folio).allocated);
}

#[test]
fn reclaim_with_nothing_on_the_lru_does_nothing() {
    let r = with_reclaim(vec![mmap(0, PAGE)], vec![load(at(0, 0), PAGE, 0)]).run();
    r.ok();
    assert!(r.has_event("isolate_lru_folios", "isolate"));
    assert_eq!(r.allocated(), vec![ZERO_FOLIO]);
}

// ---- threads and exit ----------------------------------------------------------------------------

#[test]
fn exit_frees_every_folio_but_the_zero_page() {
    let program = vec![
        mmap(0, 4 * PAGE),
        store(at(0, 0), 2 * PAGE, 0x01),
        load(at(0, 2 * PAGE as i64), PAGE, 0),
        madvise(1, at(0, 0), PAGE, Advice::Free),
        mmap(2, PAGE),
        pread(3, at(2, 0), PAGE, 0),
        Instruction::Exit,
    ];
    let r = Spec::new().file(vec![PageData::Fill(0x79)]).process(program).run();
    r.ok();
    assert_eq!(r.register(0, 3), PAGE as i64);
    assert_eq!(r.allocated(), vec![ZERO_FOLIO], "exit_mmap() released every folio");
    assert!(r.k.folios.len() > 3, "folios were allocated along the way");
    let mm = &r.k.mms[0];
    assert!(mm.exited);
    assert!(mm.vmas.is_empty());
    assert!(mm.ptes.is_empty());
    assert_eq!((mm.rss_anon, mm.rss_file), (0, 0));
    assert!(r.lru().is_empty());
    assert_eq!(r.folio(ZERO_FOLIO).refcount, 1);
    assert_eq!(r.k.thread(0).status, ThreadStatus::Done);
}

#[test]
fn exit_after_reclaim_leaks_nothing() {
    let before = vec![mmap(0, 2 * PAGE), store(at(0, 0), 2 * PAGE, 0x01), madvise(1, at(0, 0), PAGE, Advice::Free)];
    let r = with_reclaim(before, vec![Instruction::Exit]).run();
    r.ok();
    assert_eq!(r.allocated(), vec![ZERO_FOLIO]);
}

#[test]
fn a_spawned_thread_shares_the_address_space_and_registers() {
    // The main thread maps, spawns a thread that writes and reads through the copied register,
    // joins it and exits: the scenario compiler's layout.
    let r = Spec::new()
        .process(vec![
            mmap(0, PAGE),
            Instruction::Spawn { thread: 1 },
            Instruction::Join { threads: vec![1] },
            load(at(0, 0), PAGE, 0x66),
            Instruction::Exit,
        ])
        .thread(0, vec![store(at(0, 0), PAGE, 0x66), load(at(0, 0), PAGE, 0x66)])
        .run();
    r.ok();
    assert_eq!(r.register(1, 0), r.register(0, 0), "the child got a copy of the registers");
    assert_eq!(r.k.thread(1).status, ThreadStatus::Done);
    assert_eq!(r.allocated(), vec![ZERO_FOLIO]);
    assert!(r.has_event("clone", "spawn"));
}

#[test]
fn processes_have_separate_address_spaces() {
    let r = Spec::new()
        .process(vec![mmap(0, PAGE), store(at(0, 0), PAGE, 0x01), load(at(0, 0), PAGE, 0x01)])
        .process(vec![mmap(0, PAGE), load(at(0, 0), PAGE, 0)])
        .run();
    r.ok();
    assert_eq!(r.register(0, 0), r.register(1, 0), "each process maps at its own mmap base");
    assert_ne!(r.k.mms[0].ptes[0].1, r.k.mms[1].ptes[0].1);
    assert_eq!(pfn_folio(r.k.mms[1].ptes[0].1.present().unwrap().pfn), ZERO_FOLIO);
}

#[test]
fn a_failed_assert_is_an_assertion_violation() {
    use mmcheck_model::program::{Comparison, Condition};
    let r = run(vec![
        mmap(0, PAGE),
        madvise(1, at(0, 1), PAGE, Advice::Free),
        Instruction::Assert {
            condition: Condition::Compare {
                left: at(1, 0),
                mask: None,
                comparison: Comparison::Equal,
                right: Operand::Constant(0),
            },
            text: "r == 0".into(),
            location: SourceLocation { line: 7, column: 3 },
        },
    ]);
    let violation = r.violation(ViolationKind::Assertion);
    assert!(violation.message.contains("line 7"), "{violation}");
    assert!(violation.message.contains("EINVAL"), "{violation}");
}

#[test]
fn a_thread_waiting_for_an_event_nobody_signals_is_a_deadlock() {
    let r = run(vec![Instruction::WaitEvent { event: 3 }]);
    let violation = r.violation(ViolationKind::Deadlock);
    assert!(violation.message.contains("p0"), "{violation}");
}

// ---- drivers: vm_insert_page(), remap_pfn_range(), vm_normal_page() ---------------------------

fn mmap_device(dst: u16, length: u64, flags: u32, device: u32) -> Instruction {
    Instruction::Mmap { dst, length, prot: prot::PROT_READ | prot::PROT_WRITE, flags, device: Some(device), file: None }
}

const COMPOUND: DeviceKind = DeviceKind::InsertPage { order: 2, compound: true, batched: false };

#[test]
fn vm_insert_page_maps_subpages_of_a_compound_page_as_normal_file_pages() {
    let r = Spec::new().process(vec![mmap_device(0, 4 * PAGE, map::MAP_SHARED, 0), store(at(0, 0), 4 * PAGE, 0x5a)]);
    let r = r.device(COMPOUND, 0).run();
    r.ok();
    let buffer = r.buffer();
    let vma = r.k.mms[0].find_vma(buffer).expect("the device VMA").clone();
    assert_ne!(vma.flags & vm_flags::VM_MIXEDMAP, 0, "vm_insert_page() sets VM_MIXEDMAP");
    assert_eq!(vma.flags & vm_flags::VM_PFNMAP, 0);
    let folio: FolioId = vma.private_folios[0];
    for page in 0..4u64 {
        let present = r.pte(buffer + page * PAGE).present().expect("mapped at mmap time");
        assert!(!present.special, "vm_insert_page() PTEs are normal");
        assert!(present.write && present.dirty, "a shared writable mapping, then stored to");
        assert_eq!(pfn_folio(present.pfn), folio);
    }
    let f = r.k.folio(folio);
    assert_eq!(f.order, 2);
    assert!(!f.test(PageFlag::LargeRmappable) && !f.test(PageFlag::Anon));
    assert_eq!(f.refcount, 1 + 4, "the driver's reference and one per PTE (folio_get)");
    assert!(f.pages.iter().all(|p| p.mapcount == 1), "folio_add_file_rmap_pte() per subpage");
    assert_eq!(r.k.mms[0].rss_file, 4);
    assert_eq!(r.k.mms[0].rss_anon, 0);
}

#[test]
fn the_driver_page_is_freed_once_unmapped_and_closed() {
    let program = vec![mmap_device(0, 4 * PAGE, map::MAP_SHARED, 0), munmap(1, at(0, 0), 4 * PAGE)];
    let r = Spec::new().process(program).device(COMPOUND, 0).run();
    r.ok();
    assert_eq!(r.register(0, 1), 0);
    let freed = r.k.folios.iter().skip(1).all(|f| !f.allocated);
    assert!(freed, "zap dropped four mappings, vm_ops->close the allocation");
    let partial = vec![mmap_device(0, 4 * PAGE, map::MAP_SHARED, 0), munmap(1, at(0, PAGE as i64), PAGE)];
    let r = Spec::new().process(partial).device(COMPOUND, 0).run();
    assert_eq!(r.register(0, 1), -errno::EINVAL, "vm_ops->may_split refuses");
}

#[test]
fn the_large_rmappable_warning_fires_only_between_its_two_patches() {
    let program = || vec![mmap_device(0, 2 * PAGE, map::MAP_SHARED, 0)];
    let mut window = KernelConfig::for_version(KernelVersion::new(6, 8));
    window.set(mmcheck_model::Patch::RmapSilenceLargeRmappableWarning, false);
    let r = Spec::new().process(program()).device(COMPOUND, 0).run_with(window.clone());
    let warning = r.violation(ViolationKind::KernelWarning);
    assert!(warning.message.contains("folio_add_file_rmap_pte"), "{warning}");
    for version in [KernelVersion::new(6, 7), KernelVersion::new(6, 8), KernelVersion::NEWEST] {
        Spec::new().process(program()).device(COMPOUND, 0).run_on(version).ok();
    }
    // Order-0 driver pages never trip it.
    let small = DeviceKind::InsertPage { order: 0, compound: false, batched: true };
    let r = Spec::new().process(program()).device(small, 0).run_with(window);
    r.ok();
    assert_eq!(r.k.mms[0].rss_file, 2);
}

#[test]
fn remap_pfn_range_maps_special_ptes_and_a_private_write_cows_an_anonymous_copy() {
    let pfnmap = DeviceKind::RemapPfn { base: 0, pages: 4 };
    let program = vec![mmap_device(0, 4 * PAGE, map::MAP_PRIVATE, 0), store(at(0, PAGE as i64), 16, 0x11)];
    let r = Spec::new().process(program).device(pfnmap, 0x77).run();
    r.ok();
    let buffer = r.buffer();
    let vma = r.k.mms[0].find_vma(buffer).expect("the device VMA").clone();
    assert_eq!(vma.flags & (vm_flags::VM_PFNMAP | vm_flags::VM_IO), vm_flags::VM_PFNMAP | vm_flags::VM_IO);
    let raw = r.pte(buffer).present().expect("remapped");
    assert!(raw.special && !raw.write, "a private mapping's PTEs are read-only and special");
    assert_eq!(vma.pgoff, raw.pfn, "a COW PFN map records its first pfn in vm_pgoff");
    let copied = r.pte(buffer + PAGE).present().expect("COWed");
    assert!(!copied.special && copied.write);
    let anon = pfn_folio(copied.pfn);
    assert!(r.k.folio(anon).test(PageFlag::Anon));
    let data = &r.k.folio(anon).pages[0].data;
    assert_eq!(data.first_mismatch(0, 16, 0x11), None, "the store landed in the copy");
    assert_eq!(data.first_mismatch(16, 4080, 0x77), None, "the rest was copied from the device memory");
    assert_eq!(r.k.mms[0].rss_anon, 1);
    // vm_normal_page(): with pte_special() the raw pfn is not normal and the copy is; without
    // it, the linearity rule decides the same.
    use mmcheck_model::mm::memory::vm_normal_page_arch;
    for special in [true, false] {
        assert_eq!(vm_normal_page_arch(&vma, buffer, raw, special), None);
        assert_eq!(vm_normal_page_arch(&vma, buffer + PAGE, copied, special), Some(copied.pfn));
    }
    // Without pte_special(), a shared PFN map never has normal pages.
    let shared = mmcheck_model::state::Vma { flags: vma.flags | vm_flags::VM_SHARED, ..vma.clone() };
    assert_eq!(vm_normal_page_arch(&shared, buffer + PAGE, copied, false), None);
}

#[test]
fn a_hole_in_a_device_mapping_faults_with_sigbus() {
    let program = vec![
        mmap_device(0, 2 * PAGE, map::MAP_SHARED, 0),
        madvise(1, at(0, 0), PAGE, Advice::DontNeed),
        load(at(0, 0), 8, 0),
    ];
    let r = Spec::new().process(program).device(COMPOUND, 0).run();
    let fault = r.violation(ViolationKind::Fault);
    assert!(fault.message.contains("SIGBUS"), "{fault}");
}

fn move_pages(dst: u16, address: Operand) -> Instruction {
    Instruction::MovePagesStatus { dst: Some(dst), address }
}

fn smaps(dst: u16, address: Operand, field: SmapsField) -> Instruction {
    Instruction::Smaps { dst: Some(dst), address, field }
}

#[test]
fn move_pages_status_query_reports_node_enoent_and_efault() {
    // Anonymous memory: a written page is on node 0, an untouched one is "not present", a
    // read-faulted one is the zero page (-EFAULT), an unmapped address -EFAULT.
    let program = vec![
        mmap(0, 3 * PAGE),
        store(at(0, 0), 8, 1),
        load(at(0, 2 * PAGE as i64), 8, 0),
        move_pages(1, at(0, 0)),
        move_pages(2, at(0, PAGE as i64)),
        move_pages(3, at(0, 2 * PAGE as i64)),
    ];
    let r = run(program);
    r.ok();
    assert_eq!((r.register(0, 1), r.register(0, 2), r.register(0, 3)), (0, -errno::ENOENT, -errno::EFAULT));
    let r = run(vec![mmap(0, PAGE), move_pages(1, at(0, 4 * PAGE as i64))]);
    assert_eq!(r.register(0, 1), -errno::EFAULT, "no VMA");
    // Before 46d6a9b4450b (6.12), follow_page(FOLL_DUMP) made a none PTE -EFAULT too, and took
    // a reference it then dropped.
    let r = Spec::new().process(vec![
        mmap(0, 2 * PAGE),
        store(at(0, 0), 8, 1),
        move_pages(1, at(0, 0)),
        move_pages(2, at(0, PAGE as i64)),
    ]);
    let r = r.run_on(KernelVersion::new(6, 11));
    r.ok();
    assert_eq!((r.register(0, 1), r.register(0, 2)), (0, -errno::EFAULT));
    let folio = pfn_folio(r.pte(r.buffer()).present().expect("mapped").pfn);
    assert_eq!(r.k.folio(folio).refcount, 1, "follow_page's FOLL_GET reference was put");
}

#[test]
fn smaps_accounts_anonymous_lazyfree_and_shared_pages() {
    let program = vec![
        mmap(0, 4 * PAGE),
        store(at(0, 0), 4 * PAGE, 1),
        madvise(1, at(0, 2 * PAGE as i64), 2 * PAGE, Advice::Free),
        mmap(3, PAGE),
        madvise(1, at(3, 0), PAGE, Advice::Cold),
        smaps(1, at(0, 0), SmapsField::Rss),
        smaps(2, at(0, 0), SmapsField::Anonymous),
        smaps(3, at(0, 0), SmapsField::LazyFree),
    ];
    let r = run(program);
    r.ok();
    assert_eq!((r.register(0, 1), r.register(0, 2), r.register(0, 3)), (16, 16, 8));
    // A driver's compound page mapped four times: Rss counts it, Anonymous does not, and
    // each page is private (mapcount 1) though the folio's refcount is 5.
    let program = vec![
        mmap_device(0, 4 * PAGE, map::MAP_SHARED, 0),
        smaps(1, at(0, 0), SmapsField::Rss),
        smaps(2, at(0, 0), SmapsField::Anonymous),
        smaps(3, at(0, 0), SmapsField::PrivateClean),
    ];
    let r = Spec::new().process(program).device(COMPOUND, 0).run();
    r.ok();
    assert_eq!((r.register(0, 1), r.register(0, 2), r.register(0, 3)), (16, 0, 16));
}

#[test]
fn smaps_walks_pfn_maps_since_6_2() {
    let pfnmap = DeviceKind::RemapPfn { base: 0, pages: 2 };
    let program = || {
        vec![
            mmap_device(0, 2 * PAGE, map::MAP_PRIVATE, 0),
            store(at(0, 0), 8, 1),
            smaps(1, at(0, 0), SmapsField::Anonymous),
            smaps(2, at(0, 0), SmapsField::Rss),
        ]
    };
    let r = Spec::new().process(program()).device(pfnmap, 0).run();
    assert_eq!((r.register(0, 1), r.register(0, 2)), (4, 4), "the COWed page; the raw pfn is not counted");
    let r = Spec::new().process(program()).device(pfnmap, 0).run_on(KernelVersion::new(6, 1));
    assert_eq!((r.register(0, 1), r.register(0, 2)), (0, 0), "walk_page_test() skipped VM_PFNMAP");
}

// ---- file mappings -------------------------------------------------------------------------------

fn mmap_file(dst: u16, length: u64, flags: u32, file: u32) -> Instruction {
    Instruction::Mmap { dst, length, prot: prot::PROT_READ | prot::PROT_WRITE, flags, device: None, file: Some(file) }
}

#[test]
fn madvise_free_of_a_file_mapping_is_einval_and_dontneed_is_not() {
    let program = vec![
        mmap_file(0, 2 * PAGE, map::MAP_SHARED, 0),
        mmap_file(1, 2 * PAGE, map::MAP_PRIVATE, 0),
        madvise(2, at(0, 0), 2 * PAGE, Advice::Free),
        madvise(3, at(1, 0), 2 * PAGE, Advice::Free),
        madvise(2, at(0, 0), 2 * PAGE, Advice::DontNeed),
    ];
    let r = Spec::new().file(vec![PageData::Fill(0x5a); 2]).process(program).run();
    r.ok();
    assert_eq!(r.register(0, 3), -errno::EINVAL, "madvise_free_single_vma(): not anonymous");
    assert_eq!(r.register(0, 2), 0, "MADV_DONTNEED of a file mapping");
    let shared = r.k.mms[0].find_vma(r.buffer()).expect("the shared file VMA").clone();
    let private = r.k.mms[0].find_vma(r.register(0, 1) as u64).expect("the private file VMA").clone();
    assert_eq!((shared.file, shared.pgoff, private.file, private.pgoff), (Some(0), 0, Some(0), 0));
    let sharing = vm_flags::VM_SHARED | vm_flags::VM_MAYSHARE;
    assert_eq!(shared.flags & (sharing | vm_flags::VM_MAYWRITE), sharing | vm_flags::VM_MAYWRITE);
    assert_eq!(private.flags & (sharing | vm_flags::VM_MAYWRITE), vm_flags::VM_MAYWRITE);
    assert!(!shared.is_anonymous() && r.k.mms[0].ptes.iter().next().is_none(), "nothing was faulted");
    // An anonymous VMA before it is still advised: the walk stops with the file VMA's error.
    let program = vec![
        mmap(0, PAGE),
        mmap_file(1, PAGE, map::MAP_SHARED, 0),
        store(at(0, 0), PAGE, 1),
        madvise(2, at(0, 0), 3 * PAGE, Advice::Free),
    ];
    let r = Spec::new().file(vec![PageData::Fill(0x5a)]).process(program).run();
    r.ok();
    assert_eq!(r.register(0, 2), -errno::EINVAL, "not -ENOMEM for the hole: the VMA's error wins");
    assert!(!r.present(r.buffer()).dirty, "the anonymous page was advised (clear_young_dirty_ptes())");
}

#[test]
fn madvise_free_and_dontneed_of_device_mappings_follow_the_vma_checks() {
    let pfnmap = DeviceKind::RemapPfn { base: 0, pages: 2 };
    for (device, advice, expected) in [
        (pfnmap, Advice::Free, -errno::EINVAL),
        (pfnmap, Advice::DontNeed, -errno::EINVAL),
        (COMPOUND, Advice::Free, -errno::EINVAL),
        (COMPOUND, Advice::DontNeed, 0),
    ] {
        let length = if device == COMPOUND { 4 * PAGE } else { 2 * PAGE };
        let program = vec![mmap_device(0, length, map::MAP_SHARED, 0), madvise(1, at(0, 0), length, advice)];
        let r = Spec::new().process(program).device(device, 0x77).run();
        r.ok();
        assert_eq!(r.register(0, 1), expected, "{device:?} {advice:?}");
    }
}

#[test]
fn a_read_fault_in_a_file_mapping_maps_the_page_cache_folio_read_only() {
    for mapping in [map::MAP_PRIVATE, map::MAP_SHARED] {
        let program = vec![mmap_file(0, PAGE, mapping, 0), load(at(0, 0), 8, 0x5a)];
        let r = Spec::new().file(vec![PageData::Fill(0x5a)]).process(program).run();
        r.ok();
        let pte = r.present(r.buffer());
        assert!(!pte.write && !pte.dirty && pte.young && !pte.special, "PTE {pte:?}");
        let folio = r.mapped_folio(r.buffer());
        let f = r.folio(folio);
        // The page cache's reference and the PTE's; on the inactive file LRU, unlocked.
        assert_eq!((f.refcount, f.mapcount()), (2, 1), "{}", f.dump(folio));
        assert_eq!(f.mapping, Mapping::File(0));
        assert_eq!(f.flags, flags(&[PageFlag::Uptodate, PageFlag::Lru]), "{}", f.dump(folio));
        assert_eq!(r.k.files[0].cache, [(0, folio)].into());
        assert_eq!(r.lru(), vec![(folio, LruList::InactiveFile)]);
        assert_eq!((r.k.mms[0].rss_file, r.k.mms[0].rss_anon), (1, 0));
        // A major fault: read-around with mmap_lock dropped, VM_FAULT_RETRY, and the retry
        // finds the page cached (fault-around maps it).
        assert!(r.has_event("do_sync_mmap_readahead", "page_cache_ra_unbounded"));
        assert!(r.has_event("maybe_unlock_mmap_for_io", "mmap_read_unlock"));
        assert!(r.has_event("do_user_addr_fault", "VM_FAULT_RETRY"));
        assert!(r.has_event("do_fault_around", "filemap_map_pages"));
    }
}

#[test]
fn a_write_fault_in_a_private_file_mapping_maps_an_anonymous_copy() {
    let program = vec![mmap_file(0, PAGE, map::MAP_PRIVATE, 0), store(at(0, 0), 8, 1), load(at(0, 8), 8, 0x5a)];
    let r = Spec::new().file(vec![PageData::Fill(0x5a)]).process(program).run();
    r.ok();
    let pte = r.present(r.buffer());
    assert!(pte.write && pte.dirty, "PTE {pte:?}");
    let copy = r.mapped_folio(r.buffer());
    assert!(r.folio(copy).test(PageFlag::Anon) && r.folio(copy).pages[0].anon_exclusive);
    // The cached page stays cached, unmapped, with the page cache's reference alone.
    let cached = r.k.files[0].cached(0).expect("the page stays cached");
    assert_ne!(cached, copy);
    assert_eq!((r.folio(cached).refcount, r.folio(cached).mapcount()), (1, 0));
    assert_eq!(r.folio(cached).pages[0].data, PageData::Fill(0x5a));
    assert_eq!((r.k.mms[0].rss_file, r.k.mms[0].rss_anon), (0, 1));
    assert!(r.has_event("do_cow_fault", "copy_mc_user_highpage"));
}

#[test]
fn a_buffered_read_copies_from_the_page_cache_and_leaves_the_page_cached() {
    let buffered = |dst, buffer, length, offset| Instruction::Pread {
        dst: Some(dst),
        file: 0,
        buffer,
        length,
        offset,
        direct: false,
    };
    let program = vec![
        mmap(0, 2 * PAGE),
        buffered(1, at(0, 512), PAGE, 0),
        load(at(0, 512), PAGE, 0x5a),
        load(at(0, 0), 512, 0),
        buffered(2, at(0, 0), 2 * PAGE, 0),
        buffered(3, at(0, 0), PAGE, PAGE),
    ];
    let r = Spec::new().file(vec![PageData::Fill(0x5a)]).process(program).run();
    r.ok();
    // A whole page, then short at the end of the file, then nothing past it.
    assert_eq!((r.register(0, 1), r.register(0, 2), r.register(0, 3)), (PAGE as i64, PAGE as i64, 0));
    let cached = r.k.files[0].cached(0).expect("the page stays cached");
    let f = r.folio(cached);
    assert_eq!((f.refcount, f.mapcount()), (1, 0), "{}", f.dump(cached));
    // folio_mark_accessed() by each read of page 0 (each pread opens the file afresh): the
    // first sets PG_referenced, the second finds it set and activates the folio.
    assert_eq!(f.flags, flags(&[PageFlag::Uptodate, PageFlag::Lru, PageFlag::Active]), "{}", f.dump(cached));
    assert!(r.lru().contains(&(cached, LruList::ActiveFile)), "{:?}", r.lru());
    // The buffer's two pages were faulted in by copy_to_user() as anonymous memory.
    assert_eq!(r.k.mms[0].rss_anon, 2);
    assert!(r.has_event("copy_folio_to_iter", "copy_to_user"));
}

#[test]
fn a_buffered_read_into_memory_that_cannot_be_written_is_efault() {
    let program = vec![
        mmap_read_only(0, PAGE),
        Instruction::Pread { dst: Some(1), file: 0, buffer: at(0, 0), length: PAGE, offset: 0, direct: false },
    ];
    let r = Spec::new().file(vec![PageData::Fill(0x5a)]).process(program).run();
    r.ok();
    assert_eq!(r.register(0, 1), -errno::EFAULT);
}

#[test]
fn a_read_fault_maps_the_cached_pages_around_it_too() {
    // Three cached pages (a buffered read), then a read fault on the second of a mapping of four:
    // do_fault_around() maps the other cached ones, within the VMA and the file.
    let program = vec![
        mmap(0, 4 * PAGE),
        Instruction::Pread { dst: Some(1), file: 0, buffer: at(0, 0), length: 3 * PAGE, offset: 0, direct: false },
        mmap_file(2, 4 * PAGE, map::MAP_PRIVATE, 0),
        load(at(2, PAGE as i64), 8, 0x5a),
    ];
    let r = Spec::new().file(vec![PageData::Fill(0x5a); 3]).process(program).run();
    r.ok();
    let base = r.register(0, 2) as u64;
    for page in 0..3 {
        assert!(r.pte(base + page * PAGE).present().is_some(), "page {page} mapped by fault-around");
    }
    assert!(r.pte(base + 3 * PAGE).is_none(), "beyond the end of the file");
    assert_eq!(r.k.mms[0].rss_file, 3);
    assert!(r.has_event("do_fault_around", "filemap_map_pages"));
    assert!(!r.has_event("filemap_fault", "filemap_get_folio"), "the faulting page was mapped around");
}

#[test]
fn ftruncate_unmaps_and_uncaches_the_pages_beyond_the_new_size() {
    let program = vec![
        mmap_file(0, 2 * PAGE, map::MAP_PRIVATE, 0),
        load(at(0, 0), 2 * PAGE, 0x5a),
        // A private copy of page 0 stays; of page 1 goes too (unmap_mapping_range's even_cows).
        store(at(0, 0), 8, 1),
        store(at(0, PAGE as i64), 8, 1),
        Instruction::Ftruncate { dst: Some(1), file: 0, length: PAGE },
        mmap(2, PAGE),
        Instruction::Pread { dst: Some(3), file: 0, buffer: at(2, 0), length: 2 * PAGE, offset: 0, direct: false },
    ];
    let r = Spec::new().file(vec![PageData::Fill(0x5a); 2]).process(program).run();
    r.ok();
    let base = r.buffer();
    assert_eq!(r.register(0, 1), 0);
    assert!(r.pte(base).present().is_some(), "below the new size");
    assert!(r.pte(base + PAGE).is_none(), "the private copy beyond the size is zapped too");
    assert!(r.k.files[0].cached(0).is_some() && r.k.files[0].cached(1).is_none());
    assert_eq!(r.register(0, 3), PAGE as i64, "a read stops at the new size");
    assert!(r.has_event("truncate_inode_folio", "filemap_remove_folio"));
}

#[test]
fn a_fault_beyond_a_truncated_size_is_sigbus() {
    let program = vec![
        mmap_file(0, 2 * PAGE, map::MAP_PRIVATE, 0),
        Instruction::Ftruncate { dst: Some(1), file: 0, length: PAGE },
        load(at(0, PAGE as i64), 8, 0x5a),
    ];
    let r = Spec::new().file(vec![PageData::Fill(0x5a); 2]).process(program).run();
    assert!(r.violation(ViolationKind::Fault).message.contains("SIGBUS"));
}

#[test]
fn a_fault_beyond_the_end_of_the_file_is_sigbus() {
    let program = vec![mmap_file(0, 2 * PAGE, map::MAP_PRIVATE, 0), load(at(0, PAGE as i64), 8, 0)];
    let r = Spec::new().file(vec![PageData::Fill(0x5a)]).process(program).run();
    assert!(r.violation(ViolationKind::Fault).message.contains("SIGBUS"));
}

#[test]
fn a_write_to_a_shared_file_mapping_is_not_modelled() {
    for access in [vec![store(at(0, 0), 8, 1)], vec![load(at(0, 0), 8, 0x5a), store(at(0, 0), 8, 1)]] {
        let program = [vec![mmap_file(0, PAGE, map::MAP_SHARED, 0)], access].concat();
        let r = Spec::new().file(vec![PageData::Fill(0x5a)]).process(program).run();
        let violation = r.violation(ViolationKind::Invariant);
        assert!(violation.message.starts_with("not modelled: "), "{violation}");
        assert!(violation.message.contains("shared file mapping"), "{violation}");
    }
}

// ---- swap and userfaultfd ------------------------------------------------------------------------

fn userfaultfd(dst: u16) -> Instruction {
    Instruction::Userfaultfd { dst: Some(dst) }
}

fn uffdio_api(dst: u16, uffd: u16) -> Instruction {
    Instruction::UffdioApi { dst: Some(dst), uffd: at(uffd, 0), api: mmcheck_model::mm::userfaultfd::UFFD_API }
}

fn uffdio_register(dst: u16, uffd: u16, address: Operand, length: u64) -> Instruction {
    Instruction::UffdioRegister { dst: Some(dst), uffd: at(uffd, 0), address, length }
}

fn uffdio_move(dst: u16, uffd: u16, to: Operand, from: Operand, length: u64, holes: bool) -> Instruction {
    Instruction::UffdioMove { dst: Some(dst), uffd: at(uffd, 0), to, from, length, allow_src_holes: holes }
}

impl Spec {
    fn swap(mut self, pages: u32) -> Self {
        self.spec.swap_pages = pages;
        self
    }
}

#[test]
fn pageout_swaps_out_and_a_fault_swaps_back_in_from_the_swap_cache() {
    let program = vec![mmap(0, PAGE), store(at(0, 0), PAGE, 0x5a), madvise(1, at(0, 0), PAGE, Advice::PageOut)];
    let r = Spec::new().process(program.clone()).swap(4).run();
    r.ok();
    // Slot 0 holds the swap header (SWAP_MAP_BAD): the first slot handed out is 1.
    assert_eq!(r.k.swap.swap_map[0], 0x3f, "the header's slot is SWAP_MAP_BAD");
    assert_eq!(r.pte(r.buffer()), Pte::Swap { offset: 1, exclusive: true }, "an exclusive page swaps out exclusive");
    let folio = r.k.swap.cache[1].expect("the written folio stays in the swap cache");
    let f = r.k.folio(folio);
    assert!(f.test(PageFlag::Swapcache) && !f.test(PageFlag::Dirty) && !f.test(PageFlag::Writeback));
    assert_eq!((f.refcount, f.mapcount(), f.swap), (1, 0, Some(1)), "only the swap cache holds it");
    assert_eq!(r.k.swap.swap_map[1], 0x40 | 1, "one swap PTE and SWAP_HAS_CACHE");
    assert_eq!(r.k.swap.data[1], PageData::Fill(0x5a), "pageout wrote the slot");
    assert_eq!((r.k.mms[0].rss_anon, r.k.mms[0].rss_swap), (0, 1));
    let mut swapin = program;
    swapin.push(load(at(0, 0), PAGE, 0x5a));
    let r = Spec::new().process(swapin).swap(4).run();
    r.ok();
    let present = r.pte(r.buffer()).present().expect("swapped back in");
    assert_eq!(pfn_folio(present.pfn), folio, "the swap cache folio itself is mapped again");
    assert!(r.k.folio(folio).pages[0].anon_exclusive, "the swap PTE was exclusive");
    assert_eq!(r.k.swap.swap_map[1], 0x40, "swap_free() dropped the PTE's count; the cache keeps the slot");
    assert_eq!((r.k.mms[0].rss_anon, r.k.mms[0].rss_swap), (1, 0));
    // Without a swap device the dirty folio is kept (activated).
    let r = run(vec![mmap(0, PAGE), store(at(0, 0), PAGE, 1), madvise(1, at(0, 0), PAGE, Advice::PageOut)]);
    assert!(r.pte(r.buffer()).present().is_some());
}

#[test]
fn a_second_reclaim_pass_frees_the_cached_folio_and_swap_in_reads_the_slot() {
    let program = vec![
        mmap(0, PAGE),
        store(at(0, 0), PAGE, 0x5a),
        madvise(1, at(0, 0), PAGE, Advice::PageOut),
        Instruction::Signal { event: 0 },
        Instruction::WaitEvent { event: 1 },
        load(at(0, 0), PAGE, 0x5a),
    ];
    let reclaim = vec![Instruction::WaitEvent { event: 0 }, Instruction::Reclaim, Instruction::Signal { event: 1 }];
    let r = Spec::new().process(program).kthread(reclaim).swap(4).run();
    r.ok();
    let present = r.pte(r.buffer()).present().expect("read back in");
    assert_ne!(pfn_folio(present.pfn), 1, "folio 1 was freed by __remove_mapping(); a new folio was read in");
    assert!(!r.k.folio(1).allocated);
    assert_eq!(r.k.folio(pfn_folio(present.pfn)).pages[0].data, PageData::Fill(0x5a));
}

#[test]
fn uffdio_api_register_and_move_errnos() {
    let r = run(vec![mmap(0, 2 * PAGE), userfaultfd(1), uffdio_register(2, 1, at(0, 0), PAGE)]);
    assert_eq!(r.register(0, 2), -errno::EINVAL, "UFFDIO_REGISTER before UFFDIO_API");
    let r = run(vec![userfaultfd(1), uffdio_api(2, 1), uffdio_api(3, 1)]);
    assert_eq!((r.register(0, 2), r.register(0, 3)), (0, -errno::EINVAL), "UFFDIO_API is done once");
    let wrong = Instruction::UffdioApi { dst: Some(2), uffd: at(1, 0), api: 0xab };
    let r = run(vec![userfaultfd(1), wrong, uffdio_api(3, 1)]);
    assert_eq!((r.register(0, 2), r.register(0, 3)), (-errno::EINVAL, 0), "a wrong api number initialises nothing");
    // dst registered; src untouched (a hole), dst populated afterwards.
    let program = vec![
        mmap(0, 2 * PAGE),
        userfaultfd(1),
        uffdio_api(2, 1),
        uffdio_register(2, 1, at(0, PAGE as i64), PAGE),
        uffdio_move(3, 1, at(0, PAGE as i64), at(0, 0), PAGE, false),
    ];
    let r = run(program.clone());
    assert_eq!(r.register(0, 3), -errno::ENOENT, "a source hole without ALLOW_SRC_HOLES");
    let mut holes = program.clone();
    holes[4] = uffdio_move(3, 1, at(0, PAGE as i64), at(0, 0), PAGE, true);
    assert_eq!(run(holes).register(0, 3), PAGE as i64, "a hole counts as moved");
    let mut unregistered = program.clone();
    unregistered[4] = uffdio_move(3, 1, at(0, 0), at(0, PAGE as i64), PAGE, false);
    assert_eq!(run(unregistered).register(0, 3), -errno::EINVAL, "dst must be registered with this uffd");
}

#[test]
fn uffdio_move_of_a_present_page_moves_the_folio_and_its_rmap() {
    let program = vec![
        mmap(0, PAGE),
        mmap(1, PAGE),
        store(at(0, 0), PAGE, 0x33),
        userfaultfd(2),
        uffdio_api(3, 2),
        uffdio_register(3, 2, at(1, 0), PAGE),
        uffdio_move(3, 2, at(1, 0), at(0, 0), PAGE, false),
        load(at(1, 0), PAGE, 0x33),
        uffdio_move(3, 2, at(1, 0), at(0, 0), PAGE, false),
    ];
    let r = run(program.clone());
    r.ok();
    let (src, dst) = (r.register(0, 0) as u64, r.register(0, 1) as u64);
    assert!(r.pte(src).is_none());
    let folio = pfn_folio(r.pte(dst).present().expect("moved").pfn);
    assert_eq!(r.k.folio(folio).index, dst >> PAGE_SHIFT, "folio->index follows the page");
    assert_eq!(r.register(0, 3), -errno::EEXIST, "the second move finds dst populated");
    // Before adef440691ba there is no UFFDIO_MOVE.
    let r = Spec::new().process(program).run_on(KernelVersion::new(6, 7));
    assert_eq!(r.register(0, 3), -errno::EINVAL);
}

// ---- THP ---------------------------------------------------------------------------------------

const THP: u64 = 2 << 20;

fn thp_program() -> Vec<Instruction> {
    vec![mmap(0, THP), madvise(1, at(0, 0), THP, Advice::HugePage), store(at(0, 0), 2 * PAGE, 0x5a)]
}

#[test]
fn a_write_fault_in_a_hugepage_vma_maps_a_thp_by_pmd() {
    let mut program = thp_program();
    program.push(smaps(1, at(0, 0), SmapsField::AnonHugePages));
    program.push(smaps(2, at(0, 0), SmapsField::Rss));
    let r = run(program);
    r.ok();
    let (index, pmd) = r.k.mms[0].pmds[0];
    assert_eq!(index, r.buffer() >> 21, "the PMD of the aligned 2 MiB");
    let folio = pfn_folio(pmd.pfn);
    let f = r.k.folio(folio);
    assert_eq!((f.order, f.refcount, f.entire_mapcount, f.mapcount()), (9, 1, 1, 1));
    assert!(f.test(PageFlag::LargeRmappable) && f.test(PageFlag::Anon));
    assert!(r.k.mms[0].ptes.is_empty(), "no PTE table");
    assert_eq!(r.k.mms[0].rss_anon, 512);
    assert_eq!((r.register(0, 1), r.register(0, 2)), (2048, 2048));
    // Without MADV_HUGEPAGE: small pages.
    let r = run(vec![mmap(0, THP), store(at(0, 0), PAGE, 1)]);
    assert!(r.k.mms[0].pmds.is_empty());
    assert!(r.pte(r.buffer()).present().is_some());
}

#[test]
fn a_buffered_read_copies_into_a_thp_through_its_pmd() {
    // copy_to_user() walks the PMD as the MMU does: the bytes land in the THP's page.
    let mut program = thp_program();
    program.push(Instruction::Pread {
        dst: Some(1),
        file: 0,
        buffer: at(0, 0),
        length: PAGE,
        offset: 0,
        direct: false,
    });
    program.push(load(at(0, 0), PAGE, 0x79));
    let r = Spec::new().file(vec![PageData::Fill(0x79)]).process(program).run();
    r.ok();
    assert_eq!(r.register(0, 1), PAGE as i64);
    let (_, pmd) = r.k.mms[0].pmds[0];
    assert!(pmd.dirty && r.k.mms[0].ptes.is_empty(), "still mapped by the PMD");
    assert_eq!(r.folio(pfn_folio(pmd.pfn)).pages[0].data, PageData::Fill(0x79));
}

#[test]
fn dontneed_of_part_of_a_thp_splits_the_pmd_into_ptes() {
    let mut program = thp_program();
    program.push(madvise(1, at(0, 2 * PAGE as i64), THP - 2 * PAGE, Advice::DontNeed));
    program.push(smaps(2, at(0, 0), SmapsField::Rss));
    program.push(smaps(3, at(0, 0), SmapsField::AnonHugePages));
    let r = run(program);
    r.ok();
    assert!(r.k.mms[0].pmds.is_empty());
    let folio = pfn_folio(r.pte(r.buffer()).present().expect("PTE-mapped now").pfn);
    let f = r.k.folio(folio);
    assert_eq!((f.order, f.entire_mapcount, f.refcount, f.mapcount()), (9, 0, 2, 2), "two PTEs, two references");
    assert_eq!((f.pages[0].mapcount, f.pages[1].mapcount, f.pages[2].mapcount), (1, 1, 0));
    assert_eq!((r.register(0, 2), r.register(0, 3)), (8, 0));
    assert_eq!(r.k.mms[0].rss_anon, 2);
}

#[test]
fn split_huge_pages_keeps_data_and_counts_and_frees_unmapped_tails() {
    let mut program = thp_program();
    program.push(madvise(1, at(0, 2 * PAGE as i64), THP - 2 * PAGE, Advice::DontNeed));
    program.push(Instruction::Signal { event: 0 });
    program.push(Instruction::WaitEvent { event: 1 });
    program.push(load(at(0, 0), 2 * PAGE, 0x5a));
    program.push(smaps(2, at(0, 0), SmapsField::Pss));
    let splitter =
        vec![Instruction::WaitEvent { event: 0 }, Instruction::SplitHugePages, Instruction::Signal { event: 1 }];
    let r = Spec::new().process(program).kthread(splitter).run();
    r.ok();
    let head = pfn_folio(r.pte(r.buffer()).present().expect("remapped").pfn);
    let tail = pfn_folio(r.pte(r.buffer() + PAGE).present().expect("remapped").pfn);
    assert_ne!(head, tail, "each page is a folio of its own");
    for folio in [head, tail] {
        let f = r.k.folio(folio);
        assert_eq!((f.order, f.refcount, f.mapcount()), (0, 1, 1));
        assert!(!f.test(PageFlag::Locked) && f.test(PageFlag::Anon) && f.test(PageFlag::Lru));
    }
    assert_eq!(r.k.folio(tail).index, (r.buffer() >> PAGE_SHIFT) + 1, "the tail's index is the head's plus one");
    let allocated = r.k.folios.iter().filter(|f| f.allocated).count();
    assert_eq!(allocated, 3, "the zero page and the two mapped pages; 510 tails were freed");
    assert_eq!(r.register(0, 2), 8, "Pss adds up");
}

#[test]
fn uffdio_copy_and_zeropage_fill_registered_holes_and_refuse_populated_ones() {
    let program = vec![
        mmap(0, PAGE),
        mmap(1, 2 * PAGE),
        store(at(0, 0), PAGE, 0x42),
        userfaultfd(2),
        uffdio_api(3, 2),
        uffdio_register(3, 2, at(1, 0), 2 * PAGE),
        Instruction::UffdioFill { dst: Some(3), uffd: at(2, 0), to: at(1, 0), from: Some(at(0, 0)), length: PAGE },
        load(at(1, 0), PAGE, 0x42),
    ];
    let r = run(program.clone());
    r.ok();
    assert_eq!(r.register(0, 3), PAGE as i64);
    let folio = pfn_folio(r.pte(r.register(0, 1) as u64).present().expect("filled").pfn);
    assert!(r.k.folio(folio).pages[0].anon_exclusive, "a new exclusive anonymous folio");
    let mut again = program.clone();
    again.push(Instruction::UffdioFill {
        dst: Some(3),
        uffd: at(2, 0),
        to: at(1, 0),
        from: Some(at(0, 0)),
        length: PAGE,
    });
    assert_eq!(run(again).register(0, 3), -errno::EEXIST);
    let mut zero = program.clone();
    zero.push(Instruction::UffdioFill {
        dst: Some(3),
        uffd: at(2, 0),
        to: at(1, PAGE as i64),
        from: None,
        length: PAGE,
    });
    let r = run(zero);
    assert_eq!(r.register(0, 3), PAGE as i64);
    let pte = r.pte(r.register(0, 1) as u64 + PAGE).present().expect("zero page");
    assert!(pte.special && pfn_folio(pte.pfn) == ZERO_FOLIO);
    let mut unregistered = program;
    unregistered[6] =
        Instruction::UffdioFill { dst: Some(3), uffd: at(2, 0), to: at(0, 0), from: Some(at(1, 0)), length: PAGE };
    assert_eq!(run(unregistered).register(0, 3), -errno::ENOENT, "dst must be registered with this uffd");
}

// ---- mTHP ----------------------------------------------------------------------------------------

fn with_mthp(spec: Spec, order: u8) -> Spec {
    let mut spec = spec;
    spec.spec.anon_orders |= 1 << order;
    spec
}

#[test]
fn an_mthp_fault_maps_a_large_folio_with_ptes_and_swaps_it_out_and_in_whole() {
    let fault = vec![mmap(0, 4 * PAGE), store(at(0, 0), 4 * PAGE, 0x5a)];
    let r = with_mthp(Spec::new().process(fault.clone()), 2).run();
    r.ok();
    let folio = pfn_folio(r.pte(r.buffer()).present().expect("mapped").pfn);
    let f = r.k.folio(folio);
    assert_eq!((f.order, f.refcount, f.mapcount()), (2, 4, 4), "one reference and one mapping per PTE");
    assert!(f.test(PageFlag::LargeRmappable) && f.pages.iter().all(|p| p.anon_exclusive));
    assert_eq!(r.k.mms[0].rss_anon, 4);
    let mut pageout = fault.clone();
    pageout.push(madvise(1, at(0, 0), 4 * PAGE, Advice::PageOut));
    let r = with_mthp(Spec::new().process(pageout.clone()), 2).swap(8).run();
    r.ok();
    // Naturally aligned: slots 0-3 hold the header, so the folio takes 4-7.
    for page in 0..4u32 {
        assert_eq!(r.pte(r.buffer() + u64::from(page) * PAGE), Pte::Swap { offset: 4 + page, exclusive: true });
        assert_eq!(r.k.swap.swap_map[4 + page as usize], 0x41);
        assert_eq!(r.k.swap.cache[4 + page as usize], Some(folio));
    }
    assert_eq!(r.k.folio(folio).refcount, 4, "the swap cache holds one reference per page");
    let mut swapin = pageout;
    swapin.push(load(at(0, PAGE as i64), PAGE, 0x5a));
    let r = with_mthp(Spec::new().process(swapin), 2).swap(8).run();
    r.ok();
    for page in 0..4 {
        let present = r.pte(r.buffer() + page * PAGE).present().expect("the whole folio mapped back");
        assert_eq!(present.pfn, mmcheck_model::folio::folio_pfn(folio, page as usize));
    }
    assert_eq!(r.k.folio(folio).mapcount(), 4);
}

#[test]
fn moving_the_swap_ptes_of_an_mthp_before_the_fix_breaks_the_anon_rmap_check() {
    let program = vec![
        mmap(0, 4 * PAGE),
        mmap(1, 4 * PAGE),
        store(at(0, 0), 4 * PAGE, 0x5a),
        userfaultfd(2),
        uffdio_api(3, 2),
        uffdio_register(3, 2, at(1, 0), 4 * PAGE),
        madvise(3, at(0, 0), 4 * PAGE, Advice::PageOut),
        uffdio_move(3, 2, at(1, 0), at(0, 0), 4 * PAGE, false),
        load(at(1, 0), PAGE, 0x5a),
    ];
    let r = with_mthp(Spec::new().process(program.clone()), 2).swap(8).run_on(KernelVersion::new(6, 13));
    let bug = r.violation(ViolationKind::KernelBug);
    assert!(bug.message.contains("root"), "{bug}");
    let r = with_mthp(Spec::new().process(program[..8].to_vec()), 2).swap(8).run();
    assert_eq!(r.register(0, 3), -errno::EBUSY, "c50f8e6053b0 refuses a large swap cache folio");
}

#[test]
fn uffdio_move_of_a_page_of_a_pmd_mapped_thp_splits_the_pmd_and_the_folio() {
    let mut program = thp_program();
    program.extend([
        mmap(2, PAGE),
        userfaultfd(3),
        uffdio_api(4, 3),
        uffdio_register(4, 3, at(2, 0), PAGE),
        uffdio_move(4, 3, at(2, 0), at(0, PAGE as i64), PAGE, false),
        load(at(2, 0), PAGE, 0x5a),
        load(at(0, 0), PAGE, 0x5a),
    ]);
    let r = run(program);
    r.ok();
    assert_eq!(r.register(0, 4), PAGE as i64);
    assert!(r.k.mms[0].pmds.is_empty(), "split_huge_pmd() before the PTE path");
    let (src, dst) = (r.buffer(), r.register(0, 2) as u64);
    assert!(r.pte(src + PAGE).is_none(), "the page left the source");
    let moved = pfn_folio(r.pte(dst).present().expect("moved").pfn);
    let stayed = pfn_folio(r.pte(src).present().expect("still mapped").pfn);
    assert_eq!((r.k.folio(moved).order, r.k.folio(stayed).order), (0, 0), "split_folio() made order-0 folios");
    assert_eq!(r.k.folio(moved).index, dst >> PAGE_SHIFT);
    assert_eq!((r.k.folio(moved).refcount, r.k.folio(moved).mapcount()), (1, 1));
}

#[test]
fn an_o_direct_read_into_a_thp_pins_it_by_pmd_and_unpins_every_page() {
    // Populated: GUP-fast takes the whole PMD (gup_fast_pmd_leaf); untouched: the slow path
    // faults a THP in and follows the huge PMD, grabbing the rest of its pages at once.
    for populate in [true, false] {
        let mut program = vec![mmap(0, THP), madvise(1, at(0, 0), THP, Advice::HugePage)];
        if populate {
            program.push(store(at(0, 0), PAGE, 1));
        }
        program.push(pread(2, at(0, 2 * PAGE as i64), 4 * PAGE, 0));
        program.push(load(at(0, 2 * PAGE as i64), 4 * PAGE, 0x79));
        let r = Spec::new().process(program).file(vec![PageData::Fill(0x79); 4]).run();
        r.ok();
        assert_eq!(r.register(0, 2), 4 * PAGE as i64);
        let (_, pmd) = r.k.mms[0].pmds[0];
        let thp = r.k.folio(pfn_folio(pmd.pfn));
        assert_eq!((thp.order, thp.refcount, thp.pincount), (9, 1, 0), "every pin and reference was dropped");
        assert!(thp.test(PageFlag::Dirty), "bio_release_pages() dirtied the THP");
    }
}

/// gup_fast_folio_allowed() (CONFIG_SECRETMEM): a driver's small page has no mapping, so
/// GUP-fast puts it back and O_DIRECT pins it through the slow path, which maps it as any
/// VM_MIXEDMAP page: the read lands in the driver's page.
#[test]
fn o_direct_into_a_driver_page_takes_the_slow_path() {
    const SMALL: DeviceKind = DeviceKind::InsertPage { order: 0, compound: false, batched: false };
    let program =
        vec![mmap_device(0, PAGE, map::MAP_SHARED, 0), pread(1, at(0, 0), PAGE, 0), load(at(0, 0), PAGE, 0x79)];
    let r = Spec::new().process(program).device(SMALL, 0).file(vec![PageData::Fill(0x79)]).run();
    r.ok();
    assert_eq!(r.register(0, 1), PAGE as i64, "the whole page read");
    let refused = r.events.iter().any(|e| e.label == "gup_fast_folio_allowed");
    assert!(refused, "GUP-fast refuses the mappingless page");
    let slow = r.events.iter().any(|e| e.function == "follow_page_pte");
    assert!(slow, "the slow path pins it");
}

/// A compound condition that does not hold is an assertion violation naming the line; a bit
/// test masks the left value first.
#[test]
fn a_compound_assert_holds_or_fails_as_written() {
    use mmcheck_model::program::{Comparison, Condition};
    let equal = |left: i64, mask: Option<i64>, right: i64| Condition::Compare {
        left: Operand::Constant(left),
        mask: mask.map(Operand::Constant),
        comparison: Comparison::Equal,
        right: Operand::Constant(right),
    };
    let assert = |condition: Condition| Instruction::Assert {
        condition,
        text: "the condition".into(),
        location: SourceLocation { line: 9, column: 3 },
    };
    let holds = Condition::And(Box::new(equal(6, Some(4), 4)), Box::new(Condition::Not(Box::new(equal(1, None, 2)))));
    run(vec![assert(holds)]).ok();
    let fails = Condition::Or(Box::new(equal(6, Some(1), 1)), Box::new(equal(1, None, 2)));
    let r = run(vec![assert(fails)]);
    let violation = r.violation(ViolationKind::Assertion);
    assert!(violation.message.contains("line 9: assert the condition failed"), "{violation}");
}
