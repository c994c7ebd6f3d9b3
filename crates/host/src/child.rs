//! Work run in a forked child process under a watchdog: a fault (SIGSEGV, SIGBUS) or a hang
//! (a syscall sleeping in handle_userfault(), a livelock in UFFDIO_COPY) ends only the child,
//! and the parent reports it. The child is the leader of its own process group, so that the
//! processes it forks for a scenario's `fork` are killed with it; it dies with its parent
//! (PR_SET_PDEATHSIG), so that none outlives a killed `mmcheck`.
//!
//! The child reports through a pipe, one JSON message a line; one process writes at a time
//! (the scenario's processes run one after the other), so lines never interleave.

use crate::Observation;
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

/// What a child (or a process it forked) tells the parent.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) enum Message {
    /// About to execute thread `thread`'s instruction `pc`.
    At {
        thread: usize,
        pc: usize,
    },
    Observed(Observation),
    /// A process the child forked for the scenario was killed by `signal` at the last `At`.
    Died {
        signal: i32,
    },
    /// The run stopped early, and why.
    Stopped(String),
    /// The run could not go on (a refusal or a failure of the runner itself).
    Error(String),
}

/// The write end of the report pipe, shared by the child and the processes it forks.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Reporter {
    fd: i32,
}

impl Reporter {
    pub(crate) fn send(&self, message: &Message) {
        let mut line = serde_json::to_vec(message).unwrap_or_default();
        line.push(b'\n');
        let mut written = 0;
        while written < line.len() {
            // SAFETY: writing our own buffer to our own pipe.
            let n = unsafe { libc::write(self.fd, line[written..].as_ptr().cast(), line.len() - written) };
            if n <= 0 {
                return;
            }
            written += n as usize;
        }
    }
}

/// How the child ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum End {
    Exited(i32),
    Signaled(i32),
    /// The watchdog killed it after the time allowed.
    TimedOut,
}

/// Everything the child said, and how it ended.
pub(crate) struct Outcome {
    pub messages: Vec<Message>,
    pub end: End,
}

/// Runs `work` in a forked child, killed with everything it forked once `watchdog` has passed.
/// `started` sees the child's pid (its process group) while it runs, for a signal handler
/// that must kill it.
pub(crate) fn run_in_child(
    watchdog: Duration,
    started: impl FnOnce(libc::pid_t),
    work: impl FnOnce(Reporter),
) -> Result<Outcome, String> {
    let mut pipe = [0i32; 2];
    // SAFETY: pipe2(2) into our own array.
    if unsafe { libc::pipe2(pipe.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(format!("pipe: error {}", crate::live::errno()));
    }
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: the CLI is single-threaded while it runs scenarios; the child runs our code only
    // and leaves through _exit().
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(format!("fork: error {}", crate::live::errno()));
    }
    if pid == 0 {
        // SAFETY: the child's own setup: its process group, death with its parent, default
        // signal dispositions (the parent's cleanup handler is not the child's).
        unsafe {
            libc::close(pipe[0]);
            libc::setpgid(0, 0);
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            if libc::getppid() != parent {
                libc::_exit(0);
            }
            for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
                libc::signal(signal, libc::SIG_DFL);
            }
        }
        let reporter = Reporter { fd: pipe[1] };
        let worked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(reporter)));
        if worked.is_err() {
            reporter.send(&Message::Error("the runner's child panicked".into()));
        }
        // SAFETY: the child ends without running the parent's destructors.
        unsafe { libc::_exit(0) };
    }
    // SAFETY: our own pipe's write end; the child's group, set here too so that a kill
    // before the child's own setpgid() reaches it.
    unsafe {
        libc::close(pipe[1]);
        libc::setpgid(pid, pid);
    }
    started(pid);
    let (messages, timed_out) = watch(pid, pipe[0], watchdog);
    let mut status = 0;
    // SAFETY: the child's process group and the child itself, ours; the group is killed
    // before the child is reaped, so its id cannot have been reused.
    unsafe {
        libc::kill(-pid, libc::SIGKILL);
        libc::waitpid(pid, &mut status, 0);
        libc::close(pipe[0]);
    }
    let end = if timed_out {
        End::TimedOut
    } else if libc::WIFSIGNALED(status) {
        End::Signaled(libc::WTERMSIG(status))
    } else {
        End::Exited(libc::WEXITSTATUS(status))
    };
    Ok(Outcome { messages, end })
}

