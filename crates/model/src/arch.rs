//! The one table of what each kernel primitive orders, per memory model: the weak-memory
//! engine (`mmcheck_explorer::memory`) gives the orders their meaning, this table says which
//! order a primitive carries on an architecture. No step chooses an ordering of its own.
//!
//! Read against Linux 6.12 (Debian's linux-source-6.12; the lines cited did not change in
//! mainline up to 6.18) and the LKMM's tools/memory-model/linux-kernel.def:
//! - x86-64: arch/x86/include/asm/barrier.h (`__smp_mb` is `lock addl`, `__smp_rmb` and
//!   `__smp_wmb` are `barrier()`, `__smp_load_acquire`/`__smp_store_release` a plain access
//!   with `barrier()`, `__smp_mb__{before,after}_atomic` nothing: "atomic operations are
//!   already serializing"); every LOCK-prefixed instruction, failed cmpxchg and `atomic_inc`
//!   included, is a full barrier (arch/x86/include/asm/cmpxchg.h, atomic.h);
//!   arch/x86/include/asm/pgtable_64.h `native_ptep_get_and_clear` is `xchg`.
//! - arm64: arch/arm64/include/asm/barrier.h (`__smp_mb` `dmb ish`, `__smp_rmb` `dmb ishld`,
//!   `__smp_wmb` `dmb ishst`, `__smp_load_acquire` `ldar`, `__smp_store_release` `stlr`);
//!   include/asm-generic/barrier.h `__smp_mb__{before,after}_atomic` are `__smp_mb()`;
//!   arch/arm64/include/asm/cmpxchg.h and atomic_lse.h/atomic_ll_sc.h: fully ordered RMWs are
//!   `*al` LSE instructions or LL/SC with a trailing `dmb ish`, `_acquire` ones `*a`/`ldaxr`,
//!   `_release` ones `*l`/`stlxr`; arch/arm64/include/asm/pgtable.h `__ptep_get_and_clear` is
//!   `xchg_relaxed`; qspinlock takes the lock with `atomic_try_cmpxchg_acquire` and releases it
//!   with `smp_store_release` (include/asm-generic/qspinlock.h).
//! - LKMM: linux-kernel.def (`READ_ONCE(X) __load{once}(X)`, `smp_load_acquire(X)
//!   __load{acquire}(*X)`, `smp_rmb() { __fence{rmb}; }` ordering loads against loads only,
//!   `smp_wmb()` stores against stores, value-returning RMWs `{mb}`); Documentation/atomic_t.txt
//!   ("RMW operations that have a return value are fully ordered; ... conditional are unordered
//!   on FAILURE"; "a fully ordered primitive is like having an smp_mb() before and an smp_mb()
//!   after").
//!
//! Where the engine cannot express an order exactly it takes a stronger one, never a weaker
//! (soundness: a model must not show what its architecture forbids): the LKMM's
//! `smp_mb__before_atomic()` orders only when an RMW follows, the table gives a full fence;
//! spin_lock's acquire is the engine's RCpc acquire, and the lock word's coherence orders the
//! critical sections.

use mmcheck_explorer::memory::{AccessOrder, FenceKind, MemoryModel};

/// The kernel primitives the model and the litmus front end use, by what they order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Primitive {
    /// `READ_ONCE()`, `atomic_read()`, `rcu_dereference()`, `ptep_get_lockless()`, a plain load.
    ReadOnce,
    /// `WRITE_ONCE()`, `atomic_set()`, `set_pte_at()`, a plain store.
    WriteOnce,
    /// `smp_load_acquire()`, `atomic_read_acquire()`.
    LoadAcquire,
    /// `smp_store_release()`, `rcu_assign_pointer()`, `atomic_set_release()`.
    StoreRelease,
    /// `smp_mb()`.
    Mb,
    /// `smp_rmb()`.
    Rmb,
    /// `smp_wmb()`.
    Wmb,
    /// `smp_mb__before_atomic()`, `smp_mb__after_atomic()`, `smp_mb__after_spinlock()`,
    /// `smp_mb__after_unlock_lock()`.
    MbAroundAtomic,
    /// `barrier()`: the compiler's only.
    Barrier,
    /// A value-returning or successful conditional RMW: `xchg()`, `cmpxchg()` that succeeds,
    /// `atomic_*_return()`, `atomic_fetch_*()`, `atomic_add_unless()` that adds,
    /// `test_and_set_bit()`, `folio_ref_freeze()`, `folio_try_get()`.
    RmwFull,
    /// `*_acquire()` RMWs, `test_and_set_bit_lock()`.
    RmwAcquire,
    /// `*_release()` RMWs.
    RmwRelease,
    /// `*_relaxed()` RMWs and those returning nothing: `atomic_inc()`, `set_bit()`.
    RmwRelaxed,
    /// A conditional RMW that fails (`cmpxchg()` finding another value): a load.
    RmwFailed,
    /// `spin_lock()`, a successful `spin_trylock()`.
    SpinLock,
    /// `spin_unlock()`.
    SpinUnlock,
    /// `ptep_get_and_clear()`.
    PtepGetAndClear,
}

