//! Structured logs: JSON lines on Lambda (CloudWatch parses them), level from `RUST_LOG`.

pub fn init() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        // Lambda adds its own timestamp to every line.
        .without_time()
        .with_current_span(false)
        .with_target(false)
        .try_init();
}
