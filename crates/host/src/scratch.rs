//! The live runner's temporary directory, removed when the run ends however it ends: on drop
//! (after a fault or a timeout, which end only the runner's child), and from a SIGINT, SIGTERM
//! or SIGHUP handler installed for the run's length, which kills the child's process group,
//! removes the directory and then dies of the signal as it would have. A SIGKILL of `mmcheck`
//! still leaves the directory (nothing can run then); its child dies with it.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, AtomicPtr, Ordering};

/// The running child's pid (its process group), 0 when none runs.
static CHILD: AtomicI32 = AtomicI32::new(0);
/// The files the handler removes, the directory last; null outside a run.
static PATHS: AtomicPtr<Vec<CString>> = AtomicPtr::new(std::ptr::null_mut());

const SIGNALS: [i32; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

/// Records the child the handler must kill (0: none).
pub(crate) fn running(pid: libc::pid_t) {
    CHILD.store(pid, Ordering::SeqCst);
}

pub(crate) struct ScratchDir {
    path: PathBuf,
    previous: Vec<(i32, libc::sigaction)>,
}

impl ScratchDir {
    /// A fresh `mmcheck-host-PID-N` directory for a scenario with `files` files.
    pub(crate) fn new(files: usize) -> Result<ScratchDir, String> {
        let base = std::env::temp_dir();
        let path = (0..1000u32)
            .map(|attempt| base.join(format!("mmcheck-host-{}-{attempt}", std::process::id())))
            .find(|path| std::fs::create_dir(path).is_ok())
            .ok_or_else(|| format!("cannot create a temporary directory in {}", base.display()))?;
        let mut paths: Vec<CString> = (0..files).filter_map(|i| c_path(&path.join(format!("file{i}")))).collect();
        paths.extend(c_path(&path));
        PATHS.store(Box::into_raw(Box::new(paths)), Ordering::SeqCst);
        let previous = SIGNALS.iter().map(|&signal| (signal, install(signal))).collect();
        Ok(ScratchDir { path, previous })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        for (signal, previous) in &self.previous {
            // SAFETY: restores the disposition saved in new().
            unsafe { libc::sigaction(*signal, previous, std::ptr::null_mut()) };
        }
        let paths = PATHS.swap(std::ptr::null_mut(), Ordering::SeqCst);
        if !paths.is_null() {
            // SAFETY: the box new() leaked; the handler is uninstalled and the pointer cleared.
            drop(unsafe { Box::from_raw(paths) });
        }
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

fn c_path(path: &Path) -> Option<CString> {
    CString::new(path.as_os_str().as_bytes()).ok()
}

fn install(signal: i32) -> libc::sigaction {
    // SAFETY: sigaction(2) with a handler that only makes async-signal-safe calls.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_signal as extern "C" fn(i32) as libc::sighandler_t;
        libc::sigemptyset(&mut action.sa_mask);
        let mut previous: libc::sigaction = std::mem::zeroed();
        libc::sigaction(signal, &action, &mut previous);
        previous
    }
}

/// Kills the child's group, removes the files and the directory (kill, unlink and rmdir are
/// async-signal-safe; the paths were built before the run), then dies of the signal.
extern "C" fn on_signal(signal: i32) {
    let child = CHILD.swap(0, Ordering::SeqCst);
    let paths = PATHS.swap(std::ptr::null_mut(), Ordering::SeqCst);
    // SAFETY: the pointer, when set, is the live box of ScratchDir::new(), never freed while set.
    unsafe {
        if child > 0 {
            libc::kill(-child, libc::SIGKILL);
            libc::waitpid(child, std::ptr::null_mut(), 0);
        }
        if let Some(paths) = paths.as_ref() {
            if let Some((dir, files)) = paths.split_last() {
                for file in files {
                    libc::unlink(file.as_ptr());
                }
                libc::rmdir(dir.as_ptr());
            }
        }
        libc::signal(signal, libc::SIG_DFL);
        libc::raise(signal);
    }
}
