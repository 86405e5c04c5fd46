//! What the coupons context keeps beside its streams, in the state table, always written
//! in the commit that records the events that justify it:
//! - the code index (`coupon-code#<CODE>` → coupon id), claimed under a condition, so a
//!   code names one coupon per deployment;
//! - the user's use counts: `coupon-uses#<coupon>#<user>`, advanced in the lock's commit
//!   by a conditional `ADD` that states the limit, and given back the same way;
//! - the audit: one item per coupon event (`coupon-audit#<coupon>`, sorted by time), kept
//!   forever, so `GET /coupons/{id}/audit` reads a partition rather than replaying streams.
//!
//! The coupon's own use count is a hot counter in the events table instead
//! (`CouponUses#<coupon>`, opened with the coupon): every apply of the coupon writes it,
//! so it is taken by ONE conditional step ([`take`]) that carries `coupon.use_taken`,
//! before and outside the lock's transaction. A transaction holding it would halve its
//! ~1,000 writes a second on AWS, and concurrent ones would cancel each other
//! (`TransactionConflict`). The lock's commit then settles the take under a marker
//! ([`CouponLedger::settle`]); an apply that cannot lock gives it back under the same
//! marker, and reclaim-coupon-uses gives back, once, a take nobody settled.
//!
//! And, for the fraud rules: redemptions per velocity window
//! (`coupon-redemptions#<coupon>#<window>`), counted in the redemption's commit; the
//! accounts that paid with one card (`coupon-cards#<coupon>#<fingerprint>`), a set add
//! after it (the card is known only by asking the payment provider), so repeating it
//! changes nothing.

use crate::{Fail, Kernel, Tx};
use aws_sdk_dynamodb::types::{AttributeValue, Put, Update};
use aws_sdk_dynamodb::Client;
use kassa_domain::coupon::Coupon;
use kassa_domain::coupon_code::CouponCode;
use kassa_domain::coupon_usage::{UseEvent, USES_AFTER};
use kassa_domain::identity::UserId;
use kassa_store::counter::Carried;
use kassa_store::{
    Bounds, Commit, EventStore, Metadata, Refusal, Step, Stepped, StoreError, StreamId,
};
use serde::Serialize;
use std::collections::HashMap;
use time::OffsetDateTime;
use uuid::Uuid;

/// Which limit refused a lock ([`Refusal::LimitReached`]).
pub const USER_LIMIT: &str = "user";

/// The use counter heads' state schema.
pub const SCHEMA: u32 = 1;

/// The stream of a coupon's use counter.
pub fn uses_stream(coupon: Uuid) -> StreamId {
    StreamId::new("CouponUses", coupon)
}

/// What a use counter's head keeps beside its figure.
#[derive(Debug, Clone, Serialize)]
struct UsesHead {
    coupon_id: Uuid,
}

/// What became of a [`take`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Took {
    /// One use taken, to be settled or given back under `take_id`.
    Taken { take_id: Uuid, uses_after: i64 },
    /// The coupon's uses are all taken: nothing was.
    Exhausted,
}

/// Takes one use of `coupon` for `order`: one conditional step on the coupon's use
/// counter, under its limit, recording `coupon.use_taken`. Throttling and a cold commit
/// holding the head come back as errors for the caller to retry.
pub async fn take(
    store: &EventStore,
    coupon: &Coupon,
    order: Uuid,
    user: &UserId,
    metadata: &Metadata,
    now: OffsetDateTime,
) -> Result<Took, StoreError> {
    let take_id = Uuid::now_v7();
    let stream = uses_stream(coupon.coupon_id);
    let event = UseEvent::Taken {
        coupon_id: coupon.coupon_id,
        order_id: order,
        user_id: user.clone(),
        take_id,
        retaken: false,
        uses_after: 0,
    };
    let stepped = store
        .step(Step {
            stream: &stream,
            schema: SCHEMA,
            delta: 1,
            bounds: Bounds {
                at_least: None,
                below: Some(i64::from(coupon.terms.max_uses)),
            },
            member: None,
            terms: None,
            while_open: false,
            carried: vec![Carried::new(&event, metadata, now, &[USES_AFTER])],
            measure: false,
        })
        .await?;
    match stepped {
        Stepped::Moved { counter, .. } => Ok(Took::Taken {
            take_id,
            uses_after: counter,
        }),
        Stepped::Refused(Some(_)) => Ok(Took::Exhausted),
        Stepped::Refused(None) => Err(StoreError::Corrupt(format!(
            "coupon {} has no use counter",
            coupon.coupon_id
        ))),
    }
}

