//! coupon-usages ends in the same state whatever the order its events arrive in and
//! however often: a credit-pack order that expired and was then paid (the money is real)
//! ends with its use redeemed and counted once, whether `order.expired` or
//! `order.completed` is handled first, and redeliveries change nothing. The fraud rules
//! (velocity, one card behind many accounts) flag a coupon once and mail its owner once.
//! A coupon use taken by an apply that never settled it goes back once, when
//! reclaim-coupon-uses judges it; a settled one stays.
//! The tests hand the functions the events themselves, as SQS may deliver them.

mod common;

use kassa_commerce::clock::SystemClock;
use kassa_commerce::coupon_ledger::{self, CouponLedger, Took};
use kassa_commerce::{Fail, Kernel};
use kassa_domain::coupon::{Coupon, CouponStatus, Scope, Stacking, Terms};
use kassa_domain::coupon_code::CouponCode;
use kassa_domain::coupon_usage::{OrderCoupons, UsageCommand, UsageStatus};
use kassa_domain::discount::Discount;
use kassa_domain::identity::UserId;
use kassa_domain::money::{Currency, Money};
use kassa_domain::order::{NewOrder, Order, OrderCommand, OrderLine, Purpose, PAYMENT_WINDOW};
use kassa_domain::payment::{IntentOrigin, Payment, PaymentCommand};
use kassa_store::{Metadata, RecordedEvent};
use rust_decimal::Decimal;
use std::sync::Arc;
use time::OffsetDateTime;
use uuid::Uuid;

const BUYER: &str = "ivy";

fn coupon() -> Coupon {
    let now = OffsetDateTime::now_utc();
    Coupon {
        coupon_id: Uuid::now_v7(),
        code: CouponCode::parse("LATE-PAYER").unwrap(),
        owner: UserId::new("root"),
        terms: Terms {
            discount: Discount::Percent {
                percent: Decimal::from(10),
            },
            valid_from: now - time::Duration::hours(1),
            valid_until: now + time::Duration::days(1),
            max_uses: 1,
            max_uses_per_user: 1,
            min_order: None,
            first_order_only: false,
            scope: Scope::CreditPacks,
            stacking: Stacking::Exclusive,
            velocity: None,
            shared_card: None,
        },
        status: CouponStatus::Active,
        disabled_reason: None,
        flagged_window: None,
        flagged_cards: Default::default(),
    }
}

struct World {
    iso: common::Isolated,
    kernel: Kernel,
    ledger: CouponLedger,
}

impl World {
    async fn new() -> World {
        let iso = common::Isolated::new().await;
        World {
            kernel: Kernel::new(iso.store.clone(), Arc::new(SystemClock)),
            ledger: CouponLedger::new(common::dynamodb().await, &iso.state_table),
            iso,
        }
    }

    async fn run(&self, order_id: Uuid, command: OrderCommand) -> Vec<RecordedEvent> {
        let command = &command;
        self.kernel
            .run(Metadata::origin(Uuid::now_v7(), BUYER), |tx| {
                Box::pin(async move {
                    let mut order = tx.load::<Order>(&order_id).await?;
                    tx.decide(&mut order, command.clone())?;
                    Ok(())
                })
            })
            .await
            .map_err(|e: Fail<_>| format!("{e:?}"))
            .unwrap()
            .recorded
    }

    /// An order of 10.00 with `coupon` locked on it, as apply-coupon commits it.
    async fn order_with(&self, coupon: &Coupon) -> Uuid {
        self.order_of(coupon, BUYER).await
    }

