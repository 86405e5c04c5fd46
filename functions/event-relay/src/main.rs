#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    kassa_runtime::run_stream::<kassa_event_relay::EventRelay>().await
}
