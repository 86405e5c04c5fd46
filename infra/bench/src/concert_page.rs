//! The concert page: `GET /concerts/{id}` (the concert and each level's live availability)
//! through one warm concerts handler, against the bare reads of the same items issued raw
//! in the same run: a consistent `GetItem` of the concert's head, then a consistent
//! `BatchGetItem` of its levels' counter heads. That is what the handler reads; the ratio
//! is what decoding, building the view and serializing the answer add.

use crate::api;
use crate::flash_sale::Sale;
use crate::sample::Sample;
use anyhow::{bail, ensure, Context, Result};
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes};
use aws_sdk_dynamodb::Client;
use kassa_commerce::{seats, SystemClock};
use kassa_concerts::Concerts;
use kassa_runtime::{Function, HttpFunction, SdkConfig};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

/// The page's levels: two, as the flash sale's concert has.
const LEVELS: [(&str, u32); 2] = [("floor", 500), ("balcony", 500)];

pub struct ConcertPage {
    pub handler: Sample,
    pub bare: Sample,
    pub warmup: usize,
    pub blocks: usize,
}

struct BareReads {
    client: Client,
    table: String,
    concert_pk: String,
    level_pks: Vec<String>,
}

impl BareReads {
    async fn read(&self) -> Result<()> {
        let key = |pk: &str| {
            HashMap::from([
                ("pk".to_owned(), AttributeValue::S(pk.to_owned())),
                ("sk".to_owned(), AttributeValue::N("0".to_owned())),
            ])
        };
        let concert = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(self.concert_pk.clone()))
            .key("sk", AttributeValue::N("0".to_owned()))
            .consistent_read(true)
            .send()
            .await
            .context("bare GetItem of the concert")?;
        ensure!(concert.item.is_some(), "the concert's head is missing");
        let keys = KeysAndAttributes::builder()
            .set_keys(Some(self.level_pks.iter().map(|pk| key(pk)).collect()))
            .consistent_read(true)
            .build()?;
        let levels = self
            .client
            .batch_get_item()
            .request_items(&self.table, keys)
            .send()
            .await
            .context("bare BatchGetItem of the levels")?;
        let read = levels
            .responses
            .and_then(|mut r| r.remove(&self.table))
            .map_or(0, |items| items.len());
        ensure!(read == self.level_pks.len(), "read {read} level heads");
        Ok(())
    }
}

pub async fn measure(
    aws: &SdkConfig,
    sale: &Sale,
    calls: usize,
    blocks: usize,
) -> Result<ConcertPage> {
    let concert = sale.concert(&LEVELS).await?;
    let handler = Concerts::from_config(sale.config(), aws, Arc::new(SystemClock))
        .map_err(|e| anyhow::anyhow!("building the concerts handler: {e:?}"))?;
    let bare = BareReads {
        client: Client::new(aws),
        table: sale.store().table().to_owned(),
        // The concert's head, where the handler's `load_aggregate::<Concert>` reads.
        concert_pk: kassa_store::StreamId::new("Concert", concert.to_string())
            .as_str()
            .to_owned(),
        level_pks: LEVELS
            .iter()
            .map(|(level, _)| seats::level_stream(concert, level).as_str().to_owned())
            .collect(),
    };
    let page = || async {
        // Built outside the timing, as the runtime parses the event before the handler.
        let request = api::concert_page(concert)?;
        let started = Instant::now();
        let response = handler.handle(request).await;
        let took = started.elapsed();
        if response.status() != 200 {
            bail!("the concert page answered {}", api::describe(&response));
        }
        anyhow::Ok(took)
    };
    let raw = || async {
        let started = Instant::now();
        bare.read().await?;
        anyhow::Ok(started.elapsed())
    };
    // The answer has both levels with their availability: the page is the one measured.
    let first = handler.handle(api::concert_page(concert)?).await;
    let body: serde_json::Value = serde_json::from_str(&api::body(&first))?;
    ensure!(
        body["levels"].as_array().map(Vec::len) == Some(LEVELS.len())
            && body["levels"][0]["available"].as_u64().is_some(),
        "the concert page has no levels with availability: {body}"
    );

    let warmup = (calls / 4).max(20);
    for _ in 0..warmup {
        page().await?;
        raw().await?;
    }
    let mut result = ConcertPage {
        handler: Sample::default(),
        bare: Sample::default(),
        warmup,
        blocks,
    };
    let per_block = (calls / blocks).max(1);
    for block in 0..blocks {
        let handler_first = block % 2 == 0;
        for turn in [handler_first, !handler_first] {
            for _ in 0..per_block {
                if turn {
                    result.handler.record(page().await?);
                } else {
                    result.bare.record(raw().await?);
                }
            }
        }
    }
    Ok(result)
}