    /// As [`World::order_with`], of `buyer`.
    async fn order_of(&self, coupon: &Coupon, buyer: &str) -> Uuid {
        let order_id = Uuid::now_v7();
        let usd = Money::new(Decimal::new(1000, 2), Currency::Usd);
        self.run(
            order_id,
            OrderCommand::Create(NewOrder {
                order_id,
                user_id: UserId::new(buyer),
                purpose: Purpose::CreditPack {
                    workspace_id: Uuid::now_v7(),
                    pack: "starter".into(),
                    quantity: 1,
                    credits: 1_000,
                },
                lines: vec![OrderLine {
                    description: "1000 credits".into(),
                    quantity: 1,
                    unit_price: usd,
                    amount: usd,
                }],
                delivery_fee: None,
                tax_rate: Decimal::ZERO,
                reference: None,
                now: OffsetDateTime::now_utc(),
                window: PAYMENT_WINDOW,
            }),
        )
        .await;
        // As apply-coupon does: one use taken by a step, then locked in the commit that
        // settles it.
        let metadata = Metadata::origin(Uuid::now_v7(), buyer);
        let take_id = self.take(coupon, order_id, buyer).await;
        let ledger = &self.ledger;
        self.kernel
            .run(metadata, |tx| {
                Box::pin(async move {
                    let mut order = tx.load::<Order>(&order_id).await?;
                    tx.decide(
                        &mut order,
                        OrderCommand::ApplyCoupon {
                            coupon_id: coupon.coupon_id,
                            code: coupon.code.to_string(),
                            discount: coupon.terms.discount,
                            stacking: coupon.terms.stacking,
                        },
                    )
                    .map_err(|f| f.map(|e| e.to_string()))?;
                    let mut usages = tx.load::<OrderCoupons>(&order_id).await?;
                    tx.decide(
                        &mut usages,
                        UsageCommand::Lock {
                            order_id,
                            user_id: UserId::new(buyer),
                            coupon_id: coupon.coupon_id,
                            code: coupon.code.to_string(),
                            discount: Money::new(Decimal::ONE, Currency::Usd),
                        },
                    )
                    .map_err(|f| f.map(|e| e.to_string()))?;
                    ledger.lock_user(tx.commit(), coupon, buyer)?;
                    ledger.settle(tx.commit(), coupon.coupon_id, take_id)?;
                    Ok(())
                })
            })
            .await
            .unwrap();
        order_id
    }

    /// Takes one use of `coupon` for `order_id` as apply-coupon's step does, opening the
    /// coupon's use counter first if its creation was not committed.
    async fn take(&self, coupon: &Coupon, order_id: Uuid, buyer: &str) -> Uuid {
        let stream = coupon_ledger::uses_stream(coupon.coupon_id);
        if self.iso.store.load(&stream).await.unwrap().is_none() {
            let (ledger, id) = (&self.ledger, coupon.coupon_id);
            self.kernel
                .run(Metadata::origin(Uuid::now_v7(), "root"), |tx| {
                    Box::pin(async move {
                        ledger.open_uses(tx.commit(), id)?;
                        Ok::<_, Fail<std::convert::Infallible>>(())
                    })
                })
                .await
                .unwrap();
        }
        match coupon_ledger::take(
            &self.iso.store,
            coupon,
            order_id,
            &UserId::new(buyer),
            &Metadata::origin(Uuid::now_v7(), buyer),
            OffsetDateTime::now_utc(),
        )
        .await
        .unwrap()
        {
            Took::Taken { take_id, .. } => take_id,
            Took::Exhausted => panic!("the coupon has uses left"),
        }
    }

    /// The coupons' owner `root`, an admin registered with an address to mail.
    async fn register_owner(&self) {
        self.kernel
            .run(Metadata::origin(Uuid::now_v7(), "root"), |tx| {
                Box::pin(async move {
                    let mut owner = tx.load::<kassa_domain::user::User>("root").await?;
                    tx.decide(
                        &mut owner,
                        kassa_domain::user::UserCommand::Register {
                            user_id: UserId::new("root"),
                            email: "root@example.com".into(),
                            name: "Root".into(),
                            role: kassa_domain::identity::Role::Admin,
                            now: OffsetDateTime::now_utc(),
                        },
                    )?;
                    Ok(())
                })
            })
            .await
            .unwrap();
    }

    /// `coupon` created and activated by `root`, as the coupons function commits it.
    async fn create(&self, coupon: &Coupon) {
        let (id, code, terms) = (coupon.coupon_id, &coupon.code, &coupon.terms);
        let ledger = &self.ledger;
        self.kernel
            .run(Metadata::origin(Uuid::now_v7(), "root"), |tx| {
                Box::pin(async move {
                    let mut c = tx.load::<Coupon>(&id).await?;
                    tx.decide(
                        &mut c,
                        kassa_domain::coupon::CouponCommand::Create {
                            coupon_id: id,
                            code: code.clone(),
                            terms: terms.clone(),
                            by: kassa_domain::identity::Actor::admin("root"),
                            concert_organizer: None,
                        },
                    )?;
                    tx.decide(
                        &mut c,
                        kassa_domain::coupon::CouponCommand::Activate {
                            by: kassa_domain::identity::Actor::admin("root"),
                        },
                    )?;
                    ledger.open_uses(tx.commit(), id)?;
                    Ok(())
                })
            })
            .await
            .unwrap();
    }

    async fn coupon_state(&self, id: Uuid) -> Coupon {
        self.iso
            .store
            .load_aggregate::<Coupon>(&id)
            .await
            .unwrap()
            .state
            .unwrap()
    }

