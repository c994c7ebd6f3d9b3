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
use crate::folio::{Folio, FolioId, PageFlag, PAGE_SIZE, ZERO_FOLIO};
use crate::program::Instruction;
use crate::shared::ChunkedVec;
use crate::state::{Kernel, ThreadId};
use crate::thread::{Frame, Thread, ThreadStatus};
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
                match referenced_reads(instruction) {
                    Reads::Nothing => {}
                    Reads::FileFolios => readers.file_folios = true,
                    Reads::Every => return None,
                }
            }
            match current {
                Some(Instruction::Reclaim) => readers.folios.extend_from_slice(reclaim_unread(thread)?),
                Some(Instruction::Pread { direct: true, .. }) => {
                    readers.indexes.extend(self.gup_unpinned_indexes(k, thread)?)
                }
                Some(instruction) => match referenced_reads(instruction) {
                    Reads::Nothing => {}
                    Reads::FileFolios => readers.file_folios = true,
                    Reads::Every => return None,
                },
                None => {}
            }
        }
        Some(readers)
    }

    /// The folio indexes an O_DIRECT read's GUP may still mark accessed: follow_page_pte()
    /// calls folio_mark_accessed() (FOLL_TOUCH) on what is mapped at each address the slow
    /// path has still to pin, and whatever gets mapped there has the index the VMA gives the
    /// address (linear_page_index()). Once every page is pinned, none.
    fn gup_unpinned_indexes(&self, k: &Kernel, thread: &Thread) -> Option<Vec<Range<u64>>> {
        // The innermost GUP frame knows what is left; no frame of the read at all: every index.
        let left = thread.stack.iter().rev().find_map(|frame| match frame {
            Frame::GupSlow(gup) => {
                Some(Some((gup.mm, gup.start + gup.index * PAGE_SIZE, gup.start + gup.nr_pages * PAGE_SIZE)))
            }
            Frame::DirectIo(dio) => Some(dio.gup_range(thread.pages.len() as u64)),
            _ => None,
        })?;
        let Some((mm, mut start, end)) = left else {
            return Some(Vec::new());
        };
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
        Some(indexes)
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
    pub fn may_read(&self, id: FolioId, folio: &Folio) -> bool {
        let overlaps =
            |range: &Range<u64>| range.start < folio.index + folio.nr_pages() as u64 && folio.index < range.end;
        self.folios.contains(&id)
            || self.indexes.iter().any(overlaps)
            || (self.file_folios && !folio.test(PageFlag::Anon))
    }
}

/// The folios a thread inside `reclaim(all)` may still read PG_referenced of (`None`: any).
fn reclaim_unread(thread: &Thread) -> Option<&[FolioId]> {
    let mut unread = None;
    for frame in &thread.stack {
        unread = match frame {
            Frame::ShrinkInactiveList(shrink) => shrink.referenced_unread(thread),
            Frame::ShrinkFolioList(shrink) => Some(shrink.referenced_unread()),
            _ => unread,
        };
    }
    unread
}

/// Which folios' PG_referenced an instruction's kernel paths may read.
enum Reads {
    Nothing,
    /// File folios only: folio_mark_accessed() from zap_present_folio_ptes() (a young file
    /// PTE) or filemap_read().
    FileFolios,
    Every,
}

/// Only the instructions read against the model's readers say less than `Every`: none of
/// their frames reaches folio_check_references(), smaps_account(), kpageflags or
/// __split_huge_page_tail(), and folio_mark_accessed() only as `FileFolios` says. An O_DIRECT
/// read is `Every` until it starts (its GUP is narrowed down once it runs); a new
/// instruction is `Every` until someone reads its paths.
fn referenced_reads(instruction: &Instruction) -> Reads {
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
        | Instruction::WaitEvent { .. } => Reads::Nothing,
        Instruction::Munmap { .. }
        | Instruction::Exit
        | Instruction::Madvise { advice: Advice::DontNeed, .. }
        | Instruction::Ftruncate { .. }
        | Instruction::Pread { direct: false, .. } => Reads::FileFolios,
        _ => Reads::Every,
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