/// What one primitive orders under one model: fences around it and the orders of its load and
/// store (an RMW has both).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ordering {
    pub before: Option<FenceKind>,
    pub read: AccessOrder,
    pub write: AccessOrder,
    pub after: Option<FenceKind>,
}

const RELAXED: Ordering =
    Ordering { before: None, read: AccessOrder::Relaxed, write: AccessOrder::Relaxed, after: None };
const FULL_RMW: Ordering = Ordering { before: Some(FenceKind::Full), after: Some(FenceKind::Full), ..RELAXED };

const fn fence(kind: FenceKind) -> Ordering {
    Ordering { before: Some(kind), ..RELAXED }
}

const fn read(order: AccessOrder) -> Ordering {
    Ordering { read: order, ..RELAXED }
}

const fn write(order: AccessOrder) -> Ordering {
    Ordering { write: order, ..RELAXED }
}

/// The table. Under `sc` every load reads the latest store, so orders mean nothing there.
pub fn ordering(model: MemoryModel, primitive: Primitive) -> Ordering {
    use AccessOrder::*;
    use Primitive::*;
    match model {
        MemoryModel::Sc => RELAXED,
        MemoryModel::X86 => match primitive {
            // TSO: every load is ordered before later accesses, every store after earlier ones.
            ReadOnce | LoadAcquire => Ordering { read: AcquirePc, write: Release, ..RELAXED },
            WriteOnce | StoreRelease | SpinUnlock => Ordering { read: AcquirePc, write: Release, ..RELAXED },
            Mb => fence(FenceKind::Full),
            Rmb | Wmb | MbAroundAtomic | Barrier => RELAXED,
            // Every LOCK-prefixed instruction and xchg is a full barrier.
            RmwFull | RmwAcquire | RmwRelease | RmwRelaxed | RmwFailed | SpinLock | PtepGetAndClear => {
                Ordering { read: AcquirePc, write: Release, ..FULL_RMW }
            }
        },
        MemoryModel::Arm64 => match primitive {
            ReadOnce | WriteOnce | RmwRelaxed | RmwFailed | Barrier => RELAXED,
            // ldar: RCsc.
            LoadAcquire => read(AcquireSc),
            StoreRelease | SpinUnlock => write(Release),
            Mb | MbAroundAtomic => fence(FenceKind::Full),
            Rmb => fence(FenceKind::LoadAny),
            Wmb => fence(FenceKind::StoreStore),
            RmwFull => FULL_RMW,
            RmwAcquire | SpinLock => read(AcquireSc),
            RmwRelease => write(Release),
            // __ptep_get_and_clear(): xchg_relaxed().
            PtepGetAndClear => RELAXED,
        },
        MemoryModel::Lkmm => match primitive {
            ReadOnce | WriteOnce | RmwRelaxed | RmwFailed | Barrier => RELAXED,
            LoadAcquire | RmwAcquire | SpinLock => read(AcquirePc),
            StoreRelease | RmwRelease | SpinUnlock => write(Release),
            Mb | MbAroundAtomic => fence(FenceKind::Full),
            Rmb => fence(FenceKind::LoadLoad),
            Wmb => fence(FenceKind::StoreStore),
            RmwFull => FULL_RMW,
            // The LKMM promises what every architecture gives: arm64's xchg_relaxed().
            PtepGetAndClear => RELAXED,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_threads_primitives_order_as_the_kernel_says() {
        // ptep_get_and_clear() is a full barrier on x86 (xchg), unordered on arm64.
        assert_eq!(ordering(MemoryModel::X86, Primitive::PtepGetAndClear).after, Some(FenceKind::Full));
        assert_eq!(ordering(MemoryModel::Arm64, Primitive::PtepGetAndClear), RELAXED);
        // folio_try_get() (a successful atomic_add_unless) is fully ordered everywhere.
        for model in [MemoryModel::X86, MemoryModel::Arm64, MemoryModel::Lkmm] {
            let rmw = ordering(model, Primitive::RmwFull);
            assert_eq!((rmw.before, rmw.after), (Some(FenceKind::Full), Some(FenceKind::Full)), "{model}");
        }
        // smp_rmb() orders later stores on arm64 (dmb ishld), not in the LKMM.
        assert_eq!(ordering(MemoryModel::Arm64, Primitive::Rmb).before, Some(FenceKind::LoadAny));
        assert_eq!(ordering(MemoryModel::Lkmm, Primitive::Rmb).before, Some(FenceKind::LoadLoad));
    }
}

/// arch/x86: the user access and its fault entry (arch/x86/mm/fault.c), the MMU with it.
pub mod x86 {
    pub mod mm {
        pub mod fault;
    }
}