/// Reads the child's messages until it exits (left unreaped) or the watchdog fires.
fn watch(pid: libc::pid_t, stream: i32, watchdog: Duration) -> (Vec<Message>, bool) {
    let deadline = Instant::now() + watchdog;
    let mut bytes = Vec::new();
    let mut open = true;
    // SAFETY: pidfd_open(2) of our own child: readable once it exits. Without it (an old
    // kernel), the loop polls every 10 ms.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as i32;
    let timed_out = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break true;
        }
        if exited(pid) {
            break false;
        }
        let mut fds = [
            libc::pollfd { fd: if open { stream } else { -1 }, events: libc::POLLIN, revents: 0 },
            libc::pollfd { fd: pidfd, events: libc::POLLIN, revents: 0 },
        ];
        let tick_ms = if pidfd < 0 { 10 } else { left.as_millis().min(i32::MAX as u128) as i32 + 1 };
        // SAFETY: two pollfds of ours.
        unsafe { libc::poll(fds.as_mut_ptr(), 2, tick_ms) };
        if fds[0].revents != 0 {
            open = read_available(stream, &mut bytes);
        }
    };
    if open {
        read_available(stream, &mut bytes);
    }
    if pidfd >= 0 {
        // SAFETY: our own pidfd.
        unsafe { libc::close(pidfd) };
    }
    let messages = bytes.split(|&b| b == b'\n').filter_map(|line| serde_json::from_slice(line).ok()).collect();
    (messages, timed_out)
}

/// Whether the child has exited, without reaping it (its pid stays ours until waitpid).
fn exited(pid: libc::pid_t) -> bool {
    // SAFETY: waitid(2) with WNOWAIT into our own siginfo.
    unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        let result =
            libc::waitid(libc::P_PID, pid as libc::id_t, &mut info, libc::WEXITED | libc::WNOHANG | libc::WNOWAIT);
        result == 0 && info.si_pid() == pid
    }
}

/// Appends what the pipe holds now; false at end of file.
fn read_available(stream: i32, bytes: &mut Vec<u8>) -> bool {
    let mut buffer = [0u8; 65536];
    loop {
        let mut fds = [libc::pollfd { fd: stream, events: libc::POLLIN, revents: 0 }];
        // SAFETY: one pollfd of ours, no waiting.
        if unsafe { libc::poll(fds.as_mut_ptr(), 1, 0) } <= 0 {
            return true;
        }
        // SAFETY: reading our own pipe into our own buffer; poll said it will not block.
        let n = unsafe { libc::read(stream, buffer.as_mut_ptr().cast(), buffer.len()) };
        if n <= 0 {
            return false;
        }
        bytes.extend_from_slice(&buffer[..n as usize]);
    }
}

/// A signal's name, for reports.
pub(crate) fn signal_name(signal: i32) -> String {
    match signal {
        libc::SIGSEGV => "SIGSEGV".into(),
        libc::SIGBUS => "SIGBUS".into(),
        libc::SIGKILL => "SIGKILL".into(),
        libc::SIGABRT => "SIGABRT".into(),
        libc::SIGILL => "SIGILL".into(),
        libc::SIGFPE => "SIGFPE".into(),
        other => format!("signal {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::{run_in_child, End, Message};
    use std::time::{Duration, Instant};

    #[test]
    fn a_hung_child_is_killed_by_the_watchdog() {
        let started = Instant::now();
        let outcome = run_in_child(
            Duration::from_millis(300),
            |_| {},
            |reporter| {
                reporter.send(&Message::At { thread: 0, pc: 3 });
                loop {
                    std::thread::sleep(Duration::from_secs(60));
                }
            },
        )
        .expect("forks");
        assert_eq!(outcome.end, End::TimedOut);
        assert!(matches!(outcome.messages[..], [Message::At { thread: 0, pc: 3 }]));
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn a_fault_in_the_child_is_its_end() {
        let outcome = run_in_child(
            Duration::from_secs(10),
            |_| {},
            |_| {
                // SAFETY: the child ends itself with SIGBUS (the runner's real faults are tested end
                // to end by the CLI's tests).
                unsafe {
                    libc::signal(libc::SIGBUS, libc::SIG_DFL);
                    libc::raise(libc::SIGBUS);
                }
            },
        )
        .expect("forks");
        assert_eq!(outcome.end, End::Signaled(libc::SIGBUS));
    }
}
