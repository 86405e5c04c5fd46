//! Reading typed values out of DynamoDB items.

use crate::error::StoreError;
use aws_sdk_dynamodb::types::AttributeValue;
use std::collections::HashMap;

pub(crate) type Item = HashMap<String, AttributeValue>;

pub(crate) fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

pub(crate) fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

pub(crate) fn get_s<'a>(item: &'a Item, name: &str) -> Result<&'a str, StoreError> {
    match item.get(name) {
        Some(AttributeValue::S(v)) => Ok(v),
        _ => Err(StoreError::Corrupt(format!(
            "attribute `{name}` is not a string"
        ))),
    }
}

pub(crate) fn get_u64(item: &Item, name: &str) -> Result<u64, StoreError> {
    match item.get(name) {
        Some(AttributeValue::N(v)) => v
            .parse()
            .map_err(|_| StoreError::Corrupt(format!("attribute `{name}` is not a u64: {v}"))),
        _ => Err(StoreError::Corrupt(format!(
            "attribute `{name}` is not a number"
        ))),
    }
}

pub(crate) fn get_json<T: serde::de::DeserializeOwned>(
    item: &Item,
    name: &str,
) -> Result<T, StoreError> {
    serde_json::from_str(get_s(item, name)?)
        .map_err(|e| StoreError::Corrupt(format!("attribute `{name}` is not valid JSON: {e}")))
}

/// Every item a query matches, following its pages with the SDK's own paginator.
pub(crate) async fn query_all<T>(
    query: aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder,
    parse: impl Fn(&Item) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    let mut items = query.into_paginator().items().send();
    let mut out = Vec::new();
    while let Some(item) = items.next().await {
        out.push(parse(&item.map_err(StoreError::sdk)?)?);
    }
    Ok(out)
}
