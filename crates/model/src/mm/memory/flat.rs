//! The hash of a [`Fault`]: the one flat struct the fault was before its functions became
//! machines of their own (issue #14). The search's sample points (`Model::sample_key`) hash
//! the top frame, so a hash of the new layout would move them and change the state counts of
//! every search that faults; hashed as this view, every state keeps the fingerprint it had.
//! The view holds what the fault holds, no more and no less: two faults hash alike iff they
//! are equal.

use super::{AnonymousStage, DoFault, DoFaultStage, Fault, FaultStage, SwapStage, Vmf, WpStage};
use crate::folio::FolioId;
use crate::mm::filemap::{FilemapFault, FilemapFaultStage};
use crate::mm::huge_memory::{HugeAnonymousStage, HugeWpStage};
use crate::pgtable::{PresentPte, Pte};
use crate::state::{FileId, MmId};
use std::hash::{Hash, Hasher};

/// The fields in their order then: what is not set at a stage is none.
#[derive(Hash)]
struct FlatFault<'a> {
    mm: MmId,
    address: u64,
    write: bool,
    lock_mmap: bool,
    tried: bool,
    stage: FlatStage,
    orig_pte: Pte,
    new_folio: Option<FolioId>,
    old_folio: Option<FolioId>,
    swap_folio: Option<FolioId>,
    zero_pmd: Option<PresentPte>,
    huge_pmd: Option<PresentPte>,
    file: Option<(FileId, u64)>,
    cache_folio: Option<FolioId>,
    ra_folios: &'a [FolioId],
    around: Option<(u64, FolioId, u64)>,
    mmap_dropped: bool,
    result: i64,
}

/// The flat stages, in their order then.
#[derive(Hash)]
enum FlatStage {
    LockMmap,
    ReadPte,
    AnonZeroSetPte,
    AnonAlloc,
    AnonSetPte,
    WpLock,
    WpCopyAlloc,
    WpCopySetPte,
    WpPutOld,
    SwapLookup,
    SwapLock,
    SwapRetryWait,
    SwapMap,
    HugeAlloc,
    HugeSetPmd,
    HugeWp,
    HugeWpFolioLock,
    HugeWpRelock,
    HugeWpFallback,
    MigrationWait,
    FileAround,
    FileAroundMap,
    FileLookup,
    FileReadahead,
    FileReadDone,
    FileLock,
    FileSetPte,
    Unlock,
}

impl Hash for Fault {
    fn hash<H: Hasher>(&self, state: &mut H) {
        flat(self).hash(state);
    }
}

fn flat(fault: &Fault) -> FlatFault<'_> {
    let Vmf { mm, address, write, lock_mmap, tried, orig_pte, orig_pmd, pgoff } = fault.vmf;
    let mut flat = FlatFault {
        mm,
        address,
        write,
        lock_mmap,
        tried,
        stage: FlatStage::LockMmap,
        orig_pte,
        new_folio: None,
        old_folio: None,
        swap_folio: None,
        zero_pmd: None,
        huge_pmd: orig_pmd,
        file: pgoff,
        cache_folio: None,
        ra_folios: &[],
        around: None,
        mmap_dropped: false,
        result: 0,
    };
    flat.stage = match &fault.stage {
        FaultStage::LockMmap => FlatStage::LockMmap,
        FaultStage::ReadPte => FlatStage::ReadPte,
        FaultStage::Anonymous(anonymous) => match anonymous.stage {
            AnonymousStage::ZeroSetPte => FlatStage::AnonZeroSetPte,
            AnonymousStage::Alloc => FlatStage::AnonAlloc,
            AnonymousStage::SetPte { folio } => {
                flat.new_folio = Some(folio);
                FlatStage::AnonSetPte
            }
        },
        FaultStage::Wp(wp) => flat_wp(&mut flat, wp.stage),
        FaultStage::Swap(swap) => flat_swap(&mut flat, swap.stage),
        FaultStage::File(fault) => flat_file(&mut flat, fault),
        FaultStage::HugeAnonymous(huge) => flat_huge(&mut flat, huge.stage),
        FaultStage::HugeWp(huge) => match huge.stage {
            HugeWpStage::Lock => FlatStage::HugeWp,
            HugeWpStage::FolioLock { .. } => FlatStage::HugeWpFolioLock,
            HugeWpStage::Relock { .. } => FlatStage::HugeWpRelock,
            HugeWpStage::Fallback => FlatStage::HugeWpFallback,
        },
        FaultStage::Unlock { result } => {
            flat.result = *result;
            FlatStage::Unlock
        }
    };
    flat
}

fn flat_wp(flat: &mut FlatFault<'_>, stage: WpStage) -> FlatStage {
    let (stage, new, old) = match stage {
        WpStage::Lock => (FlatStage::WpLock, None, None),
        WpStage::CopyAlloc { old } => (FlatStage::WpCopyAlloc, None, Some(old)),
        WpStage::CopySetPte { new, old } => (FlatStage::WpCopySetPte, Some(new), Some(old)),
        WpStage::PutOld { old } => (FlatStage::WpPutOld, None, Some(old)),
    };
    (flat.new_folio, flat.old_folio) = (new, old);
    stage
}

fn flat_swap(flat: &mut FlatFault<'_>, stage: SwapStage) -> FlatStage {
    let (stage, folio) = match stage {
        SwapStage::Lookup => (FlatStage::SwapLookup, None),
        SwapStage::Lock { folio } => (FlatStage::SwapLock, Some(folio)),
        SwapStage::RetryWait { folio } => (FlatStage::SwapRetryWait, Some(folio)),
        SwapStage::Map { folio } => (FlatStage::SwapMap, Some(folio)),
        SwapStage::MigrationWait { folio } => (FlatStage::MigrationWait, Some(folio)),
    };
    flat.swap_folio = folio;
    stage
}

fn flat_huge(flat: &mut FlatFault<'_>, stage: HugeAnonymousStage) -> FlatStage {
    match stage {
        HugeAnonymousStage::Alloc { zero_pmd } => {
            flat.zero_pmd = zero_pmd;
            FlatStage::HugeAlloc
        }
        HugeAnonymousStage::SetPmd { folio, zero_pmd } => {
            (flat.new_folio, flat.zero_pmd) = (Some(folio), zero_pmd);
            FlatStage::HugeSetPmd
        }
    }
}

/// The file stages: the copy was `new_folio`, filemap_fault()'s folio `cache_folio`.
fn flat_file<'a>(flat: &mut FlatFault<'a>, fault: &'a DoFault) -> FlatStage {
    flat.new_folio = fault.cow;
    match &fault.stage {
        DoFaultStage::Around => FlatStage::FileAround,
        &DoFaultStage::AroundMap { first: (index, folio), end } => {
            flat.around = Some((index, folio, end));
            FlatStage::FileAroundMap
        }
        DoFaultStage::Filemap(FilemapFault { fpin, stage }) => {
            flat.mmap_dropped = *fpin;
            match stage {
                FilemapFaultStage::Lookup => FlatStage::FileLookup,
                FilemapFaultStage::Readahead => FlatStage::FileReadahead,
                FilemapFaultStage::ReadDone { folios } => {
                    flat.ra_folios = folios;
                    FlatStage::FileReadDone
                }
                &FilemapFaultStage::Lock { folio } => {
                    flat.cache_folio = Some(folio);
                    FlatStage::FileLock
                }
            }
        }
        &DoFaultStage::SetPte { folio } => {
            flat.cache_folio = Some(folio);
            FlatStage::FileSetPte
        }
    }
}
