//! The registry of modelled upstream changes. `--kernel X.Y` selects every change that landed
//! by X.Y; `--patch NAME=on|off` overrides one. A kernel selected this way is the newest model
//! with the later registered changes reverted, not a complete model of X.Y.
//!
//! Code that differs between kernels asks `ctx.patched(Patch::X)` at the place the upstream
//! diff touches, so that the two branches read like the two sides of that diff.

use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct KernelVersion {
    pub major: u8,
    pub minor: u8,
}

impl KernelVersion {
    pub const fn new(major: u8, minor: u8) -> Self {
        KernelVersion { major, minor }
    }

    /// The newest kernel the model follows.
    pub const NEWEST: KernelVersion = KernelVersion::new(6, 18);

    /// The form every reader of a version names in its error.
    pub const FORM: &'static str = "MAJOR.MINOR in decimal digits, without a sign, spaces or leading zeros, major 1 or more (such as 5.16 or 6.18)";

    /// `MAJOR.MINOR` exactly ([`KernelVersion::FORM`]): `6.18 `, `+5.16`, `05.016` and `0.0` are
    /// not versions (str::parse would take the first three, and `0.0` has no version below).
    pub fn parse(text: &str) -> Option<KernelVersion> {
        let (major, minor) = text.split_once('.')?;
        let major = Self::component(major)?;
        (major >= 1).then_some(KernelVersion { major, minor: Self::component(minor)? })
    }

    fn component(text: &str) -> Option<u8> {
        let canonical =
            !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) && (text == "0" || !text.starts_with('0'));
        canonical.then(|| text.parse().ok()).flatten()
    }
}

impl fmt::Display for KernelVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// A modelled upstream change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Patch {
    LazyfreeNoDirtyRecheck,
    MadvFreeGupRace,
    BlockDioPinPages,
    LazyfreeSwapbackedIffDirty,
    RmapLargeRmappableWarning,
    RmapSilenceLargeRmappableWarning,
    FolioWalkPfnmapEarlyReturn,
    WalkPageVmaNoTestWalk,
    DoPagesStatFolioWalk,
    UffdioMove,
    UffdMoveSwapcache,
    UffdMoveSwapcacheRace,
    SmapsMigrationNoMapcount,
    MigrationEntryYoungDirty,
    ThpSplitEagain,
    ThpSplitRemapZeropage,
    UffdMoveLargeFolioTrylock,
    SwapinExclusiveWritable,
    UffdMoveKeepDirty,
    SwapcacheNoPinned,
    ReclaimPinnedActivate,
    MadvFreeRefcountCheckV1,
    MadvFreeRefcountCheckV2,
}

pub struct PatchInfo {
    pub patch: Patch,
    pub name: &'static str,
    pub commit: &'static str,
    /// The release it landed in; None for a proposal that was never merged (off unless
    /// `--patch NAME=on`).
    pub landed: Option<KernelVersion>,
    pub subject: &'static str,
    pub summary: &'static str,
}

