//! What the bench prints: each measurement beside its baseline, its goal and whether the
//! goal was met.

use crate::cold_start::ColdStarts;
use crate::hot_wallet::Throughput;
use crate::latency::Latency;
use crate::sample::Sample;
use crate::table::{millis, ratio, verdict, Align, Goal, Table};
use crate::to_bus::ToBus;
use std::time::Duration;

const LATENCY_RATIO: Goal = Goal::AtMost(1.25);
const HOT_WALLET_RATIO: Goal = Goal::AtLeast(0.7);
/// Share of the sandboxes' calls answered 409, in percent.
const HOT_WALLET_CONFLICTS: Goal = Goal::AtMost(1.0);
const TO_FIRST_NEXT_MS: Goal = Goal::AtMost(20.0);
const BINARY_MIB: Goal = Goal::AtMost(8.0);

pub fn header(cores: usize) {
    println!();
    println!("kassa bench: consume-credits against DynamoDB Local");
    println!(
        "All figures come from one run on a shared machine ({cores} cores, noisy), with \
         DynamoDB Local\nand the bench on the same cores. Absolute times are DynamoDB \
         Local's, not AWS's; the\nratios, measured side by side in the same run, are \
         the figures to read."
    );
}

pub fn latency(l: &Latency) {
    println!();
    println!("1. Warm handler latency: ConsumeCredits::handle vs a bare conditional UpdateItem");
    println!(
        "   on a copy of the wallet's head: `ADD counter :delta, version :k SET carried = :json`\n   \
         if `schema = :s AND counter >= :lo AND contains(members, :user)`, UPDATED_NEW, carrying one\n   \
         credits.consumed event built per call. {} timed calls each, in {} alternating blocks,\n   \
         after {} warm-up calls each.",
        l.handler.len(),
        l.blocks,
        l.warmup
    );
    if !side_by_side(
        ("ConsumeCredits::handle (one warm instance)", &l.handler),
        ("bare conditional UpdateItem (aws-sdk-dynamodb)", &l.bare),
        "ratio handler / bare",
        Some(LATENCY_RATIO),
    ) {
        return;
    }
    println!(
        "  items the handler read during the timed calls: {} (a current cached head needs none)",
        l.handler_reads
    );
    println!(
        "  carried JSON of the last debit: handler {} bytes, bare {} bytes",
        l.handler_carried, l.bare_carried
    );
}

/// `runs` alternate sandboxes and bare clients: [sandboxes, bare, sandboxes, bare].
pub fn hot_wallet(consumers: usize, total: usize, sandboxes: &[Throughput], bare: &[Throughput]) {
    println!();
    println!(
        "2. Hot wallet: {consumers} ConsumeCredits sandboxes (one handler instance each) \
         consuming 1 credit\n   {total} times in all from ONE wallet, vs {consumers} bare \
         clients doing {total} of the conditional\n   UpdateItem of 1. on ONE copy of the \
         wallet's head (membership, floor, carried event).\n   Two runs each, alternating; \
         the ratio compares the best run of each."
    );
    let mut table = Table::new(&[
        ("", Align::Left),
        ("run", Align::Right),
        ("successes/s", Align::Right),
        ("200", Align::Right),
        ("409", Align::Right),
        ("other", Align::Right),
        ("reads", Align::Right),
        ("elapsed", Align::Right),
        ("goal", Align::Left),
        ("verdict", Align::Left),
    ]);
    let row = |table: &mut Table, who: &str, run: usize, t: &Throughput| {
        table.row([
            who.to_owned(),
            run.to_string(),
            format!("{:.0}", t.per_second()),
            t.successes.to_string(),
            t.conflicts.to_string(),
            t.others.to_string(),
            t.reads.to_string(),
            format!("{:.2} s", t.elapsed.as_secs_f64()),
        ]);
    };
    for (run, (s, b)) in sandboxes.iter().zip(bare).enumerate() {
        row(&mut table, &format!("{consumers} sandboxes"), run + 1, s);
        row(
            &mut table,
            &format!("{consumers} bare UpdateItem"),
            run + 1,
            b,
        );
    }
    let share_of_bare = best_over_best(
        sandboxes.iter().map(Throughput::per_second),
        bare.iter().map(Throughput::per_second),
    );
    table.row([
        "ratio sandboxes / bare (best of two each)".into(),
        String::new(),
        ratio(share_of_bare),
        String::new(),
        String::new(),
        String::new(),
        String::new(),
        String::new(),
        HOT_WALLET_RATIO.describe(""),
        verdict(HOT_WALLET_RATIO.met(share_of_bare)),
    ]);
    let calls: usize = sandboxes.iter().map(Throughput::calls).sum();
    let conflicts: usize = sandboxes.iter().map(|t| t.conflicts).sum();
    let conflict_percent = 100.0 * conflicts as f64 / calls.max(1) as f64;
    table.row([
        "sandbox calls answered 409 (both runs)".into(),
        String::new(),
        format!("{conflict_percent:.2} %"),
        String::new(),
        conflicts.to_string(),
        String::new(),
        String::new(),
        String::new(),
        HOT_WALLET_CONFLICTS.describe(" %"),
        verdict(calls > 0 && HOT_WALLET_CONFLICTS.met(conflict_percent)),
    ]);
    table.print();
    println!(
        "  409 = gave up after the handler's retries; reads = wallet heads the sandboxes \
         read\n  (a refused condition returns the head as it is, so retrying on it costs none)."
    );
    for (who, runs) in [("sandboxes", sandboxes), ("bare", bare)] {
        if let Some(why) = runs.iter().find_map(|t| t.first_other.as_deref()) {
            println!("  first other answer ({who}): {why}");
        }
    }
}

