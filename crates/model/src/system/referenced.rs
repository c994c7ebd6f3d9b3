//! PG_referenced liveness, for the canonical encoding (the dead-variable reduction of SPIN's
//! data-flow optimisation): a folio's PG_referenced that no thread can read any more cannot
//! change what happens next, so two states that differ only there behave identically and are
//! encoded as one. The model's readers of the bit: folio_check_references() (reclaim),
//! folio_mark_accessed() (GUP's slow path with FOLL_TOUCH, filemap_read(), zapping a young
//! file PTE), smaps and a THP split copying the head's flags; /proc/kpageflags counts too, as
//! the kernel's reports KPF_REFERENCED (the model does not compare that bit yet). The analysis
//! is conservative: an instruction not read against all of them reads every folio's bit.
//! Debug builds check every read against it (`System::step`).

use super::System;
use crate::folio::{Folio, FolioId, PageFlag, ZERO_FOLIO};
use crate::program::Instruction;
use crate::shared::ChunkedVec;
use crate::state::{Kernel, MmId, ThreadId};
use crate::thread::{ReferencedReads, ThreadStatus};
use std::ops::Range;

impl System {
    /// Whose PG_referenced some thread may still read, `None` for every folio's.
    pub fn referenced_readers(&self, k: &Kernel) -> Option<ReferencedReaders> {
        let mut readers = ReferencedReaders::default();
        for (index, thread) in k.threads.iter().enumerate() {
            let program = &self.spec.threads[index].program;
            let (current, later) = match thread.status {
                ThreadStatus::Done => continue,
                ThreadStatus::NotStarted => (None, &program[..]),
                ThreadStatus::Running => {
                    let pc = (thread.pc as usize).min(program.len());
                    match thread.stack.is_empty() {
                        true => (None, &program[pc..]),
                        false => (program.get(pc), program.get(pc + 1..).unwrap_or(&[])),
                    }
                }
            };
            for instruction in later {
                readers.add(k, referenced_reads(instruction))?;
            }
            // The instruction inside the kernel: what its entry frame knows, else what the
            // instruction's paths may read.
            if let (Some(instruction), Some((entry, callees))) = (current, thread.stack.split_first()) {
                match entry.referenced_reads(thread, callees) {
                    ReferencedReads::Every => readers.add(k, referenced_reads(instruction))?,
                    reads => readers.add(k, reads)?,
                }
            }
        }
        Some(readers)
    }

    /// Allocated folios with PG_referenced set that no thread can read any more.
    fn referenced_forgotten(&self, k: &Kernel) -> Vec<FolioId> {
        let referenced = |(id, folio): &(usize, &Folio)| {
            folio.allocated && folio.test(PageFlag::Referenced) && *id != ZERO_FOLIO as usize
        };
        if !k.folios.iter().enumerate().any(|entry| referenced(&entry)) {
            return Vec::new();
        }
        let Some(readers) = self.referenced_readers(k) else {
            return Vec::new();
        };
        k.folios
            .iter()
            .enumerate()
            .filter(referenced)
            .filter(|&(id, folio)| !readers.may_read(id as FolioId, folio))
            .map(|(id, _)| id as FolioId)
            .collect()
    }
}

/// Whose PG_referenced some thread may still read (`System::referenced_readers`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReferencedReaders {
    /// Folios by number: those reclaim has still to check.
    pub folios: Vec<FolioId>,
    /// Folios overlapping one of these index ranges: what GUP's slow path may still mark
    /// accessed.
    pub indexes: Vec<Range<u64>>,
    /// Every file folio: zapping a young file PTE and filemap_read() mark it accessed.
    pub file_folios: bool,
}

impl ReferencedReaders {
    /// Counts `reads` in; `None` for every folio's bit.
    fn add(&mut self, k: &Kernel, reads: ReferencedReads) -> Option<()> {
        match reads {
            ReferencedReads::Nothing => {}
            ReferencedReads::FileFolios => self.file_folios = true,
            ReferencedReads::Folios(folios) => self.folios.extend_from_slice(folios),
            ReferencedReads::Addresses { mm, start, end } => self.indexes.extend(address_indexes(k, mm, start, end)),
            ReferencedReads::Every => return None,
        }
        Some(())
    }

    pub fn may_read(&self, id: FolioId, folio: &Folio) -> bool {
        let overlaps =
            |range: &Range<u64>| range.start < folio.index + folio.nr_pages() as u64 && folio.index < range.end;
        self.folios.contains(&id)
            || self.indexes.iter().any(overlaps)
            || (self.file_folios && !folio.test(PageFlag::Anon))
    }
}

