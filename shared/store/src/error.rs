use crate::store::Head;
use aws_sdk_dynamodb::error::ProvideErrorMetadata;

/// Error codes of a DynamoDB call refused for capacity, or failed on DynamoDB's side
/// (`InternalServerError`, which AWS documents as safe to retry; DynamoDB Local also
/// answers it when a request waited too long for an item's lock under load).
const THROTTLING_CODES: [&str; 4] = [
    "ThrottlingException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "InternalServerError",
];
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
    /// A guard other than a version (a membership check, a lock, a marker) refused the
    /// commit.
    #[error("the commit was refused: {0}")]
    Refused(Refusal),
    #[error("a commit holds {0} items; DynamoDB allows at most 100 in one transaction")]
    TooManyItems(usize),
    #[error("stored data is not what kassa wrote: {0}")]
    Corrupt(String),
    /// DynamoDB refused for capacity (a throttled request, or a transaction cancelled for
    /// throttling): worth another try after a pause, unlike [`StoreError::Dynamo`].
    #[error("DynamoDB is throttling: {0}")]
    Throttled(String),
    #[error("DynamoDB: {0}")]
    Dynamo(String),
}

/// What a business guard's failure means. Every conditional item of a commit that is not a
/// stream's version names its refusal, so callers match on a type instead of a label and a
/// typo cannot silently turn a refusal into a 500.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// The caller is not in the stream's member set.
    NotMember,
    /// The message's receipt exists: it was handled before.
    AlreadyReceived,
    /// An apply-once marker exists: the effect was applied before.
    AlreadyApplied,
    /// A marker the commit builds on is missing: that effect was not applied yet.
    NotApplied,
    /// A gapless sequence moved past the number the commit read.
    SequenceMoved,
    /// The lease the commit relied on expired and was taken over.
    LeaseLost,
    /// The agenda entry is scheduled already.
    AlreadyScheduled,
    /// Another run took the agenda entry first.
    EntryTaken,
    /// The head a write without events updates does not exist.
    HeadMissing,
    /// A counter is outside the bounds a move needs (not enough seats left to release
    /// the capacity a resize takes away, say).
    OutOfBounds,
    /// A use limit was reached (a coupon's uses in all, or one user's), named here.
    LimitReached(&'static str),
    /// A name that must be unique (a coupon code) belongs to another already.
    Taken,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::NotMember => "not a member",
            Self::AlreadyReceived => "already received",
            Self::AlreadyApplied => "already applied",
            Self::NotApplied => "not applied yet",
            Self::SequenceMoved => "the sequence moved",
            Self::LeaseLost => "the lease was lost",
            Self::AlreadyScheduled => "already scheduled",
            Self::EntryTaken => "the entry was taken",
            Self::HeadMissing => "the head is missing",
            Self::OutOfBounds => "the counter is out of bounds",
            Self::LimitReached(_) => "a use limit was reached",
            Self::Taken => "the name is taken",
        })
    }
}

impl StoreError {
    pub fn is_conflict(&self) -> bool {
        matches!(self, Self::Conflict { .. })
    }

    /// A failed SDK call. Capacity errors are [`StoreError::Throttled`]: the SDK has
    /// already retried them, and the caller may still try again after a pause.
    pub fn sdk(e: impl ProvideErrorMetadata + std::error::Error) -> Self {
        match e.code() {
            Some(code) if THROTTLING_CODES.contains(&code) => Self::Throttled(code.to_owned()),
            _ => Self::dynamo(e),
        }
    }

    pub fn is_throttled(&self) -> bool {
        matches!(self, Self::Throttled(_))
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

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::error::ErrorMetadata;
    use aws_sdk_dynamodb::operation::get_item::GetItemError;

    fn failed(code: &str) -> GetItemError {
        GetItemError::generic(ErrorMetadata::builder().code(code).message("m").build())
    }

    #[test]
    fn capacity_errors_of_a_call_are_throttling() {
        for code in [
            "ThrottlingException",
            "ProvisionedThroughputExceededException",
            "RequestLimitExceeded",
        ] {
            let error = StoreError::sdk(failed(code));
            assert!(
                matches!(error, StoreError::Throttled(_)),
                "{code}: {error:?}"
            );
        }
    }

    #[test]
    fn other_errors_of_a_call_are_not() {
        let error = StoreError::sdk(failed("ValidationException"));
        assert!(matches!(error, StoreError::Dynamo(_)), "{error:?}");
    }
}
