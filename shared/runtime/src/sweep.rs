//! Working through an agenda: everything due is handled one entry at a time, and the run
//! fails (so the schedule retries it) only after every entry had its try.
//!
//! An entry is taken in the commit that settles it, so when two runs overlap, one settles
//! it and the other finds it gone: that is `Settled`, not a failure.

use crate::effect::EffectError;
use kassa_store::{Agenda, DueRenewal, Entry};
use serde::Serialize;
use std::future::Future;

/// What became of one due entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// This run acted on it.
    Done,
    /// Nothing was left to do: another run, or the event that settles it, came first.
    Settled,
}

/// A run's summary.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Sweep {
    pub due: usize,
    pub done: usize,
    pub settled: usize,
    pub failed: usize,
}

/// What a run read as due: an agenda's entry, or a row that carries more beside it (a
/// renewal and its anchor). Its subject names it in the logs.
pub trait Due {
    fn subject(&self) -> String;
}

impl Due for Entry {
    fn subject(&self) -> String {
        self.subject.clone()
    }
}

impl Due for DueRenewal {
    fn subject(&self) -> String {
        self.workspace_id.to_string()
    }
}

/// Handles every entry of `agenda` due by `when` with `handle`. `what` names the entries
/// in logs ("renewal", "expiry").
/// As [`sweep`], for an agenda keyed by day (`YYYY-MM-DD`): what is due by `now`'s day.
pub async fn sweep_day<F, Fut>(
    agenda: &Agenda,
    now: time::OffsetDateTime,
    what: &str,
    handle: F,
) -> Result<Sweep, EffectError>
where
    F: FnMut(Entry) -> Fut,
    Fut: Future<Output = Result<Fate, EffectError>>,
{
    let day = now
        .date()
        .format(time::macros::format_description!("[year]-[month]-[day]"))?;
    sweep(agenda, &day, what, handle).await
}

pub async fn sweep<F, Fut>(
    agenda: &Agenda,
    when: &str,
    what: &str,
    handle: F,
) -> Result<Sweep, EffectError>
where
    F: FnMut(Entry) -> Fut,
    Fut: Future<Output = Result<Fate, EffectError>>,
{
    work_through(agenda.due_by(when).await?, what, handle).await
}

/// Handles `due`, entries a run read from its agenda. Apart from [`sweep`] so that two
/// overlapping runs, which read the same entries, can be replayed exactly.
pub async fn work_through<D, F, Fut>(
    due: Vec<D>,
    what: &str,
    mut handle: F,
) -> Result<Sweep, EffectError>
where
    D: Due,
    F: FnMut(D) -> Fut,
    Fut: Future<Output = Result<Fate, EffectError>>,
{
    let mut run = Sweep {
        due: due.len(),
        ..Sweep::default()
    };
    for entry in due {
        let subject = entry.subject();
        match Box::pin(handle(entry)).await {
            Ok(Fate::Done) => run.done += 1,
            Ok(Fate::Settled) => run.settled += 1,
            Err(e) => {
                tracing::error!(%subject, error = %e, "{what} failed");
                run.failed += 1;
            }
        }
    }
    tracing::info!(?run, "{what} run");
    if run.failed > 0 {
        return Err(EffectError::retry(format!(
            "{} of {} {what} entries failed",
            run.failed, run.due
        )));
    }
    Ok(run)
}
