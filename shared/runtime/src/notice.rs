//! Notifications with mail: the notification is stored first (`pending`), then its mail is
//! sent and the attempt recorded on it (`sent`, or `failed` with the reason), so a member
//! sees every notice and what became of its mail. A failed mail fails the handler: the
//! event's redelivery retries it (the queue spaces the attempts, then parks the event in
//! its dead-letter queue, from which `cargo xtask redrive` sends it again). A notice whose
//! mail went out is not mailed again by a redelivery.

use crate::effect::EffectError;
use crate::mail::{Mail, Mailer};
use kassa_store::{Notification, ReadModels};

/// Stores `notification` and mails `mail` (none for a workspace without an address).
/// Returns whether the notification was new.
pub async fn deliver<M: Mailer>(
    read_models: &ReadModels,
    mailer: &M,
    notification: &Notification,
    mail: Option<&Mail>,
) -> Result<bool, EffectError> {
    let stored = read_models.add_notification(notification).await?;
    let Some(mail) = mail else {
        return Ok(stored);
    };
    if !stored && read_models.mailed(notification).await? {
        return Ok(false);
    }
    match mailer.send(mail).await {
        Ok(()) => read_models.record_delivery(notification, Ok(())).await?,
        Err(e) => {
            read_models
                .record_delivery(notification, Err(e.to_string()))
                .await?;
            return Err(e.into());
        }
    }
    Ok(stored)
}