pub const PATCHES: &[PatchInfo] = &[
    PatchInfo {
        patch: Patch::SwapcacheNoPinned,
        name: "swapcache-no-pinned",
        commit: "feb889fb40fa",
        landed: Some(KernelVersion::new(5, 11)),
        subject: "mm: don't put pinned pages into the swap cache",
        summary: "shrink_folio_list: an anonymous folio that may be DMA-pinned (folio_maybe_dma_pinned) is kept instead of being added to the swap cache",
    },
    PatchInfo {
        patch: Patch::ReclaimPinnedActivate,
        name: "reclaim-pinned-activate",
        commit: "d824ec2a1546",
        landed: Some(KernelVersion::new(6, 4)),
        subject: "mm: do not reclaim private data from pinned page",
        summary: "shrink_folio_list: a folio that is unmapped but may be DMA-pinned is activated before pageout or freeing (\"it cannot be newly pinned anymore\")",
    },
    PatchInfo {
        patch: Patch::MigrationEntryYoungDirty,
        name: "migration-entry-young-dirty",
        commit: "2e3468778dbe",
        landed: Some(KernelVersion::new(6, 1)),
        subject: "mm: remember young/dirty bit for page migrations",
        summary: "migration entries keep the PTE's young and dirty bits; remove_migration_pte restores them (before: the PTE comes back old and clean)",
    },
    PatchInfo {
        patch: Patch::ThpSplitEagain,
        name: "thp-split-eagain",
        commit: "fd4a7ac32918",
        landed: Some(KernelVersion::new(6, 2)),
        subject: "mm: migrate: try again if THP split is failed due to page refcnt",
        summary: "split_huge_page_to_list: an unexpected reference (can_split_folio, the refcount freeze) is -EAGAIN, not -EBUSY; UFFDIO_MOVE retries",
    },
    PatchInfo {
        patch: Patch::ThpSplitRemapZeropage,
        name: "thp-split-remap-zeropage",
        commit: "b1f202060afe",
        landed: Some(KernelVersion::new(6, 12)),
        subject: "mm: remap unused subpages to shared zeropage when splitting isolated thp",
        summary: "after a successful anonymous split, remove_migration_pte maps a zero-filled page to the shared zero page (try_to_map_unused_to_zeropage) and the page is freed",
    },
    PatchInfo {
        patch: Patch::SmapsMigrationNoMapcount,
        name: "smaps-migration-no-mapcount",
        commit: "24d7275ce279",
        landed: Some(KernelVersion::new(5, 17)),
        subject: "fs/proc: task_mmu.c: don't read mapcount for migration entry",
        summary: "smaps_account: a page behind a migration entry is accounted private (mapcount 1); page_mapcount() is never called on it",
    },
    PatchInfo {
        patch: Patch::WalkPageVmaNoTestWalk,
        name: "walk-page-vma-no-test-walk",
        commit: "c31783eeae7b",
        landed: Some(KernelVersion::new(6, 2)),
        subject: "mm/pagewalk: don't trigger test_walk() in walk_page_vma()",
        summary: "walk_page_vma no longer calls walk_page_test: smaps walks VM_PFNMAP VMAs (their COWed anonymous pages count)",
    },
    PatchInfo {
        patch: Patch::LazyfreeNoDirtyRecheck,
        name: "lazyfree-no-dirty-recheck",
        commit: "d17be2d9ff6c",
        landed: Some(KernelVersion::new(5, 15)),
        subject: "mm/vmscan: remove the PageDirty check after MADV_FREE pages are page_ref_freezed",
        summary: "shrink_page_list: after page_ref_freeze(page, 1) of a lazyfree page, no PageDirty re-check and unfreeze",
    },
    PatchInfo {
        patch: Patch::MadvFreeGupRace,
        name: "madv-free-gup-race",
        commit: "6c8e2a256915",
        landed: Some(KernelVersion::new(5, 18)),
        subject: "mm: fix race between MADV_FREE reclaim and blkdev direct IO read",
        summary: "try_to_unmap_one: lazyfree folio discarded only if refcount == 1 + mapcount and clean, read after smp_mb(), ordered by smp_rmb()",
    },
    PatchInfo {
        patch: Patch::BlockDioPinPages,
        name: "block-dio-pin-pages",
        commit: "a7e689dd1c06",
        landed: Some(KernelVersion::new(6, 5)),
        subject: "block: Convert bio_iov_iter_get_pages to use iov_iter_extract_pages",
        summary: "block direct IO pins user pages (FOLL_PIN, +1024 on small folios) instead of FOLL_GET (+1)",
    },
    PatchInfo {
        patch: Patch::LazyfreeSwapbackedIffDirty,
        name: "lazyfree-swapbacked-iff-dirty",
        commit: "faeb2831b517",
        landed: Some(KernelVersion::new(6, 15)),
        subject: "mm: set folio swapbacked iff folios are dirty in try_to_unmap_one",
        summary: "try_to_unmap_one: a clean lazyfree folio with an extra reference is remapped and stays lazyfree; only a dirty one becomes swapbacked",
    },
    // 68f0320824fa and 9c5938694cd0 both landed in the 6.8 merge window: no release had the
    // warning. 6.8 has both; `--patch rmap-silence-large-rmappable-warning=off` shows the window.
    PatchInfo {
        patch: Patch::RmapLargeRmappableWarning,
        name: "rmap-large-rmappable-warning",
        commit: "68f0320824fa",
        landed: Some(KernelVersion::new(6, 8)),
        subject: "mm/rmap: convert folio_add_file_rmap_range() into folio_add_file_rmap_[pte|ptes|pmd]()",
        summary: "__folio_rmap_sanity_checks: VM_WARN_ON_FOLIO(folio_test_large(folio) && !folio_test_large_rmappable(folio))",
    },
    PatchInfo {
        patch: Patch::RmapSilenceLargeRmappableWarning,
        name: "rmap-silence-large-rmappable-warning",
        commit: "9c5938694cd0",
        landed: Some(KernelVersion::new(6, 8)),
        subject: "mm/rmap: silence VM_WARN_ON_FOLIO() in __folio_rmap_sanity_checks()",
        summary: "__folio_rmap_sanity_checks: the large_rmappable warning becomes a TODO (vm_insert_page passes driver-allocated compound pages)",
    },
    PatchInfo {
        patch: Patch::DoPagesStatFolioWalk,
        name: "do-pages-stat-folio-walk",
        commit: "46d6a9b4450b",
        landed: Some(KernelVersion::new(6, 12)),
        subject: "mm/migrate: convert do_pages_stat_array() from follow_page() to folio_walk",
        summary: "move_pages status query: folio_walk_start (no reference; nothing there is -ENOENT) instead of follow_page(FOLL_GET|FOLL_DUMP) (special and none PTEs -EFAULT)",
    },
    PatchInfo {
        patch: Patch::UffdioMove,
        name: "uffdio-move",
        commit: "adef440691ba",
        landed: Some(KernelVersion::new(6, 8)),
        subject: "userfaultfd: UFFDIO_MOVE uABI",
        summary: "UFFDIO_MOVE moves anonymous pages between VMAs; a swap PTE is moved by copying the PTE only (move_swap_pte)",
    },
    PatchInfo {
        patch: Patch::UffdMoveSwapcache,
        name: "uffd-move-swapcache",
        commit: "c50f8e6053b0",
        landed: Some(KernelVersion::new(6, 14)),
        subject: "mm: fix kernel BUG when userfaultfd_move encounters swapcache",
        summary: "move_pages_pte: look the swap entry up in the swap cache, lock its folio (-EBUSY if large); move_swap_pte moves the folio's anon rmap and index",
    },
    PatchInfo {
        patch: Patch::UffdMoveSwapcacheRace,
        name: "uffd-move-swapcache-race",
        commit: "0ea148a79919",
        landed: Some(KernelVersion::new(6, 16)),
        subject: "mm: userfaultfd: fix race of userfaultfd_move and swap cache",
        summary: "move_swap_pte: -EAGAIN if the locked folio left the swap cache or changed entry, or if SWAP_HAS_CACHE appeared while no folio was found",
    },
    PatchInfo {
        patch: Patch::SwapinExclusiveWritable,
        name: "swapin-exclusive-writable",
        commit: "c18160dba5ff",
        landed: Some(KernelVersion::new(6, 11)),
        subject: "mm: swap: reuse exclusive folio directly instead of wp page faults",
        summary: "do_swap_page: an exclusive swap-in in a VM_WRITE VMA is mapped writable even on a read fault (dirty only on a write fault); before, only a write fault made it writable",
    },
    PatchInfo {
        patch: Patch::UffdMoveKeepDirty,
        name: "uffd-move-keep-dirty",
        commit: "75cb1cca2c88",
        landed: Some(KernelVersion::new(6, 15)),
        subject: "mm: userfaultfd: correct dirty flags set for both present and swap pte",
        summary: "move_present_pte: the destination PTE is dirty only if the source PTE was (before: always dirty, following mremap)",
    },
    PatchInfo {
        patch: Patch::UffdMoveLargeFolioTrylock,
        name: "uffd-move-large-folio-trylock",
        commit: "37b338eed105",
        landed: Some(KernelVersion::new(6, 14)),
        subject: "userfaultfd: do not block on locking a large folio with raised refcount",
        summary: "move_pages_pte: a large source folio whose trylock fails is -EAGAIN (retried) before any reference is taken, instead of folio_lock() with the reference held",
    },
    PatchInfo {
        patch: Patch::FolioWalkPfnmapEarlyReturn,
        name: "folio-walk-pfnmap-early-return",
        commit: "unmerged",
        landed: None,
        subject: "[PATCH 06/19] mm/pagewalk: check pfnmap early for folio_walk_start() (\"mm: Support huge pfnmaps\", rejected in review)",
        summary: "folio_walk_start: return NULL for VM_IO|VM_PFNMAP VMAs, hiding anonymous folios COWed into private PFN maps",
    },
    // The two postings of the MADV_FREE/GUP fix before the merged one: 6c8e2a256915
    // (`madv-free-gup-race`) is v3 (20220131230255.789059-1-mfo@canonical.com), amended as v4
    // (20220209202659.183418-1-mfo@canonical.com). They are versions of one fix: at most one of
    // the three may be applied (MUTUALLY_EXCLUSIVE; KernelConfig::conflict), so on 5.18 and
    // later an `expect` line or `--patch` turning one on must turn `madv-free-gup-race` off.
    PatchInfo {
        patch: Patch::MadvFreeRefcountCheckV1,
        name: "madv-free-refcount-check-v1",
        commit: "unmerged",
        landed: None,
        subject: "[PATCH] mm: fix race between MADV_FREE reclaim and blkdev direct IO read (v1, Message-Id 20211211022115.1547617-1-mfo@canonical.com, 11 Dec 2021; 6c8e2a256915 is its v3)",
        summary: "try_to_unmap_one: lazyfree page discarded only if page_ref_count() == 2 and clean, the two reads ordered by smp_rmb(); no smp_mb() after the PTE clear, no mapcount",
    },
    PatchInfo {
        patch: Patch::MadvFreeRefcountCheckV2,
        name: "madv-free-refcount-check-v2",
        commit: "unmerged",
        landed: None,
        subject: "[PATCH v2] mm: fix race between MADV_FREE reclaim and blkdev direct IO read (Message-Id 20220105233440.63361-1-mfo@canonical.com, 5 Jan 2022; 6c8e2a256915 is its v3)",
        summary: "try_to_unmap_one: lazyfree page discarded only if page_ref_count() - 1 == page_mapcount() and clean, smp_rmb() after both reads; no smp_mb() after the PTE clear",
    },
];