pub fn to_bus(b: &ToBus, consumes: usize) {
    println!();
    println!(
        "3. Commit → event on the bus: {consumes} sequential consumes on a workspace of their \
         own, each timed\n   from its 200 to its credits.consumed event on an SQS queue a \
         rule on the bus feeds\n   (DynamoDB Local stream → kassa-local's stream source → {} \
         (batch size {}),\n   which persists the carried event, then PutEvents → moto rule → \
         SQS long poll).",
        b.relay, b.batch_size
    );
    let mut table = Table::new(&[
        ("", Align::Left),
        ("events", Align::Right),
        ("p50", Align::Right),
        ("p99", Align::Right),
        ("goal", Align::Left),
    ]);
    table.row([
        "200 answer → event received from the queue".into(),
        b.latency.len().to_string(),
        figure(b.latency.median()),
        figure(b.latency.percentile(99.0)),
        "none set".into(),
    ]);
    table.print();
    println!(
        "  events that did not arrive within 30 s: {}. Locally the stream source polls an \
         idle shard\n  every 50 ms, which alone adds up to 50 ms; on AWS, Lambda polls a \
         stream shard about\n  4 times a second, so this figure is the local pipeline's, \
         not AWS's.",
        b.missing
    );
}

pub fn invoice_burst(
    count: usize,
    burst: &[crate::invoice_burst::Burst],
    spread: &[crate::invoice_burst::Burst],
) {
    println!();
    println!(
        "4. Invoice burst: {count} invoices issued at once from {} sandboxes in ONE \
         workspace (gapless\n   numbers 1..={count}, checked), vs the same {count} in \
         {count} workspaces (same code, no waiting).\n   Two runs each, alternating; the \
         ratio compares the best run of each.",
        crate::invoice_burst::SANDBOXES
    );
    let mut table = Table::new(&[
        ("", Align::Left),
        ("run", Align::Right),
        ("invoices/s", Align::Right),
        ("elapsed", Align::Right),
    ]);
    for (run, (b, s)) in burst.iter().zip(spread).enumerate() {
        for (who, t) in [("one workspace", b), ("one workspace each", s)] {
            table.row([
                who.to_owned(),
                (run + 1).to_string(),
                format!("{:.0}", t.per_second()),
                format!("{:.2} s", t.elapsed.as_secs_f64()),
            ]);
        }
    }
    let best = |runs: &[crate::invoice_burst::Burst]| {
        runs.iter()
            .map(crate::invoice_burst::Burst::per_second)
            .fold(0.0, f64::max)
    };
    let spread_best = best(spread);
    table.row([
        "ratio one workspace / one each".into(),
        String::new(),
        ratio(if spread_best > 0.0 {
            best(burst) / spread_best
        } else {
            0.0
        }),
        String::new(),
    ]);
    table.print();
}

