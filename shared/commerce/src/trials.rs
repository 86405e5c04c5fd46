//! The trial schedule: a trial's reminder and its end are entries on the `trials` agenda,
//! written in the commit that starts it and taken, each once, by the daily end-trials
//! run in the commit that records what they did.

use kassa_domain::workspace::{WorkspaceEvent, TRIAL_REMINDER_DAYS};
use kassa_store::{Agenda, StoreError};
use time::macros::format_description;
use uuid::Uuid;

pub const TRIALS_AGENDA: &str = "trials";

/// What an entry of the trial schedule is due for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Remind,
    End,
}

impl Step {
    fn as_str(self) -> &'static str {
        match self {
            Self::Remind => "remind",
            Self::End => "end",
        }
    }
}

pub fn subject(workspace: Uuid, step: Step) -> String {
    format!("{workspace}/{}", step.as_str())
}

pub fn parse_subject(subject: &str) -> Option<(Uuid, Step)> {
    let (ws, step) = subject.split_once('/')?;
    let step = match step {
        "remind" => Step::Remind,
        "end" => Step::End,
        _ => return None,
    };
    Some((Uuid::parse_str(ws).ok()?, step))
}

/// The entries of a trial started among `events`: the reminder, due
/// [`TRIAL_REMINDER_DAYS`] before the end (or at once for a shorter trial), and the end.
pub fn entries(
    agenda: &Agenda,
    events: &[WorkspaceEvent],
) -> Result<Vec<aws_sdk_dynamodb::types::Put>, StoreError> {
    let day = format_description!("[year]-[month]-[day]");
    let mut puts = Vec::new();
    for event in events {
        if let WorkspaceEvent::TrialStarted {
            workspace_id,
            ends_on,
            ..
        } = event
        {
            let end = time::Date::parse(ends_on, day)
                .map_err(|e| StoreError::Corrupt(format!("trial end {ends_on}: {e}")))?;
            let remind = (end - time::Duration::days(TRIAL_REMINDER_DAYS))
                .format(day)
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            puts.push(agenda.schedule(&remind, &subject(*workspace_id, Step::Remind))?);
            puts.push(agenda.schedule(ends_on, &subject(*workspace_id, Step::End))?);
        }
    }
    Ok(puts)
}