/// Groups of registered changes that are versions of one fix: a kernel applies at most one
/// change of each group. [`KernelConfig::conflict`] names a violation; the CLI, `expect` lines
/// and replay tokens refuse it. (Should a caller build such a kernel anyway, the model follows
/// the merged change: try_to_unmap_one asks for `madv-free-gup-race` first.)
pub const MUTUALLY_EXCLUSIVE: &[&[Patch]] =
    &[&[Patch::MadvFreeGupRace, Patch::MadvFreeRefcountCheckV1, Patch::MadvFreeRefcountCheckV2]];

impl Patch {
    pub fn info(self) -> &'static PatchInfo {
        PATCHES.iter().find(|p| p.patch == self).expect("every patch is registered")
    }

    fn bit(self) -> u64 {
        1 << PATCHES.iter().position(|p| p.patch == self).expect("every patch is registered")
    }

    pub fn by_name(name: &str) -> Option<Patch> {
        PATCHES
            .iter()
            .find(|p| p.name == name || p.landed.is_some() && p.commit.starts_with(name) && name.len() >= 7)
            .map(|p| p.patch)
    }
}

/// The kernel a check runs against: a version and the set of registered changes applied.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct KernelConfig {
    pub version: KernelVersion,
    applied: u64,
    /// Overrides given with `--patch`, in order, for display.
    pub overrides: Vec<(Patch, bool)>,
}