pub fn cold_start(starts: &ColdStarts, runs: usize) {
    println!();
    println!(
        "5. Cold start of the release kassa-consume-credits binary under the bench's \
         Runtime API,\n   {runs} fresh processes, each killed after its first answer."
    );
    let mut table = Table::new(&[
        ("", Align::Left),
        ("median", Align::Right),
        ("p90", Align::Right),
        ("goal", Align::Left),
        ("verdict", Align::Left),
    ]);
    let median_ms = starts.to_next.median().map(|d| d.as_secs_f64() * 1000.0);
    table.row([
        "spawn → first `next` (init, DynamoDB client built)".into(),
        figure(starts.to_next.median()),
        figure(starts.to_next.percentile(90.0)),
        TO_FIRST_NEXT_MS.describe(" ms"),
        match median_ms {
            Some(ms) => format!("{} (median)", verdict(TO_FIRST_NEXT_MS.met(ms))),
            None => verdict(false),
        },
    ]);
    table.row([
        "spawn → first answer (one consume: read + write)".into(),
        figure(starts.to_response.median()),
        figure(starts.to_response.percentile(90.0)),
        "none set".into(),
    ]);
    let mib = starts.binary.mebibytes();
    table.row([
        format!(
            "release binary size ({})",
            if starts.binary.stripped {
                "stripped"
            } else {
                "NOT stripped"
            }
        ),
        format!("{mib:.2} MiB"),
        String::new(),
        BINARY_MIB.describe(" MiB"),
        verdict(BINARY_MIB.met(mib)),
    ]);
    table.print();
    println!(
        "  starts answered 200: {} of {runs}",
        runs - starts.failures.len()
    );
    for failure in &starts.failures {
        println!("  {failure}");
    }
}

fn figure(duration: Option<Duration>) -> String {
    duration.map(millis).unwrap_or_else(|| "none".into())
}

fn share(part: Duration, whole: Duration) -> f64 {
    part.as_secs_f64() / whole.as_secs_f64().max(f64::EPSILON)
}

const FLASH_SALE_RATIO: Goal = Goal::AtLeast(0.8);

/// Runs alternate: [sandboxes, bare, sandboxes, bare].
pub fn flash_sale(
    sandboxes_n: usize,
    seats: u32,
    sandboxes: &[crate::flash_sale::Run],
    bare: &[crate::flash_sale::Run],
    profile: &crate::flash_sale::Profile,
) {
    let orders = seats as usize + seats as usize / 10;
    println!();
    println!(
        "6. Flash sale on ONE level of {seats} seats: {sandboxes_n} reserve-tickets sandboxes \
         (SqsFunction::handle,\n   one order.created message per invocation) reserving \
         {orders} one-seat orders, vs {sandboxes_n} bare clients\n   doing {orders} of the hold's \
         conditional UpdateItem (`ADD counter -1 ... SET carried` if `counter >= 1\n   AND not \
         closed`) on ONE copy of the level's counter head. Both sell out; seats held are \
         counted\n   afterwards from what was recorded. Two runs each, alternating; the ratio \
         compares the best of each."
    );
    race(
        (
            &format!("{sandboxes_n} sandboxes"),
            &format!("{sandboxes_n} bare UpdateItem"),
        ),
        RaceColumns::SEATS,
        (sandboxes, bare),
        FLASH_SALE_RATIO,
        "  held = reservations recorded held (one seat each); refused = reservation.failed; \
         failed = messages\n  handed back for redelivery; oversold = seats held beyond \
         capacity or a counter below zero.",
    );
    println!(
        "  Recorded after each timed run, not in the ratio (the bus would hand these over \
         while the sale goes on;\n  on AWS they are written to the order's own items, which \
         scale out):"
    );
    for (i, r) in sandboxes
        .iter()
        .filter_map(|run| run.recording.as_ref())
        .enumerate()
    {
        println!(
            "    run {}: {} last holds by {} record-reservations sandboxes in {:.2} s \
             ({:.0} reservations/s), {} messages failed",
            i + 1,
            r.holds,
            r.sandboxes,
            r.elapsed.as_secs_f64(),
            r.holds as f64 / r.elapsed.as_secs_f64().max(1e-9),
            r.failed
        );
    }

    println!();
    println!(
        "   Where a reservation's time goes: one warm sandbox, {} orders one after another, \
         each beside\n   one bare decrement, on a level with seats to spare.",
        profile.reservation.len()
    );
    side_by_side(
        ("a reservation (SqsFunction::handle)", &profile.reservation),
        ("the bare hold (one UpdateItem)", &profile.bare),
        "ratio reservation / bare hold",
        None,
    );
    println!("  the DynamoDB requests one reservation sends, in order:");
    for (request, what) in crate::flash_sale::REQUESTS {
        println!("    {request:<18} {what}");
    }
    println!("  and record-reservations, for each, off the hot item:");
    for (request, what) in crate::flash_sale::RECORD_REQUESTS {
        println!("    {request:<18} {what}");
    }
}