/// Uses of `coupon` taken now (locked, redeemed, or taken by an apply not yet settled).
pub async fn uses(store: &EventStore, coupon: Uuid) -> Result<u64, StoreError> {
    let head = store.load(&uses_stream(coupon)).await?;
    Ok(head
        .and_then(|h| h.counter)
        .map_or(0, |c| u64::try_from(c).unwrap_or(0)))
}

const USES: &str = "uses";

fn code_key(code: &CouponCode) -> String {
    format!("coupon-code#{code}")
}

fn user_uses_key(coupon: Uuid, user: &str) -> String {
    format!("coupon-uses#{coupon}#{user}")
}

/// The accounts that redeemed `coupon` with one card: kept as long as the coupon, since
/// the shared-card rule counts over its whole life.
fn cards_key(coupon: Uuid, fingerprint: &str) -> String {
    format!("coupon-cards#{coupon}#{fingerprint}")
}

fn redemptions_key(coupon: Uuid, window: i64) -> String {
    format!("coupon-redemptions#{coupon}#{window}")
}

fn audit_key(coupon: Uuid) -> String {
    format!("coupon-audit#{coupon}")
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

/// One line of a coupon's audit: an event about it, as recorded.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditEntry {
    pub event_id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub at: String,
    /// Who caused it: a user's id, or `system:<function>`.
    pub actor: String,
    pub details: serde_json::Value,
}

/// A page of a coupon's audit, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditPage {
    pub entries: Vec<AuditEntry>,
    /// Pass as `after` for the next page; absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

#[derive(Clone)]
pub struct CouponLedger {
    client: Client,
    table: String,
}

impl CouponLedger {
    pub fn new(client: Client, state_table: impl Into<String>) -> Self {
        Self {
            client,
            table: state_table.into(),
        }
    }

    /// Claims `code` for `coupon` in `commit`; refused as [`Refusal::Taken`] when another
    /// coupon holds it.
    pub fn claim_code(
        &self,
        commit: &mut Commit,
        code: &CouponCode,
        coupon: Uuid,
    ) -> Result<(), StoreError> {
        let put = Put::builder()
            .table_name(&self.table)
            .item("pk", s(code_key(code)))
            .item("sk", s("-"))
            .item("coupon_id", s(coupon.to_string()))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(StoreError::dynamo)?;
        commit.put(put, Refusal::Taken);
        Ok(())
    }