impl KernelConfig {
    pub fn for_version(version: KernelVersion) -> KernelConfig {
        let applied = PATCHES
            .iter()
            .filter(|p| p.landed.is_some_and(|landed| landed <= version))
            .fold(0, |set, p| set | p.patch.bit());
        KernelConfig { version, applied, overrides: Vec::new() }
    }

    pub fn set(&mut self, patch: Patch, on: bool) {
        if on {
            self.applied |= patch.bit();
        } else {
            self.applied &= !patch.bit();
        }
        self.overrides.retain(|(p, _)| *p != patch);
        self.overrides.push((patch, on));
    }

    pub fn applies(&self, patch: Patch) -> bool {
        self.applied & patch.bit() != 0
    }

    /// Why these changes do not make one kernel: two versions of one fix applied together
    /// (see [`MUTUALLY_EXCLUSIVE`]). None for a consistent set.
    pub fn conflict(&self) -> Option<String> {
        for group in MUTUALLY_EXCLUSIVE {
            let applied: Vec<&str> = group.iter().filter(|p| self.applies(**p)).map(|p| p.info().name).collect();
            if applied.len() > 1 {
                let merged: Vec<String> = group
                    .iter()
                    .filter(|p| self.applies(**p) && p.info().landed.is_some())
                    .map(|p| format!(" (turn `{}` off: it landed in {})", p.info().name, p.info().landed.unwrap()))
                    .collect();
                return Some(format!(
                    "{} are versions of one fix; a kernel applies at most one{}",
                    applied.join(" and "),
                    merged.concat()
                ));
            }
        }
        None
    }