pub fn concert_page(p: &crate::concert_page::ConcertPage) {
    println!();
    println!(
        "7. Concert page: GET /concerts/{{id}} (two levels with live availability) through \
         one warm concerts\n   handler, vs the bare reads of the same items: a consistent \
         GetItem of the concert's head, then a\n   consistent BatchGetItem of its two level \
         counters. {} timed calls each, in {} alternating blocks,\n   after {} warm-up calls \
         each.",
        p.handler.len(),
        p.blocks,
        p.warmup
    );
    side_by_side(
        ("Concerts::handle GET /concerts/{id}", &p.handler),
        ("bare GetItem + BatchGetItem", &p.bare),
        "ratio handler / bare",
        None,
    );
}

/// Two samples timed side by side, their p50 and p99, and the ratios of kassa's to the
/// baseline's, checked against `goal` when there is one. False when nothing was timed.
fn side_by_side(
    kassa: (&str, &Sample),
    bare: (&str, &Sample),
    ratio_label: &str,
    goal: Option<Goal>,
) -> bool {
    let mut table = Table::new(&[
        ("", Align::Left),
        ("calls", Align::Right),
        ("p50", Align::Right),
        ("p99", Align::Right),
        ("goal", Align::Left),
        ("verdict", Align::Left),
    ]);
    let (Some(k50), Some(k99), Some(b50), Some(b99)) = (
        kassa.1.median(),
        kassa.1.percentile(99.0),
        bare.1.median(),
        bare.1.percentile(99.0),
    ) else {
        println!("  no timings were recorded");
        return false;
    };
    for ((label, sample), (p50, p99)) in [(kassa, (k50, k99)), (bare, (b50, b99))] {
        table.row([
            label.into(),
            sample.len().to_string(),
            millis(p50),
            millis(p99),
        ]);
    }
    let (r50, r99) = (share(k50, b50), share(k99, b99));
    let (described, verdicts) = match goal {
        Some(goal) => (
            goal.describe(""),
            format!(
                "p50 {}, p99 {}",
                verdict(goal.met(r50)),
                verdict(goal.met(r99))
            ),
        ),
        None => ("none set".to_owned(), String::new()),
    };
    table.row([
        ratio_label.into(),
        String::new(),
        ratio(r50),
        ratio(r99),
        described,
        verdicts,
    ]);
    table.print();
    true
}

/// The column names of a race's table: what is held, refused and left.
pub struct RaceColumns {
    per_second: &'static str,
    held: &'static str,
    left: &'static str,
    oversold: &'static str,
}

impl RaceColumns {
    const SEATS: Self = Self {
        per_second: "held/s",
        held: "held",
        left: "free after",
        oversold: "oversold",
    };
    const USES: Self = Self {
        per_second: "locks/s",
        held: "locked",
        left: "left after",
        oversold: "over-redeemed",
    };
}

