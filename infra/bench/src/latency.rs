//! Latency of one warm consume-credits handler against a bare `TransactWriteItems` of the
//! same three items: what kassa's decision, cache and commit building add to the one
//! round trip a debit cannot avoid.

use crate::api;
use crate::baseline::BareStream;
use crate::options::Options;
use crate::sample::Sample;
use crate::workspace::BenchWorkspace;
use anyhow::{bail, Result};
use kassa_consume_credits::ConsumeCredits;
use kassa_runtime::{HttpFunction, SdkConfig, SystemClock};
use kassa_store::EventStore;
use std::sync::Arc;
use std::time::Instant;

pub struct Latency {
    pub handler: Sample,
    pub bare: Sample,
    /// Items the handler read during the timed calls. A warm handler that finds its
    /// cached head current should read none: a debit is one write and no read.
    pub handler_reads: u64,
    pub blocks: usize,
    pub warmup: usize,
}

/// One warm handler, as a warm Lambda keeps one, and one client for the baseline.
struct Contenders {
    handler: ConsumeCredits,
    store: EventStore,
    bare: BareStream,
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

    async fn append(&mut self, into: Option<&mut Sample>) -> Result<()> {
        let started = Instant::now();
        self.bare.append().await?;
        if let Some(sample) = into {
            sample.record(started.elapsed());
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
    let bare = BareStream::open(
        aws_sdk_dynamodb::Client::new(aws),
        &workspace.events_table,
        workspace.id,
        &workspace.owner,
    )
    .await?;
    let mut contenders = Contenders {
        handler: ConsumeCredits::new(store.clone(), Arc::new(SystemClock)),
        store,
        bare,
        workspace: workspace.id,
        owner: workspace.owner.clone(),
    };

    // Warms the JVM's JIT, both connection pools and the handler's cached head.
    for _ in 0..options.warmup_calls {
        contenders.consume(None).await?;
        contenders.append(None).await?;
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
                    contenders.append(Some(&mut bare)).await?;
                }
            }
        }
    }
    Ok(Latency {
        handler,
        bare,
        handler_reads: contenders.store.items_read() - reads_before,
        blocks: options.blocks,
        warmup: options.warmup_calls,
    })
}