    /// The coupon's events, oldest first.
    async fn coupon_events(&self, id: Uuid) -> Vec<RecordedEvent> {
        self.iso
            .store
            .read_stream(&kassa_store::StreamId::new("Coupon", id.to_string()), 100)
            .await
            .unwrap()
    }

    /// The coupon's events, checked to be its creation, a fraud rule's flag and the
    /// disabling that followed: nothing twice.
    async fn flagged_and_disabled(&self, id: Uuid) -> Vec<RecordedEvent> {
        let events = self.coupon_events(id).await;
        let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
        assert_eq!(
            types,
            [
                "coupon.created",
                "coupon.activated",
                "coupon.suspicious_usage_detected",
                "coupon.disabled"
            ]
        );
        events
    }

    /// The mails its owner got.
    fn owner_mails(&self) -> Vec<kassa_runtime::mail::Mail> {
        self.iso
            .mails()
            .into_iter()
            .filter(|m| m.to == "root@example.com")
            .collect()
    }

    async fn status(&self, order_id: Uuid, coupon: &Coupon) -> (Option<UsageStatus>, u64) {
        let usages = self
            .iso
            .store
            .load_aggregate::<OrderCoupons>(&order_id)
            .await
            .unwrap()
            .state
            .unwrap();
        let status = usages.usages.get(&coupon.coupon_id).map(|u| u.status);
        (
            status,
            coupon_ledger::uses(&self.iso.store, coupon.coupon_id)
                .await
                .unwrap(),
        )
    }
}

/// The order's end events: expired, then completed by a payment that came late.
async fn expired_then_paid(world: &World, order_id: Uuid) -> (RecordedEvent, RecordedEvent) {
    let later = OffsetDateTime::now_utc() + time::Duration::hours(1);
    let expired = world
        .run(order_id, OrderCommand::Expire { now: later })
        .await;
    let completed = world
        .run(
            order_id,
            OrderCommand::Complete {
                payment_intent_id: "pi_late".into(),
                payment_id: "ch_late".into(),
            },
        )
        .await;
    (expired[0].clone(), completed[0].clone())
}

#[tokio::test]
async fn a_late_payment_ends_with_the_use_redeemed_once_in_either_order_and_on_redelivery() {
    let world = World::new().await;
    let usages = world.iso.function("CouponUsagesFunction").await;

    // In the order they happened, each delivered twice.
    let first = coupon();
    let order = world.order_with(&first).await;
    assert_eq!(
        world.status(order, &first).await,
        (Some(UsageStatus::Locked), 1)
    );
    let (expired, completed) = expired_then_paid(&world, order).await;
    for event in [&expired, &completed, &expired, &completed] {
        assert!(world.iso.deliver(&usages, &[event]).await.is_empty());
    }
    assert_eq!(
        world.status(order, &first).await,
        (Some(UsageStatus::Redeemed), 1)
    );

    // Reversed, and again.
    let second = coupon();
    let order = world.order_with(&second).await;
    let (expired, completed) = expired_then_paid(&world, order).await;
    for event in [&completed, &expired, &completed, &expired] {
        assert!(world.iso.deliver(&usages, &[event]).await.is_empty());
    }
    assert_eq!(
        world.status(order, &second).await,
        (Some(UsageStatus::Redeemed), 1)
    );

    // Handled while the order was only expired (the payment not yet in): released, then
    // the payment's event redeems it and counts it again.
    let third = coupon();
    let order = world.order_with(&third).await;
    let later = OffsetDateTime::now_utc() + time::Duration::hours(1);
    let expired = world.run(order, OrderCommand::Expire { now: later }).await;
    for _ in 0..2 {
        assert!(world.iso.deliver(&usages, &[&expired[0]]).await.is_empty());
    }
    assert_eq!(
        world.status(order, &third).await,
        (Some(UsageStatus::Released), 0)
    );
    let completed = world
        .run(
            order,
            OrderCommand::Complete {
                payment_intent_id: "pi_late".into(),
                payment_id: "ch_late".into(),
            },
        )
        .await;
    for event in [&completed[0], &expired[0], &completed[0]] {
        assert!(world.iso.deliver(&usages, &[event]).await.is_empty());
    }
    assert_eq!(
        world.status(order, &third).await,
        (Some(UsageStatus::Redeemed), 1)
    );

    // Canceled and never paid: given back once, however often the event comes.
    let fourth = coupon();
    let order = world.order_with(&fourth).await;
    let canceled = world
        .run(
            order,
            OrderCommand::Cancel {
                reason: "changed my mind".into(),
            },
        )
        .await;
    for _ in 0..3 {
        assert!(world.iso.deliver(&usages, &[&canceled[0]]).await.is_empty());
    }
    assert_eq!(
        world.status(order, &fourth).await,
        (Some(UsageStatus::Released), 0)
    );
}