/// The folio indexes GUP's slow path may still mark accessed in `[start, end)` of `mm`:
/// follow_page_pte() calls folio_mark_accessed() (FOLL_TOUCH) on what is mapped at each address
/// it has still to pin, and whatever gets mapped there has the index the VMA gives the address
/// (linear_page_index()).
fn address_indexes(k: &Kernel, mm: MmId, mut start: u64, end: u64) -> Vec<Range<u64>> {
    // One range per VMA the addresses fall in (usually one); an address no VMA holds faults.
    // The walk goes from VMA to VMA, so its cost is the VMAs', not the range's length.
    let mm = &k.mms[mm as usize];
    let mut indexes = Vec::new();
    while start < end {
        let Some(vma) = mm.find_vma(start) else {
            // Skip the hole to the next VMA that starts inside the range.
            match mm.vmas.iter().map(|v| v.start).filter(|&s| s > start && s < end).min() {
                Some(next) => start = next,
                None => break,
            }
            continue;
        };
        let stop = end.min(vma.end);
        indexes.push(vma.linear_page_index(start)..vma.linear_page_index(stop));
        start = stop;
    }
    indexes
}

/// Which folios' PG_referenced an instruction's kernel paths may read. Only the instructions
/// read against the model's readers say less than `Every`: none of their frames reaches
/// folio_check_references(), smaps_account(), kpageflags or __split_huge_page_tail(), and
/// folio_mark_accessed() only as `FileFolios` says. An O_DIRECT read and reclaim are `Every`
/// until they start (their frames narrow it down once they run:
/// [`crate::thread::KernelFunction::referenced_reads`]); a new instruction is `Every` until
/// someone reads its paths.
fn referenced_reads(instruction: &Instruction) -> ReferencedReads<'static> {
    use crate::fs::proc::page::ProcPageFile;
    use crate::program::Advice;
    match instruction {
        Instruction::Mmap { .. }
        | Instruction::Mremap { .. }
        | Instruction::Mprotect { .. }
        | Instruction::Store { .. }
        | Instruction::Load { .. }
        | Instruction::Madvise { advice: Advice::Free, .. }
        | Instruction::Assert { .. }
        | Instruction::Fork { .. }
        | Instruction::Spawn { .. }
        | Instruction::Join { .. }
        | Instruction::ProcPage { file: ProcPageFile::Pagemap | ProcPageFile::KpageCount, .. }
        | Instruction::Signal { .. }
        | Instruction::WaitEvent { .. } => ReferencedReads::Nothing,
        Instruction::Munmap { .. }
        | Instruction::Exit
        | Instruction::Madvise { advice: Advice::DontNeed, .. }
        | Instruction::Ftruncate { .. }
        | Instruction::Pread { direct: false, .. } => ReferencedReads::FileFolios,
        _ => ReferencedReads::Every,
    }
}

impl System {
    /// Debug builds' check of a step against the analysis: `readers` and `folios` are the
    /// state's before the step, `reads` the folios whose PG_referenced the step read. Every
    /// read must be of a folio counted as read later, and a bit counted as never read must
    /// stay so.
    pub(super) fn check_referenced_step(
        &self,
        k: &Kernel,
        thread: ThreadId,
        readers: Option<ReferencedReaders>,
        folios: &ChunkedVec<Folio>,
        reads: &[FolioId],
    ) {
        let Some(readers) = readers else { return };
        // A folio allocated by this step (numbers are never reused) had no bit to forget.
        for &id in reads.iter().filter(|&&id| (id as usize) < folios.len()) {
            assert!(
                readers.may_read(id, &folios[id as usize]),
                "thread {thread} read PG_referenced of folio {id}, which referenced_readers() counted as \
                 never read again: the canonical encoding would forget it"
            );
        }
        // Nor may a bit the encoding forgot come back to life: the two states merged would
        // then differ in what happens next.
        let after = self.referenced_readers(k);
        for (id, folio) in folios.iter().enumerate().map(|(id, folio)| (id as FolioId, folio)) {
            let forgotten = folio.allocated && folio.test(PageFlag::Referenced) && !readers.may_read(id, folio);
            // A folio this step freed has no flags left to read.
            let now = k.folio(id);
            assert!(
                !forgotten || !now.allocated || after.as_ref().is_some_and(|after| !after.may_read(id, now)),
                "thread {thread}'s step made PG_referenced of folio {id} read again after \
                 referenced_readers() had counted it as never read: the analysis must only shrink"
            );
        }
    }

    /// The state's fingerprint with the PG_referenced bits no thread can read cleared.
    pub(super) fn encode_canonical(&self, k: &Kernel, out: &mut Vec<u8>) {
        let forgotten = self.referenced_forgotten(k);
        if forgotten.is_empty() {
            out.extend_from_slice(&crate::shared::hash128(k).to_le_bytes());
            return;
        }
        let mut canonical = k.clone();
        for folio in forgotten {
            canonical.folio_mut(folio).flags &= !PageFlag::Referenced.mask();
        }
        out.extend_from_slice(&crate::shared::hash128(&canonical).to_le_bytes());
    }
}
