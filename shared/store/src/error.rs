use crate::store::Head;
use crate::StreamId;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another writer moved a stream past the expected version. `current` is the head as the
    /// failed condition saw it, so a retry can decide again without reading.
    #[error("stream {stream} moved past the expected version")]
    Conflict {
        stream: StreamId,
        current: Option<Box<Head>>,
    },
    /// A guard other than a version (a membership check, a lock, a counter) refused the
    /// commit; the label says which.
    #[error("the commit was refused by `{0}`")]
    Refused(&'static str),
    #[error("a commit holds {0} items; DynamoDB allows at most 100 in one transaction")]
    TooManyItems(usize),
    #[error("stored data is not what kassa wrote: {0}")]
    Corrupt(String),
    #[error("DynamoDB: {0}")]
    Dynamo(String),
}

impl StoreError {
    pub fn is_conflict(&self) -> bool {
        matches!(self, Self::Conflict { .. })
    }

    pub fn dynamo(e: impl std::error::Error) -> Self {
        // The SDK's Display is terse ("service error"); the Debug chain names the cause.
        Self::Dynamo(format!("{e} ({:?})", aws_error_source(&e)))
    }
}

fn aws_error_source(e: &dyn std::error::Error) -> String {
    let mut out = String::new();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(&s.to_string());
        out.push_str("; ");
        cur = s.source();
    }
    out
}