/// Handlers against bare clients racing for one hot item, runs alternating, each checked
/// for what was held beyond capacity; the ratio compares the best run of each.
fn race(
    who: (&str, &str),
    columns: RaceColumns,
    runs: (&[crate::flash_sale::Run], &[crate::flash_sale::Run]),
    goal: Goal,
    legend: &str,
) {
    let (sandboxes, bare) = runs;
    let mut table = Table::new(&[
        ("", Align::Left),
        ("run", Align::Right),
        (columns.per_second, Align::Right),
        (columns.held, Align::Right),
        ("refused", Align::Right),
        ("failed", Align::Right),
        (columns.left, Align::Right),
        (columns.oversold, Align::Right),
        ("elapsed", Align::Right),
        ("goal", Align::Left),
        ("verdict", Align::Left),
    ]);
    let row = |table: &mut Table, who: &str, run: usize, r: &crate::flash_sale::Run| {
        table.row([
            who.to_owned(),
            run.to_string(),
            format!("{:.0}", r.throughput.per_second()),
            r.held.to_string(),
            r.throughput.conflicts.to_string(),
            r.throughput.others.to_string(),
            r.free.to_string(),
            r.oversold().to_string(),
            format!("{:.2} s", r.throughput.elapsed.as_secs_f64()),
            "= 0".into(),
            verdict(r.oversold() == 0 && r.held + r.free == r.capacity),
        ]);
    };
    for (run, (s, b)) in sandboxes.iter().zip(bare).enumerate() {
        row(&mut table, who.0, run + 1, s);
        row(&mut table, who.1, run + 1, b);
    }
    let share_of_bare = best_over_best(
        sandboxes.iter().map(|r| r.throughput.per_second()),
        bare.iter().map(|r| r.throughput.per_second()),
    );
    table.row([
        "ratio sandboxes / bare (best of two each)".into(),
        String::new(),
        ratio(share_of_bare),
        String::new(),
        String::new(),
        String::new(),
        String::new(),
        String::new(),
        String::new(),
        goal.describe(""),
        verdict(goal.met(share_of_bare)),
    ]);
    table.print();
    println!("{legend}");
    for (who, runs) in [("sandboxes", sandboxes), ("bare", bare)] {
        if let Some(why) = runs
            .iter()
            .find_map(|r| r.throughput.first_other.as_deref())
        {
            println!("  first other outcome ({who}): {why}");
        }
    }
}

const HOT_COUPON_RATIO: Goal = Goal::AtLeast(0.5);

/// Runs alternate: [sandboxes, bare, sandboxes, bare].
pub fn hot_coupon(
    sandboxes_n: usize,
    uses: u32,
    (sandboxes, bare): (&[crate::flash_sale::Run], &[crate::flash_sale::Run]),
    spread: &[crate::hot_wallet::Throughput],
    (exact, replayed, split): (
        &[crate::flash_sale::Run],
        &[crate::flash_sale::Run],
        &[crate::flash_sale::Run],
    ),
) {
    let orders = uses as usize + uses as usize / 10;
    println!();
    println!(
        "8. A hot coupon of {uses} uses: {sandboxes_n} apply-coupon sandboxes \
         (HttpFunction::handle) applying it\n   to {orders} orders of {orders} buyers, vs \
         {sandboxes_n} bare clients doing {orders} of the lock's conditional\n   UpdateItem \
         (`ADD uses 1` if `uses < limit`) on ONE item. Both run out; uses are counted\n   \
         afterwards from the coupon's counter. Two runs each, alternating; the ratio \
         compares\n   the best of each."
    );
    race(
        (
            &format!("{sandboxes_n} sandboxes"),
            &format!("{sandboxes_n} bare UpdateItem"),
        ),
        RaceColumns::USES,
        (sandboxes, bare),
        HOT_COUPON_RATIO,
        "  locked = applies answered 200; refused = 422 coupon_not_applicable (no use left); \
         failed = any\n  other answer; over-redeemed = uses beyond the limit, or answers and \
         counter disagreeing.",
    );
    println!();
    println!(
        "   The same {orders} applies with no item shared: each sandbox applies a coupon of its \
         own\n   ({sandboxes_n} coupons with uses to spare). Answers per second, refusals \
         included, against the\n   hot coupon's: what sharing the one count costs."
    );
    let mut table = Table::new(&[
        ("", Align::Left),
        ("run", Align::Right),
        ("answers/s", Align::Right),
        ("locked", Align::Right),
        ("refused", Align::Right),
        ("elapsed", Align::Right),
    ]);
    let answers = |t: &crate::hot_wallet::Throughput| {
        t.calls() as f64 / t.elapsed.as_secs_f64().max(f64::EPSILON)
    };
    for (i, (hot, spread)) in sandboxes.iter().zip(spread).enumerate() {
        for (who, t) in [
            (
                format!("{sandboxes_n} sandboxes, one coupon"),
                &hot.throughput,
            ),
            (format!("{sandboxes_n} sandboxes, a coupon each"), spread),
        ] {
            table.row([
                who,
                (i + 1).to_string(),
                format!("{:.0}", answers(t)),
                t.successes.to_string(),
                t.conflicts.to_string(),
                format!("{:.2} s", t.elapsed.as_secs_f64()),
            ]);
        }
    }
    table.row([
        "ratio one coupon / a coupon each (best of two each)".to_owned(),
        String::new(),
        format!(
            "{:.2}",
            best_over_best(
                sandboxes.iter().map(|r| answers(&r.throughput)),
                spread.iter().map(answers)
            )
        ),
        String::new(),
        String::new(),
        String::new(),
    ]);
    table.print();
    println!();
    println!(
        "   The least an apply answered exactly must send, bare: {sandboxes_n} clients doing, \
         per order, a\n   consistent GetItem, a conditional ADD on an item of the buyer's \
         (their own limit), then the\n   lock's ADD on the ONE count; against the bare lock \
         alone."
    );
    bare_against_lock(
        &format!("{sandboxes_n} bare read + 2 writes"),
        "read + 2 writes",
        exact,
        (sandboxes_n, bare),
    );
    println!();
    println!(
        "   The requests one warm apply sends (listed below), replayed bare by {sandboxes_n} \
         clients with no\n   handler between them: what DynamoDB Local charges for them \
         alone (its records are\n   600 bytes, smaller than most of the apply's)."
    );
    bare_against_lock(
        &format!("{sandboxes_n} bare apply requests"),
        "replayed apply",
        replayed,
        (sandboxes_n, bare),
    );
    println!(
        "  ratio apply / its requests replayed bare (best of two each): {:.2}",
        best_over_best(
            sandboxes.iter().map(|r| r.throughput.per_second()),
            replayed.iter().map(|r| r.throughput.per_second())
        )
    );
    println!();
    println!(
        "   The same replay without the lock's transaction: the read and the take, what an \
         apply answered\n   as soon as its use is taken (the flash sale's split) would send \
         before answering, bare."
    );
    bare_against_lock(
        &format!("{sandboxes_n} bare read + take"),
        "read + take",
        split,
        (sandboxes_n, bare),
    );
    println!("  the DynamoDB requests one warm apply sends, in order:");
    for (request, what) in [
        (
            "BatchGetItem",
            "the caller's record, their refused attempts, the order, its coupon usages and the \
             coupon (its code seen before)",
        ),
        (
            "UpdateItem",
            "the take: the ONE write on the hot counter, carrying coupon.use_taken",
        ),
        (
            "TransactWriteItems",
            "order.coupon_applied + the order's head, coupon.applied + the usages' head, the \
             buyer's count, the take's marker, the audit line: all off the hot item",
        ),
    ] {
        println!("    {request:<18} {what}");
    }
}