#[tokio::test]
async fn a_use_no_apply_settled_is_given_back_once_and_a_settled_one_is_left() {
    let world = World::new().await;
    let reclaim = world.iso.function("ReclaimCouponUsesFunction").await;
    let mut five = coupon();
    five.terms.max_uses = 5;
    five.terms.max_uses_per_user = 5;
    // Settled: taken and locked, as an apply that went through.
    let locked = world.order_with(&five).await;
    // Abandoned: taken for an order by an apply that stopped there (a timeout, a crash).
    let abandoned = Uuid::now_v7();
    world.take(&five, abandoned, BUYER).await;
    let stream = coupon_ledger::uses_stream(five.coupon_id);
    let uses = || async {
        coupon_ledger::uses(&world.iso.store, five.coupon_id)
            .await
            .unwrap()
    };
    assert_eq!(uses().await, 2);
    let taken: Vec<RecordedEvent> = world
        .iso
        .events(&stream)
        .await
        .into_iter()
        .filter(|e| e.event_type == "coupon.use_taken")
        .collect();
    assert_eq!(taken.len(), 2, "{taken:?}");

    // Straight from the step, before apply-coupon's invocation could be judged over:
    // both come back for later, and nothing moves.
    let young: Vec<&_> = taken.iter().collect();
    assert_eq!(world.iso.deliver(&reclaim, &young).await.len(), 2);
    assert_eq!(uses().await, 2);

    // As the queue delivers them, two minutes on; then again, as if each handling were
    // lost after its commit.
    let aged: Vec<RecordedEvent> = taken
        .iter()
        .cloned()
        .map(|mut e| {
            e.time -= time::Duration::minutes(2);
            e
        })
        .collect();
    let aged: Vec<&_> = aged.iter().collect();
    assert!(world.iso.deliver(&reclaim, &aged).await.is_empty());
    assert_eq!(uses().await, 1);
    for event in &aged {
        world.iso.forget("reclaim-coupon-uses", event).await;
    }
    assert!(world.iso.deliver(&reclaim, &aged).await.is_empty());
    assert_eq!(uses().await, 1);
    assert_eq!(
        world.status(locked, &five).await,
        (Some(UsageStatus::Locked), 1)
    );

    let returned: Vec<RecordedEvent> = world
        .iso
        .events(&stream)
        .await
        .into_iter()
        .filter(|e| e.event_type == "coupon.use_returned")
        .collect();
    assert_eq!(returned.len(), 1, "{returned:?}");
    assert_eq!(returned[0].payload["reason"], "abandoned");
    assert_eq!(returned[0].payload["order_id"], abandoned.to_string());
    assert_eq!(returned[0].payload["uses_after"], 1);
}

#[tokio::test]
async fn redemptions_past_the_velocity_rule_flag_and_disable_the_coupon_and_mail_its_owner() {
    let world = World::new().await;
    let usages = world.iso.function("CouponUsagesFunction").await;
    // The owner registered with an address; the coupon allows 2 redemptions an hour.
    world.register_owner().await;
    let mut watched = coupon();
    watched.terms.max_uses = 10;
    watched.terms.max_uses_per_user = 10;
    watched.terms.velocity = Some(kassa_domain::coupon::Velocity {
        max_redemptions: 2,
        window_minutes: 60,
        disable: true,
    });
    world.create(&watched).await;
    let id = watched.coupon_id;
    let coupon_state = || world.coupon_state(id);
    for n in 1..=3 {
        let order = world.order_with(&watched).await;
        let paid = world
            .run(
                order,
                OrderCommand::Complete {
                    payment_intent_id: format!("pi_{n}"),
                    payment_id: format!("ch_{n}"),
                },
            )
            .await;
        // Each payment's event delivered twice: counted once.
        for _ in 0..2 {
            assert!(world.iso.deliver(&usages, &[&paid[0]]).await.is_empty());
        }
        let state = coupon_state().await;
        if n < 3 {
            assert_eq!(
                state.status,
                CouponStatus::Active,
                "{n} redemptions are fine"
            );
        } else {
            assert_eq!(
                state.status,
                CouponStatus::Disabled,
                "the third is one too many"
            );
        }
    }
    let events = world.flagged_and_disabled(id).await;
    assert_eq!(events[2].payload["redemptions"], 3);
    for _ in 0..2 {
        assert!(world.iso.deliver(&usages, &[&events[2]]).await.is_empty());
    }
    let mails = world.owner_mails();
    assert_eq!(mails.len(), 1, "{mails:?}");
    assert!(
        mails[0].body.contains("3 redemptions within 60 minutes"),
        "{}",
        mails[0].body
    );
    assert!(
        mails[0].body.contains("It was disabled"),
        "{}",
        mails[0].body
    );
}

