//! A partial refund is sent as the order as last delivered to Button, less what came
//! back. It is computed when it is sent, not when the event arrives: one order's calls
//! go one at a time (the queue holds a change until the one before it is delivered),
//! so the order read here is the one Button has, whatever came before it.

use std::time::Duration;

use crate::button::model::{Order, Refund};
use crate::button::{Attempt, Call, CallKind, Classification, Client, PreparedRequest, hints};
use crate::domain::IntegrationId;
use crate::store::Store;
use crate::store::orders::OrderChange;

/// The request to send for a stored one, and, when it cannot be sent, the attempt that
/// stands for it. A partial refund becomes an update of the order as Button has it
/// (see [`update_for`]); every other request goes as stored.
pub async fn resolve(
    store: &Store,
    client: &Client,
    integration_id: &IntegrationId,
    request: PreparedRequest,
) -> (PreparedRequest, Option<Attempt>) {
    if request.call != CallKind::OrderRefund {
        return (request, None);
    }
    match update_for(store, client, integration_id, &request).await {
        Ok(update) => (update, None),
        Err(unsent) => (request, Some(unsent)),
    }
}

/// The request to send for a stored `order.refund`: an update of the order as last
/// delivered, less the refund (a cancel when nothing is left). `Err` is the attempt
/// that stands for it when it cannot be sent: terminal when the refund does not fit
/// the order (or Button never had it), retryable when the store could not be read.
async fn update_for(
    store: &Store,
    client: &Client,
    integration_id: &IntegrationId,
    request: &PreparedRequest,
) -> Result<PreparedRequest, Attempt> {
    let refund: Refund = serde_json::from_slice(&request.body)
        .map_err(|e| refused(format!("the stored refund cannot be read: {e}"), None))?;
    let state = store
        .order_state(integration_id, &refund.order_id)
        .await
        .map_err(|e| Attempt {
            classification: Classification::Retryable { retry_after: None },
            ..refused(format!("cannot read the order's last state: {e}"), None)
        })?;
    let Some(state) = state else {
        return Err(refused(
            format!(
                "order {} is not at Button (it was never delivered to Button, or was cancelled), so there is nothing to refund from",
                refund.order_id
            ),
            Some(hints::REFUND_UNSENT),
        ));
    };
    let order: Order = serde_json::from_str(&state)
        .map_err(|e| refused(format!("the order's last state cannot be read: {e}"), None))?;
    let now = order
        .less(&refund)
        .map_err(|why| refused(why, Some(hints::REFUND_MISMATCH)))?;
    let call = if now.line_items.is_empty() {
        Call::CancelOrder(crate::button::model::OrderRef {
            order_id: now.order_id,
        })
    } else {
        Call::UpdateOrder(now)
    };
    Ok(client.prepare(&call))
}

/// An attempt that was never sent, failing with `error`.
fn refused(error: String, hint: Option<&'static str>) -> Attempt {
    Attempt {
        classification: Classification::Terminal,
        status: None,
        latency: Duration::ZERO,
        headers: Vec::new(),
        body: String::new(),
        truncated: false,
        error: Some(error),
        hint,
    }
}

/// What a delivered order call leaves at Button, for the refunds after it.
pub fn order_change(order_key: Option<&str>, request: &PreparedRequest) -> Option<OrderChange> {
    let order_id = order_key?.to_owned();
    match request.call {
        CallKind::OrderCreate | CallKind::OrderUpdate => Some(OrderChange::Sent {
            order_id,
            body: String::from_utf8_lossy(&request.body).into_owned(),
        }),
        CallKind::OrderCancel => Some(OrderChange::Cancelled { order_id }),
        _ => None,
    }
}
