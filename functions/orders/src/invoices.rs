//! Invoices: a workspace's, to its members and operators, and one invoice to whoever it
//! bills, a member of its workspace or an operator; to anyone else it is not found rather
//! than forbidden.

use crate::Orders;
use kassa_commerce::invoicing;
use kassa_domain::identity::Role;
use kassa_domain::invoice::Invoice;
use kassa_runtime::access::{self, invoice_stream};
use kassa_runtime::http::{limit_param, uuid_param};
use kassa_runtime::{problem, Problem};
use lambda_http::Request;

impl Orders {
    pub(crate) async fn invoices(&self, request: &Request) -> Result<serde_json::Value, Problem> {
        let actor = self.caller(request).await?;
        let workspace = uuid_param(request, "workspaceId", "workspace_not_found")?;
        let limit = limit_param(request, 50, 100)?;
        let (_, ws) = access::load_admitted(&self.store, workspace, &actor).await?;
        let series = invoicing::series(Some(workspace), &ws.owner);
        let ids = self
            .invoicing
            .list(&series, limit)
            .await
            .map_err(|e| problem::store_problem(&e))?;
        if ids.is_empty() {
            return Ok(serde_json::json!({ "invoices": [] }));
        }
        let streams: Vec<_> = ids.iter().map(|id| invoice_stream(*id)).collect();
        let refs: Vec<_> = streams.iter().collect();
        let heads = self
            .store
            .load_many(&refs)
            .await
            .map_err(|e| problem::store_problem(&e))?;
        let mut invoices = Vec::new();
        for stream in &streams {
            if let Some(head) = heads.get(stream) {
                invoices.push(head.state::<Invoice>().map_err(|e| Problem::internal(&e))?);
            }
        }
        Ok(serde_json::json!({ "invoices": invoices }))
    }

    pub(crate) async fn invoice(&self, request: &Request) -> Result<Invoice, Problem> {
        let actor = self.caller(request).await?;
        let id = uuid_param(request, "invoiceId", "invoice_not_found")?;
        let not_found = || Problem::not_found("invoice_not_found", format!("no invoice {id}"));
        let head = self
            .store
            .load(&invoice_stream(id))
            .await
            .map_err(|e| problem::store_problem(&e))?
            .ok_or_else(not_found)?;
        let invoice: Invoice = head.state().map_err(|e| Problem::internal(&e))?;
        let admitted = actor.role == Role::Admin
            || invoice.user_id == actor.user
            || match invoice.workspace_id {
                Some(ws) => access::load_admitted(&self.store, ws, &actor).await.is_ok(),
                None => false,
            };
        if !admitted {
            return Err(not_found());
        }
        Ok(invoice)
    }
}
