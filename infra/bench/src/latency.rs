//! Latency of one warm consume-credits handler against a bare conditional `UpdateItem` of
//! the same shape on a head like the wallet's: what kassa's decision, cache and request
//! building add to the one round trip a debit cannot avoid.

use crate::api;
use crate::baseline::{self, BareHead, Debit};
use crate::options::Options;
use crate::sample::Sample;
use crate::workspace::BenchWorkspace;
use anyhow::{bail, Result};
use kassa_commerce::SystemClock;
use kassa_consume_credits::ConsumeCredits;
use kassa_runtime::{HttpFunction, SdkConfig};
use kassa_store::EventStore;
use std::sync::Arc;
use std::time::Instant;

pub struct Latency {
    pub handler: Sample,
    pub bare: Sample,
    /// Items the handler read during the timed calls. A warm handler that finds its
    /// cached head current should read none: a debit is one write and no read.
    pub handler_reads: u64,
    /// Bytes of JSON the last debit of each carried on its head.
    pub handler_carried: usize,
    pub bare_carried: usize,
    pub blocks: usize,
    pub warmup: usize,
}

/// One warm handler, as a warm Lambda keeps one, and one client for the baseline.
struct Contenders {
    handler: ConsumeCredits,
    store: EventStore,
    bare: BareHead,
    workspace: uuid::Uuid,
    owner: String,
}

impl Contenders {
    async fn consume(&self, into: Option<&mut Sample>) -> Result<()> {
        // Built outside the timing: on Lambda the runtime has parsed the event before the
        // handler runs.
        let request = api::consume(self.workspace, &self.owner)?;
        let started = Instant::now();
        let response = self.handler.handle(request).await;
        let took = started.elapsed();
        if response.status() != 200 {
            bail!("a consume answered {}", api::describe(&response));
        }
        if let Some(sample) = into {
            sample.record(took);
        }
        Ok(())
    }

    async fn debit(&self, into: Option<&mut Sample>) -> Result<()> {
        let started = Instant::now();
        let debit = self.bare.debit(1).await?;
        let took = started.elapsed();
        if let Debit::Refused = debit {
            bail!("the bare head refused a debit");
        }
        if let Some(sample) = into {
            sample.record(took);
        }
        Ok(())
    }
}

pub async fn measure(
    aws: &SdkConfig,
    workspace: &BenchWorkspace,
    options: &Options,
) -> Result<Latency> {
    let store = EventStore::new(aws_sdk_dynamodb::Client::new(aws), &workspace.events_table);
    let handler = ConsumeCredits::new(store.clone(), Arc::new(SystemClock));
    // One debit first, so the head the baseline copies is one a debit has written (of
    // the current schema, with its member set), as every later debit finds it.
    let first = handler
        .handle(api::consume(workspace.id, &workspace.owner)?)
        .await;
    if first.status() != 200 {
        bail!("the first consume answered {}", api::describe(&first));
    }
    let bare = BareHead::copy(
        aws_sdk_dynamodb::Client::new(aws),
        &workspace.events_table,
        &workspace.wallet_pk(),
        &workspace.owner,
        workspace.id,
    )
    .await?;
    let contenders = Contenders {
        handler,
        store,
        bare,
        workspace: workspace.id,
        owner: workspace.owner.clone(),
    };

    // Warms the JVM's JIT, both connection pools and the handler's cached head.
    for _ in 0..options.warmup_calls {
        contenders.consume(None).await?;
        contenders.debit(None).await?;
    }

    let mut handler = Sample::default();
    let mut bare = Sample::default();
    let reads_before = contenders.store.items_read();
    for block in 0..options.blocks {
        // Alternating which goes first too, so neither always follows the other's tail.
        let handler_first = block % 2 == 0;
        for turn in [handler_first, !handler_first] {
            for _ in 0..options.block_calls() {
                if turn {
                    contenders.consume(Some(&mut handler)).await?;
                } else {
                    contenders.debit(Some(&mut bare)).await?;
                }
            }
        }
    }
    let handler_reads = contenders.store.items_read() - reads_before;
    let client = aws_sdk_dynamodb::Client::new(aws);
    let table = &workspace.events_table;
    Ok(Latency {
        handler,
        bare,
        handler_reads,
        handler_carried: baseline::carried_bytes(&client, table, &workspace.wallet_pk()).await?,
        bare_carried: baseline::carried_bytes(&client, table, contenders.bare.pk()).await?,
        blocks: options.blocks,
        warmup: options.warmup_calls,
    })
}
