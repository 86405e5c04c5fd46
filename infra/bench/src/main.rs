//! `kassa-bench`: how consume-credits fares against DynamoDB itself, on DynamoDB Local.
//!
//! Warm handler latency and throughput on one hot wallet, each beside a bare DynamoDB
//! baseline (the same conditional `UpdateItem`, raw) run in the same process at the same
//! time, so that what is compared is what kassa adds rather than what the machine happens
//! to do; how long a debit's event takes from commit to the bus; invoice numbering under a
//! burst against the same invoices spread out; the release binary's cold start; the flash
//! sale's reservations on one hot level against bare decrements of its counter; and the
//! concert page against bare reads of its items; a hot coupon's locks against bare
//! conditional increments of one item. Run
//! through `cargo xtask bench`, which builds it, starts the emulators and hands it their
//! environment.

mod api;
mod baseline;
mod carried;
mod cold_start;
mod concert_page;
mod flash_sale;
mod hot_coupon;
mod hot_wallet;
mod invoice_burst;
mod latency;
mod options;
mod report;
mod runtime_api;
mod sample;
mod table;
mod to_bus;
mod workspace;

use anyhow::Result;
use options::Options;
use std::process::ExitCode;

/// Invoices in each burst.
const INVOICES: usize = 100;

#[tokio::main]
async fn main() -> ExitCode {
    let options = match Options::parse(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(e) => {
            eprintln!("kassa-bench: {e:#}");
            return ExitCode::from(2);
        }
    };
    match run(&options).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kassa-bench: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(options: &Options) -> Result<()> {
    // Endpoints and credentials come from the emulator environment, as for the functions.
    let aws = kassa_runtime::config::aws().await;
    let workspace = workspace::open(&aws, &options.template).await?;
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    report::header(cores);
    println!(
        "\n(tables {} / {}, workspace {})",
        workspace.events_table, workspace.state_table, workspace.id
    );

    let latency = latency::measure(&aws, &workspace, options).await?;
    report::latency(&latency);

    // Alternating, so a slow stretch of the machine is less likely to fall on one only.
    let mut sandboxes = Vec::new();
    let mut bare = Vec::new();
    for _ in 0..2 {
        sandboxes.push(
            hot_wallet::consume(&aws, &workspace, options.consumers, options.hot_consumes).await?,
        );
        bare.push(
            hot_wallet::debit(&aws, &workspace, options.consumers, options.hot_consumes).await?,
        );
    }
    report::hot_wallet(options.consumers, options.hot_consumes, &sandboxes, &bare);

    let to_bus = to_bus::measure(&aws, &options.template, options.relay_consumes).await?;
    report::to_bus(&to_bus, options.relay_consumes);

    let (mut burst, mut spread) = (Vec::new(), Vec::new());
    for _ in 0..2 {
        let tables = (&workspace.events_table, &workspace.state_table);
        burst.push(invoice_burst::issue(&aws, tables.0, tables.1, INVOICES, true).await?);
        spread.push(invoice_burst::issue(&aws, tables.0, tables.1, INVOICES, false).await?);
    }
    report::invoice_burst(INVOICES, &burst, &spread);

    let starts =
        cold_start::measure(&options.consume_binary, &workspace, options.cold_starts).await?;
    report::cold_start(&starts, options.cold_starts);

    let sale = flash_sale::Sale::new(
        &aws,
        &workspace.events_table,
        &workspace.state_table,
        workspace.events_stream.clone(),
    )?;
    let seats = options.sale_seats as u32;
    let (mut sandboxes, mut bare) = (Vec::new(), Vec::new());
    for _ in 0..2 {
        sandboxes.push(sale.reserve(options.consumers, seats).await?);
        bare.push(sale.decrement(options.consumers, seats).await?);
    }
    let profile = sale.profile(options.profile_calls).await?;
    report::flash_sale(options.consumers, seats, &sandboxes, &bare, &profile);

    let page = concert_page::measure(&aws, &sale, options.page_calls, options.blocks).await?;
    report::concert_page(&page);

    let coupon = hot_coupon::HotCoupon::new(&sale, &aws)?;
    let uses = options.coupon_uses as u32;
    let (mut applies, mut increments) = (Vec::new(), Vec::new());
    let (mut spread, mut exact) = (Vec::new(), Vec::new());
    let (mut replayed, mut split) = (Vec::new(), Vec::new());
    for _ in 0..2 {
        applies.push(coupon.apply(options.consumers, uses).await?);
        increments.push(coupon.increment(options.consumers, uses).await?);
        spread.push(coupon.apply_spread(options.consumers, uses).await?);
        exact.push(coupon.increment_exact(options.consumers, uses).await?);
        replayed.push(coupon.replay(options.consumers, uses, true).await?);
        split.push(coupon.replay(options.consumers, uses, false).await?);
    }
    report::hot_coupon(
        options.consumers,
        uses,
        (&applies, &increments),
        &spread,
        (&exact, &replayed, &split),
    );
    println!();

    // Printed first, so the figures are there to read; then the run fails loudly.
    let oversold: i64 = sandboxes.iter().chain(&bare).map(|r| r.oversold()).sum();
    if oversold != 0 {
        anyhow::bail!("OVERSOLD: {oversold} seats held beyond capacity in the flash sale");
    }
    let over: i64 = applies
        .iter()
        .chain(&increments)
        .chain(&exact)
        .chain(&replayed)
        .chain(&split)
        .map(|r| r.oversold())
        .sum();
    if over != 0 {
        anyhow::bail!("OVER-REDEEMED: {over} coupon uses beyond the limit");
    }
    Ok(())
}
