//! RCU grace periods over thread views, as the kernel implements them: `synchronize_rcu()`
//! starts a grace period with a full barrier, waits until every other thread has passed a
//! quiescent state (a point outside any read-side critical section, where the kernel's
//! quiescent-state reporting issues a full barrier on that CPU), and ends with a full barrier.
//!
//! In views: at its quiescent state a thread is ordered after everything the updater had seen
//! when the grace period started (`start`), and everything the thread had seen is ordered
//! before what the updater does after the grace period (`acknowledged`). That gives the RCU
//! guarantee of tools/memory-model/Documentation/explanation.txt ("if any part of a critical
//! section precedes the start of a grace period, all of it precedes its end; if any part
//! follows the end, all of it follows the start"). When a thread passes its quiescent state is
//! a choice of the front end (any step outside a critical section); a finished thread has
//! passed it. A grace period waits for every other thread, not only for readers that were in a
//! critical section when it started: a reader that enters one later may pass its quiescent
//! state first, which is the behaviour of a new reader, so no execution is lost that way.

use super::{FenceKind, ThreadView, Timestamp};
use serde::{Deserialize, Serialize};

/// One `synchronize_rcu()` in progress.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
struct GracePeriod {
    updater: u32,
    start: Timestamp,
    /// Threads still to pass a quiescent state (bit per thread).
    waiting: u64,
    acknowledged: Timestamp,
}

/// Read-side nesting per thread and the grace periods in progress.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Rcu {
    nesting: Vec<u32>,
    grace_periods: Vec<GracePeriod>,
}

/// An RCU misuse the front end reports (the kernel would deadlock or warn).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RcuError {
    UnlockWithoutLock,
    /// `synchronize_rcu()` inside a read-side critical section waits for itself.
    SynchronizeInReader,
}

impl Rcu {
    pub fn new(threads: usize) -> Self {
        Rcu { nesting: vec![0; threads], grace_periods: Vec::new() }
    }

    pub fn read_lock(&mut self, thread: u32) {
        self.nesting[thread as usize] += 1;
    }

    pub fn read_unlock(&mut self, thread: u32) -> Result<(), RcuError> {
        let nesting = &mut self.nesting[thread as usize];
        *nesting = nesting.checked_sub(1).ok_or(RcuError::UnlockWithoutLock)?;
        Ok(())
    }

    pub fn in_reader(&self, thread: u32) -> bool {
        self.nesting[thread as usize] > 0
    }

    /// Starts `updater`'s grace period; `finished` are the threads that have ended (quiescent
    /// for good: their views are acknowledged now). `threads` is every thread's bit.
    pub fn start(
        &mut self,
        updater: u32,
        view: &mut ThreadView,
        threads: u64,
        finished: &[(u32, &ThreadView)],
    ) -> Result<(), RcuError> {
        if self.in_reader(updater) {
            return Err(RcuError::SynchronizeInReader);
        }
        view.fence(FenceKind::Full);
        let mut waiting = threads & !(1 << updater);
        let mut acknowledged = 0;
        for &(thread, finished_view) in finished {
            waiting &= !(1 << thread);
            acknowledged = acknowledged.max(finished_view.known());
        }
        self.grace_periods.push(GracePeriod { updater, start: view.known(), waiting, acknowledged });
        Ok(())
    }

    /// Whether `thread` may pass a quiescent state now: outside a critical section, with a grace
    /// period waiting for it.
    pub fn may_quiesce(&self, thread: u32) -> bool {
        !self.in_reader(thread) && self.grace_periods.iter().any(|gp| gp.waiting & (1 << thread) != 0)
    }

    /// `thread` passes a quiescent state (a full barrier on its CPU) for every grace period
    /// waiting for it; a thread that finishes passes one for good.
    pub fn quiesce(&mut self, thread: u32, view: &mut ThreadView) {
        view.fence(FenceKind::Full);
        for gp in self.grace_periods.iter_mut().filter(|gp| gp.waiting & (1 << thread) != 0) {
            gp.waiting &= !(1 << thread);
            gp.acknowledged = gp.acknowledged.max(view.known());
            view.absorb(gp.start);
        }
    }

    /// Whether `updater`'s grace period may end: every other thread has passed a quiescent state.
    pub fn may_end(&self, updater: u32) -> bool {
        self.grace_periods.iter().any(|gp| gp.updater == updater && gp.waiting == 0)
    }

    /// Ends `updater`'s grace period: its later accesses are ordered after every reader's.
    pub fn end(&mut self, updater: u32, view: &mut ThreadView) {
        let index = self.grace_periods.iter().position(|gp| gp.updater == updater && gp.waiting == 0);
        let gp = self.grace_periods.remove(index.expect("may_end() was checked"));
        view.absorb(gp.acknowledged);
        view.fence(FenceKind::Full);
    }

    /// A thread with a grace period in progress (started, not ended).
    pub fn synchronizing(&self, updater: u32) -> bool {
        self.grace_periods.iter().any(|gp| gp.updater == updater)
    }
}