    /// The coupon `code` names, if any.
    pub async fn find(&self, code: &CouponCode) -> Result<Option<Uuid>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(code_key(code)))
            .key("sk", s("-"))
            .consistent_read(true)
            .send()
            .await
            .map_err(StoreError::dynamo)?;
        match out.item.as_ref().and_then(|i| i.get("coupon_id")) {
            Some(AttributeValue::S(id)) => Uuid::parse_str(id)
                .map(Some)
                .map_err(|e| StoreError::Corrupt(format!("coupon code index: {e}"))),
            _ => Ok(None),
        }
    }

    /// Opens `coupon`'s use counter at zero, in the commit that creates it.
    pub fn open_uses(&self, commit: &mut Commit, coupon: Uuid) -> Result<(), StoreError> {
        commit.open_counter(
            &uses_stream(coupon),
            0,
            SCHEMA,
            &UsesHead { coupon_id: coupon },
        )?;
        Ok(())
    }

    /// Takes one of `user`'s uses of `coupon` in `commit`, under the per-user limit:
    /// refused as [`Refusal::LimitReached`] naming [`USER_LIMIT`].
    pub fn lock_user(
        &self,
        commit: &mut Commit,
        coupon: &Coupon,
        user: &str,
    ) -> Result<(), StoreError> {
        commit.update(
            self.take(
                user_uses_key(coupon.coupon_id, user),
                coupon.terms.max_uses_per_user,
            )?,
            Refusal::LimitReached(USER_LIMIT),
        );
        Ok(())
    }

    /// Settles the use taken as `take_id` in `commit`: the commit that locks its usage, or
    /// the one giving it back. Whichever comes second is refused
    /// ([`Refusal::AlreadyApplied`]).
    pub fn settle(
        &self,
        commit: &mut Commit,
        coupon: Uuid,
        take_id: Uuid,
    ) -> Result<(), StoreError> {
        commit.mark(&uses_stream(coupon), &format!("settled:{take_id}"))?;
        Ok(())
    }

    /// Gives one use of `coupon` back to its counter in `commit`, recording
    /// `coupon.use_returned`.
    pub fn give_back(
        &self,
        commit: &mut Commit,
        coupon: Uuid,
        order: Uuid,
        user: &str,
        reason: &str,
    ) -> Result<(), StoreError> {
        let event = UseEvent::Returned {
            coupon_id: coupon,
            order_id: order,
            user_id: UserId::new(user),
            reason: reason.to_owned(),
            uses_after: 0,
        };
        // Never below zero: a return is only staged for a use its commit settles or
        // releases, so a failure here means the counter and the usages disagree.
        commit.move_counter(
            &uses_stream(coupon),
            -1,
            Bounds {
                at_least: Some(1),
                below: None,
            },
            &[event],
            &[USES_AFTER],
        )?;
        Ok(())
    }

    /// Gives back the use taken as `take_id`, in a commit of its own that settles it:
    /// answers whether it went back now (false: a commit settled it before, by locking
    /// it or giving it back).
    #[allow(clippy::too_many_arguments)]
    pub async fn give_back_take(
        &self,
        kernel: &Kernel,
        metadata: Metadata,
        coupon: Uuid,
        order: Uuid,
        user: &str,
        take_id: Uuid,
        reason: &str,
    ) -> Result<bool, StoreError> {
        let given = kernel
            .run(metadata, |tx: &mut Tx<'_>| {
                Box::pin(async move {
                    self.settle(tx.commit(), coupon, take_id)?;
                    self.give_back(tx.commit(), coupon, order, user, reason)?;
                    Ok::<_, Fail<std::convert::Infallible>>(())
                })
            })
            .await;
        match given {
            Ok(_) => Ok(true),
            Err(Fail::Store(StoreError::Refused(Refusal::AlreadyApplied))) => Ok(false),
            Err(Fail::Store(e)) => Err(e),
            Err(Fail::Refused(never)) => match never {},
        }
    }

    /// Gives back the use `user` held of `coupon` for `order`, in `commit`: the coupon's
    /// and the user's.
    pub fn release(
        &self,
        commit: &mut Commit,
        coupon: Uuid,
        order: Uuid,
        user: &str,
        reason: &str,
    ) -> Result<(), StoreError> {
        self.give_back(commit, coupon, order, user, reason)?;
        commit.update(
            self.give(user_uses_key(coupon, user))?,
            Refusal::OutOfBounds,
        );
        Ok(())
    }

    /// Counts again a use given back before (a payment that arrived after its order
    /// expired), past the limits if need be: the discount was granted.
    pub fn retake(
        &self,
        commit: &mut Commit,
        coupon: Uuid,
        order: Uuid,
        user: &str,
    ) -> Result<(), StoreError> {
        let event = UseEvent::Taken {
            coupon_id: coupon,
            order_id: order,
            user_id: UserId::new(user),
            take_id: Uuid::now_v7(),
            retaken: true,
            uses_after: 0,
        };
        commit.move_counter(
            &uses_stream(coupon),
            1,
            Bounds::default(),
            &[event],
            &[USES_AFTER],
        )?;
        let update = Update::builder()
            .table_name(&self.table)
            .key("pk", s(user_uses_key(coupon, user)))
            .key("sk", s("-"))
            .update_expression("ADD #u :one")
            .expression_attribute_names("#u", USES)
            .expression_attribute_values(":one", n(1))
            .build()
            .map_err(StoreError::dynamo)?;
        commit.update(update, Refusal::OutOfBounds);
        Ok(())
    }

    fn take(&self, pk: String, limit: u32) -> Result<Update, StoreError> {
        Update::builder()
            .table_name(&self.table)
            .key("pk", s(pk))
            .key("sk", s("-"))
            .update_expression("ADD #u :one")
            .condition_expression("attribute_not_exists(#u) OR #u < :limit")
            .expression_attribute_names("#u", USES)
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":limit", n(i64::from(limit)))
            .build()
            .map_err(StoreError::dynamo)
    }

    fn give(&self, pk: String) -> Result<Update, StoreError> {
        // Never below zero: a release is only staged for a usage the same commit moves
        // from locked, so a failure here means the counts and the usages disagree.
        Update::builder()
            .table_name(&self.table)
            .key("pk", s(pk))
            .key("sk", s("-"))
            .update_expression("ADD #u :minus")
            .condition_expression("#u > :zero")
            .expression_attribute_names("#u", USES)
            .expression_attribute_values(":minus", n(-1))
            .expression_attribute_values(":zero", n(0))
            .build()
            .map_err(StoreError::dynamo)
    }

    /// Counts one redemption of `coupon` in the velocity window starting at `window`, in
    /// the commit that records it (so a redelivery counts nothing twice). The count
    /// expires a day after its window.
    pub fn count_redemption(
        &self,
        commit: &mut Commit,
        coupon: Uuid,
        window: i64,
    ) -> Result<(), StoreError> {
        let update = Update::builder()
            .table_name(&self.table)
            .key("pk", s(redemptions_key(coupon, window)))
            .key("sk", s("-"))
            .update_expression("ADD #u :one SET expires_at = :expires")
            .expression_attribute_names("#u", USES)
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":expires", n(window + 2 * 86_400))
            .build()
            .map_err(StoreError::dynamo)?;
        commit.update(update, Refusal::OutOfBounds);
        Ok(())
    }

    /// Redemptions of `coupon` counted in the window starting at `window`.
    pub async fn redemptions(&self, coupon: Uuid, window: i64) -> Result<u64, StoreError> {
        self.count_of(redemptions_key(coupon, window)).await
    }

    /// Records that `user` redeemed `coupon` paying with the card `fingerprint`, and
    /// answers how many accounts have so far. A set add: repeating it changes nothing.
    pub async fn card_accounts(
        &self,
        coupon: Uuid,
        fingerprint: &str,
        user: &str,
    ) -> Result<u32, StoreError> {
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(cards_key(coupon, fingerprint)))
            .key("sk", s("-"))
            .update_expression("ADD accounts :user")
            .expression_attribute_values(":user", AttributeValue::Ss(vec![user.to_owned()]))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::UpdatedNew)
            .send()
            .await
            .map_err(StoreError::sdk)?;
        Ok(
            match out.attributes.as_ref().and_then(|a| a.get("accounts")) {
                Some(AttributeValue::Ss(accounts)) => {
                    u32::try_from(accounts.len()).unwrap_or(u32::MAX)
                }
                _ => 0,
            },
        )
    }

    async fn count_of(&self, pk: String) -> Result<u64, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(pk))
            .key("sk", s("-"))
            .consistent_read(true)
            .send()
            .await
            .map_err(StoreError::dynamo)?;
        Ok(match out.item.as_ref().and_then(|i| i.get(USES)) {
            Some(AttributeValue::N(v)) => v.parse().unwrap_or(0),
            _ => 0,
        })
    }

    /// Adds an audit line for every coupon event `commit` records so far that names a
    /// coupon. Call it last, once everything is decided.
    pub fn audit(&self, commit: &mut Commit) -> Result<(), StoreError> {
        let mut lines = Vec::new();
        for event in commit.recorded() {
            if !event.event_type.starts_with("coupon.") {
                continue;
            }
            let Some(coupon) = event
                .payload
                .get("coupon_id")
                .and_then(|v| v.as_str())
                .and_then(|v| Uuid::parse_str(v).ok())
            else {
                continue;
            };
            let at = event
                .time
                .format(&time::format_description::well_known::Rfc3339)
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            let put = Put::builder()
                .table_name(&self.table)
                .item("pk", s(audit_key(coupon)))
                .item("sk", s(format!("{at}#{}", event.event_id)))
                .item("event_id", s(event.event_id.to_string()))
                .item("type", s(event.event_type.clone()))
                .item("at", s(at))
                .item("actor", s(event.metadata.actor.clone()))
                .item("details", s(event.payload.to_string()))
                .build()
                .map_err(StoreError::dynamo)?;
            lines.push(put);
        }
        for put in lines {
            commit.index(put);
        }
        Ok(())
    }

    /// Up to `limit` audit lines of `coupon` after the cursor `after`, oldest first.
    pub async fn audit_of(
        &self,
        coupon: Uuid,
        after: Option<&str>,
        limit: i32,
    ) -> Result<AuditPage, StoreError> {
        let mut query = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", s(audit_key(coupon)))
            .limit(limit);
        if let Some(after) = after {
            query = query.set_exclusive_start_key(Some(HashMap::from([
                ("pk".to_owned(), s(audit_key(coupon))),
                ("sk".to_owned(), s(after)),
            ])));
        }
        let out = query.send().await.map_err(StoreError::dynamo)?;
        let text = |i: &HashMap<String, AttributeValue>, k: &str| match i.get(k) {
            Some(AttributeValue::S(v)) => v.clone(),
            _ => String::new(),
        };
        let entries = out
            .items()
            .iter()
            .map(|i| AuditEntry {
                event_id: text(i, "event_id"),
                event_type: text(i, "type"),
                at: text(i, "at"),
                actor: text(i, "actor"),
                details: serde_json::from_str(&text(i, "details"))
                    .unwrap_or(serde_json::Value::Null),
            })
            .collect();
        let next = out
            .last_evaluated_key()
            .and_then(|k| k.get("sk"))
            .and_then(|v| v.as_s().ok())
            .cloned();
        Ok(AuditPage { entries, next })
    }
}