    /// `5.16`, or `6.18 +name -name` with overrides.
    pub fn label(&self) -> String {
        let mut label = self.version.to_string();
        for (patch, on) in &self.overrides {
            label.push_str(&format!(" {}{}", if *on { '+' } else { '-' }, patch.info().name));
        }
        label
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_select_landed_patches() {
        let old = KernelConfig::for_version(KernelVersion::new(5, 16));
        assert!(!old.applies(Patch::MadvFreeGupRace));
        let new = KernelConfig::for_version(KernelVersion::NEWEST);
        assert!(new.applies(Patch::MadvFreeGupRace));
        assert!(new.applies(Patch::LazyfreeSwapbackedIffDirty));
        let mut reverted = new.clone();
        reverted.set(Patch::MadvFreeGupRace, false);
        assert!(!reverted.applies(Patch::MadvFreeGupRace));
        assert_eq!(reverted.label(), "6.18 -madv-free-gup-race");
        assert_eq!(Patch::by_name("6c8e2a256915"), Some(Patch::MadvFreeGupRace));
    }

    #[test]
    fn madv_free_fix_versions_are_off_by_default_and_exclusive() {
        for (patch, name) in [
            (Patch::MadvFreeRefcountCheckV1, "madv-free-refcount-check-v1"),
            (Patch::MadvFreeRefcountCheckV2, "madv-free-refcount-check-v2"),
        ] {
            assert_eq!(Patch::by_name(name), Some(patch));
            assert_eq!(patch.info().landed, None);
            // An unmerged change has no commit id to be found by.
            assert_eq!(Patch::by_name("unmerged"), None);
            for minor in 0..=19 {
                assert!(!KernelConfig::for_version(KernelVersion::new(5, minor)).applies(patch));
            }
            for minor in 0..=18 {
                assert!(!KernelConfig::for_version(KernelVersion::new(6, minor)).applies(patch));
            }
            let mut old = KernelConfig::for_version(KernelVersion::new(5, 16));
            assert_eq!(old.conflict(), None);
            old.set(patch, true);
            assert!(old.applies(patch));
            assert_eq!(old.conflict(), None);
            assert_eq!(old.label(), format!("5.16 +{name}"));
            let mut both = KernelConfig::for_version(KernelVersion::NEWEST);
            both.set(patch, true);
            let conflict = both.conflict().expect("v1/v2 with 6c8e2a256915 is refused");
            assert!(conflict.contains(name) && conflict.contains("turn `madv-free-gup-race` off"), "{conflict}");
            both.set(Patch::MadvFreeGupRace, false);
            assert_eq!(both.conflict(), None);
        }
        let mut v1_v2 = KernelConfig::for_version(KernelVersion::new(5, 16));
        v1_v2.set(Patch::MadvFreeRefcountCheckV1, true);
        v1_v2.set(Patch::MadvFreeRefcountCheckV2, true);
        assert!(v1_v2.conflict().is_some());
    }
}
