//! Keeps the processes the xtask starts from outliving it.
//!
//! Each child runs in its own process group, so that stopping it also stops
//! whatever it started (cargo's rustc, a server's workers) and so that a
//! terminal's Ctrl-C does not reach it half-way: the xtask decides the order
//! in which things stop. The price is that the xtask must stop the groups
//! itself, on every way out:
//! - normal return, `?` and panics: `Drop` of [`Supervised`];
//! - Ctrl-C, SIGTERM, SIGHUP: the handler of [`stop_everything_on_interrupt`],
//!   since `process::exit` runs no destructors;
//! - the xtask being killed outright: on Linux each child gets
//!   `PR_SET_PDEATHSIG`, so at least the direct child dies with us.

use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// Time a group gets to exit after SIGTERM before it is sent SIGKILL. The
/// JVM and moto shut down well within it; it only matters for a hung child.
const GRACE: Duration = Duration::from_secs(3);

/// Process groups started and not yet reaped, for the interrupt handler,
/// which cannot reach the `Supervised` values on the main thread's stack.
static LIVE_GROUPS: Mutex<Vec<i32>> = Mutex::new(Vec::new());

fn live_groups() -> MutexGuard<'static, Vec<i32>> {
    // A panic while holding the lock must not stop us from cleaning up.
    LIVE_GROUPS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Installs the handler that stops every live child group, then exits 130
/// (the shell's code for "ended by SIGINT"). Call once, before starting children.
pub fn stop_everything_on_interrupt() -> Result<()> {
    ctrlc::set_handler(|| {
        // The guard is held until exit, so the main thread cannot start a new
        // child behind our back; `spawn` would block on the lock.
        let groups = live_groups();
        if !groups.is_empty() {
            eprintln!("\nxtask: interrupted, stopping what was started");
        }
        stop_groups(&groups, leader_has_exited);
        reap(&groups);
        std::process::exit(130);
    })
    .context("installing the Ctrl-C handler")
}

/// A child process in its own process group, stopped (group and all) on drop.
pub struct Supervised {
    name: String,
    child: Child,
    reaped: bool,
}

impl Supervised {
    pub fn spawn(name: &str, mut command: Command) -> Result<Self> {
        // No child reads the terminal; and one in a background process group
        // that tried would be stopped by SIGTTIN rather than fail.
        command.stdin(Stdio::null()).process_group(0);
        #[cfg(target_os = "linux")]
        // SAFETY: prctl is async-signal-safe and touches no memory of ours.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut groups = live_groups();
        let child = command
            .spawn()
            .with_context(|| format!("starting {name} ({command:?})"))?;
        groups.push(pid_of(&child));
        Ok(Self {
            name: name.to_owned(),
            child,
            reaped: false,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The exit status if the child has already exited.
    pub fn exited(&mut self) -> Result<Option<ExitStatus>> {
        let status = self
            .child
            .try_wait()
            .with_context(|| format!("checking on {}", self.name))?;
        if status.is_some() {
            self.forget();
        }
        Ok(status)
    }

    pub fn wait(&mut self) -> Result<ExitStatus> {
        let status = self
            .child
            .wait()
            .with_context(|| format!("waiting for {}", self.name))?;
        self.forget();
        Ok(status)
    }

    /// Once the leader is reaped its pid may be reused, so it must no longer
    /// be signalled as a group; the rest of the group is sent SIGKILL now.
    fn forget(&mut self) {
        if self.reaped {
            return;
        }
        self.reaped = true;
        let pgid = pid_of(&self.child);
        let mut groups = live_groups();
        signal_group(pgid, libc::SIGKILL);
        groups.retain(|&live| live != pgid);
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        if self.reaped {
            return;
        }
        let pgid = pid_of(&self.child);
        let child = &mut self.child;
        stop_groups(&[pgid], |_| {
            matches!(child.try_wait(), Ok(Some(_)) | Err(_))
        });
        let _ = self.child.wait();
        self.forget();
    }
}

/// Process exit code for a finished child: its own code, or 128 + signal the
/// way shells report a child killed by a signal.
pub fn exit_code(status: ExitStatus) -> u8 {
    match (status.code(), status.signal()) {
        (Some(code), _) => u8::try_from(code).unwrap_or(1),
        (None, Some(signal)) => u8::try_from(128 + signal).unwrap_or(1),
        (None, None) => 1,
    }
}

fn pid_of(child: &Child) -> i32 {
    i32::try_from(child.id()).expect("pids fit in pid_t")
}

/// SIGTERM to every group, a grace period for their leaders to exit, then
/// SIGKILL to every group to catch stragglers and anything that hung.
fn stop_groups(groups: &[i32], mut leader_exited: impl FnMut(i32) -> bool) {
    for &pgid in groups {
        signal_group(pgid, libc::SIGTERM);
    }
    let deadline = Instant::now() + GRACE;
    while Instant::now() < deadline && !groups.iter().all(|&pgid| leader_exited(pgid)) {
        sleep(Duration::from_millis(50));
    }
    for &pgid in groups {
        signal_group(pgid, libc::SIGKILL);
    }
}

/// Collects the stopped leaders' exit statuses, so they do not linger as
/// zombies (and show up in `pgrep`) until init gets round to them. Safe to
/// race with the main thread's `wait`: it can only block on the lock after.
fn reap(leaders: &[i32]) {
    let deadline = Instant::now() + Duration::from_secs(1);
    let mut pending = leaders.to_vec();
    while !pending.is_empty() && Instant::now() < deadline {
        // SAFETY: waitpid with a null status pointer writes nothing.
        pending
            .retain(|&pid| unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) } == 0);
        sleep(Duration::from_millis(10));
    }
}

fn signal_group(pgid: i32, signal: i32) {
    // ESRCH (the group is already gone) is the expected outcome, not an error.
    // SAFETY: killpg has no memory-safety preconditions.
    unsafe {
        libc::killpg(pgid, signal);
    }
}

/// Whether a leader has exited, without reaping it: the interrupt handler
/// runs beside the main thread, which may be blocked in `wait` on that child.
fn leader_has_exited(pid: i32) -> bool {
    // Not reaped yet: a zombie, state `Z` after the command name in /proc.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => true,
    }
}
