//! Each order as last delivered to Button, per integration: a partial refund is sent as
//! that order less what came back. Written when an order call is delivered, in the
//! commit that records the attempt; one order's calls are sent one at a time (see
//! [`super::queue`]), so the state a refund is computed from is the one Button has.

use super::{Store, StoreError, on_backend};
use crate::domain::IntegrationId;

/// What a delivered order call leaves at Button.
#[derive(Debug, Clone, PartialEq)]
pub enum OrderChange {
    /// Button has the order as `body` (the Order object, JSON).
    Sent { order_id: String, body: String },
    /// Button dropped the order.
    Cancelled { order_id: String },
}

impl OrderChange {
    /// The order changed.
    pub fn order_id(&self) -> &str {
        match self {
            Self::Sent { order_id, .. } | Self::Cancelled { order_id } => order_id,
        }
    }
}

impl Store {
    /// The order as last delivered to Button for the integration (the Order object,
    /// JSON), if it was.
    pub async fn order_state(
        &self,
        integration_id: &IntegrationId,
        order_id: &str,
    ) -> Result<Option<String>, StoreError> {
        on_backend!(self.backend, db => db.order_state(integration_id, order_id).await)
    }
}