/// A payment of `order_id` by `buyer` recorded as the webhook records it, charging the
/// card `number` through a payment method made at localstripe; then the order completed.
async fn paid_with_card(world: &World, order_id: Uuid, buyer: &str, number: &str) -> RecordedEvent {
    let method = common::stripe_post(
        "/v1/payment_methods",
        &[
            ("type", "card"),
            ("card[number]", number),
            ("card[exp_month]", "12"),
            ("card[exp_year]", "2030"),
            ("card[cvc]", "123"),
        ],
    )
    .await;
    let intent = format!("pi_card_{}", order_id.simple());
    let origin = IntentOrigin {
        payment_intent_id: intent.clone(),
        order_id,
        user_id: UserId::new(buyer),
        amount: Money::new(Decimal::new(900, 2), Currency::Usd),
    };
    let (origin, method) = (&origin, common::id(&method));
    let (intent_ref, method_ref) = (&intent, &method);
    world
        .kernel
        .run(
            Metadata::origin(Uuid::now_v7(), "system:stripe-webhook"),
            |tx| {
                Box::pin(async move {
                    let mut payment = tx.load::<Payment>(intent_ref.as_str()).await?;
                    tx.decide(
                        &mut payment,
                        PaymentCommand::Succeed {
                            origin: origin.clone(),
                            payment_id: format!("ch_{intent_ref}"),
                            payment_method: Some(method_ref.clone()),
                        },
                    )?;
                    Ok(())
                })
            },
        )
        .await
        .map_err(|e: Fail<std::convert::Infallible>| format!("{e:?}"))
        .unwrap();
    let completed = world
        .run(
            order_id,
            OrderCommand::Complete {
                payment_intent_id: intent.clone(),
                payment_id: format!("ch_{intent}"),
            },
        )
        .await;
    completed[0].clone()
}

#[tokio::test]
async fn accounts_past_the_shared_card_rule_flag_and_disable_the_coupon_and_mail_its_owner() {
    let world = World::new().await;
    let usages = world.iso.function("CouponUsagesFunction").await;
    world.register_owner().await;
    let mut watched = coupon();
    watched.terms.max_uses = 10;
    watched.terms.shared_card = Some(kassa_domain::coupon::SharedCard {
        max_accounts: 2,
        disable: true,
    });
    world.create(&watched).await;
    let id = watched.coupon_id;

    // Three accounts, each within its own limit of one use, all paying with one card.
    for (n, buyer) in ["ann", "bob", "cy"].into_iter().enumerate() {
        let order = world.order_of(&watched, buyer).await;
        let paid = paid_with_card(&world, order, buyer, "4242424242424242").await;
        // Delivered twice: the account counts once.
        for _ in 0..2 {
            assert!(world.iso.deliver(&usages, &[&paid]).await.is_empty());
        }
        let expected = if n < 2 {
            CouponStatus::Active
        } else {
            CouponStatus::Disabled
        };
        assert_eq!(
            world.coupon_state(id).await.status,
            expected,
            "after {buyer}"
        );
    }
    // Another card is another count: one account, nothing to flag.
    let order = world.order_of(&watched, "dee").await;
    let paid = paid_with_card(&world, order, "dee", "5555555555554444").await;
    assert!(world.iso.deliver(&usages, &[&paid]).await.is_empty());

    let events = world.flagged_and_disabled(id).await;
    let flagged = &events[2].payload;
    assert_eq!(flagged["rule"], "shared_card");
    assert_eq!(flagged["accounts"], 3);
    assert_eq!(flagged["max_accounts"], 2);
    assert!(
        flagged["fingerprint"]
            .as_str()
            .is_some_and(|f| !f.is_empty() && !f.contains("4242")),
        "the provider's fingerprint, never the number: {flagged}"
    );
    assert_eq!(events[3].payload["by"], "system:fraud");
    for _ in 0..2 {
        assert!(world.iso.deliver(&usages, &[&events[2]]).await.is_empty());
    }
    let mails = world.owner_mails();
    assert_eq!(mails.len(), 1, "{mails:?}");
    assert!(
        mails[0].body.contains("3 accounts paid with one card"),
        "{}",
        mails[0].body
    );
}
