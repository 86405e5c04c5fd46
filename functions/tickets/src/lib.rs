//! GET /tickets.

use kassa_commerce::{Clock, Kernel};
use kassa_runtime::function::StartError;
use kassa_runtime::http::respond;
use kassa_runtime::{caller, Config, Function, HttpFunction, Problem, SdkConfig};
use kassa_store::EventStore;
use lambda_http::{Body, Request, Response};
use std::sync::Arc;

pub struct Tickets {
    kernel: Kernel,
}

impl Function for Tickets {
    fn from_config(config: &Config, aws: &SdkConfig, clock: Arc<dyn Clock>) -> Result<Self, StartError> {
        let client = aws_sdk_dynamodb::Client::new(aws);
        Ok(Self {
            kernel: Kernel::new(EventStore::new(client, &config.events_table), clock),
        })
    }
}

impl HttpFunction for Tickets {
    async fn handle(&self, request: Request) -> Response<Body> {
        respond(self.serve(&request).await)
    }
}

impl Tickets {
    async fn serve(&self, request: &Request) -> Result<Response<Body>, Problem> {
        let _actor = caller(request)?;
        let _ = &self.kernel;
        Err(Problem::new(501, "not_implemented", "GET /tickets is not implemented yet"))
    }
}
