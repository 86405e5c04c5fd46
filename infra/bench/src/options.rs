//! What one bench run measures and how much. Hand-parsed, like the xtask's flags: a
//! handful of `--name value` pairs do not justify an argument-parsing dependency.

use anyhow::{bail, Context, Result};
use std::path::PathBuf;

pub struct Options {
    /// The template whose tables the bench creates.
    pub template: PathBuf,
    /// The release `kassa-consume-credits` binary whose cold start is timed.
    pub consume_binary: PathBuf,
    pub latency_calls: usize,
    pub warmup_calls: usize,
    /// Timed calls are split into this many blocks that alternate handler and baseline,
    /// so a burst of machine noise lands on both rather than on one.
    pub blocks: usize,
    pub hot_consumes: usize,
    pub consumers: usize,
    /// Consumes timed from their answer to their event on the bus.
    pub relay_consumes: usize,
    pub cold_starts: usize,
    /// Seats of the flash sale's one hot level (the orders are a tenth more).
    pub sale_seats: usize,
    /// Reservations and bare decrements timed one at a time for the profile.
    pub profile_calls: usize,
    /// Concert page reads timed, handler and bare each.
    pub page_calls: usize,
    /// Uses of the hot coupon (the orders are a tenth more).
    pub coupon_uses: usize,
}

pub const USAGE: &str = "\
usage: kassa-bench --template PATH --consume-binary PATH [--latency-calls N]
                   [--warmup-calls N] [--blocks N] [--hot-consumes N]
                   [--consumers N] [--relay-consumes N] [--cold-starts N]
                   [--sale-seats N] [--profile-calls N] [--page-calls N]
                   [--coupon-uses N]
Run it through `cargo xtask bench`, which starts the emulators and sets their environment.";

impl Options {
    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Self> {
        let mut template = None;
        let mut consume_binary = None;
        let mut options = Self {
            template: PathBuf::new(),
            consume_binary: PathBuf::new(),
            latency_calls: 2_000,
            warmup_calls: 200,
            blocks: 10,
            hot_consumes: 1_000,
            consumers: 64,
            relay_consumes: 200,
            cold_starts: 15,
            sale_seats: 1_000,
            profile_calls: 200,
            page_calls: 400,
            coupon_uses: 1_000,
        };
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            let Some(flag) = arg.strip_prefix("--") else {
                bail!("unexpected argument `{arg}`\n{USAGE}");
            };
            let (name, value) = match flag.split_once('=') {
                Some((name, value)) => (name.to_owned(), value.to_owned()),
                None => match args.next() {
                    Some(value) => (flag.to_owned(), value),
                    None => bail!("--{flag} needs a value\n{USAGE}"),
                },
            };
            let count = || -> Result<usize> {
                match value.parse::<usize>() {
                    Ok(n) if n > 0 => Ok(n),
                    _ => bail!("--{name} `{value}` is not a positive whole number"),
                }
            };
            match name.as_str() {
                "template" => template = Some(PathBuf::from(&value)),
                "consume-binary" => consume_binary = Some(PathBuf::from(&value)),
                "latency-calls" => options.latency_calls = count()?,
                "warmup-calls" => options.warmup_calls = count()?,
                "blocks" => options.blocks = count()?,
                "hot-consumes" => options.hot_consumes = count()?,
                "consumers" => options.consumers = count()?,
                "relay-consumes" => options.relay_consumes = count()?,
                "cold-starts" => options.cold_starts = count()?,
                "sale-seats" => options.sale_seats = count()?,
                "coupon-uses" => options.coupon_uses = count()?,
                "profile-calls" => options.profile_calls = count()?,
                "page-calls" => options.page_calls = count()?,
                _ => bail!("unknown flag --{name}\n{USAGE}"),
            }
        }
        options.template = template.context("--template is required")?;
        options.consume_binary = consume_binary.context("--consume-binary is required")?;
        if options.latency_calls < options.blocks || options.page_calls < options.blocks {
            bail!("--latency-calls and --page-calls must be at least --blocks");
        }
        if u32::try_from(options.sale_seats).is_err() {
            bail!("--sale-seats is too large");
        }
        if u32::try_from(options.coupon_uses).is_err() {
            bail!("--coupon-uses is too large");
        }
        Ok(options)
    }

    /// Timed calls per block; a remainder that does not fill a block is not run.
    pub fn block_calls(&self) -> usize {
        self.latency_calls / self.blocks
    }
}