/// `runs` of bare clients, each beside the bare lock's run of the same round, and the
/// ratio of their best.
fn bare_against_lock(
    who: &str,
    what: &str,
    runs: &[crate::flash_sale::Run],
    (clients, lock): (usize, &[crate::flash_sale::Run]),
) {
    let mut table = Table::new(&[
        ("", Align::Left),
        ("run", Align::Right),
        ("locks/s", Align::Right),
        ("locked", Align::Right),
        ("refused", Align::Right),
        ("over-redeemed", Align::Right),
        ("elapsed", Align::Right),
    ]);
    for (i, (run, lock)) in runs.iter().zip(lock).enumerate() {
        for (who, r) in [
            (who.to_owned(), run),
            (format!("{clients} bare UpdateItem"), lock),
        ] {
            table.row([
                who,
                (i + 1).to_string(),
                format!("{:.0}", r.throughput.per_second()),
                r.held.to_string(),
                r.throughput.conflicts.to_string(),
                r.oversold().to_string(),
                format!("{:.2} s", r.throughput.elapsed.as_secs_f64()),
            ]);
        }
    }
    table.row([
        format!("ratio {what} / bare lock (best of two each)"),
        String::new(),
        format!(
            "{:.2}",
            best_over_best(
                runs.iter().map(|r| r.throughput.per_second()),
                lock.iter().map(|r| r.throughput.per_second())
            )
        ),
        String::new(),
        String::new(),
        String::new(),
        String::new(),
    ]);
    table.print();
}

/// The best rate of the handler's runs over the best of the baseline's (0 without a
/// baseline): best against best, so one slow stretch of the machine counts for neither.
fn best_over_best(handler: impl Iterator<Item = f64>, bare: impl Iterator<Item = f64>) -> f64 {
    let bare = bare.fold(0.0, f64::max);
    if bare > 0.0 {
        handler.fold(0.0, f64::max) / bare
    } else {
        0.0
    }
}
