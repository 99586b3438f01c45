//! Order states on PostgreSQL.

use super::PgStore;
use super::rows::storable;
use crate::domain::IntegrationId;
use crate::store::StoreError;
use crate::store::pack::{Kind, unpack_text};

impl PgStore {
    pub(in crate::store) async fn order_state(
        &self,
        integration_id: &IntegrationId,
        order_id: &str,
    ) -> Result<Option<String>, StoreError> {
        let stored: Option<Vec<u8>> = sqlx::query_scalar(
            "SELECT body FROM order_states WHERE integration_id = $1 AND order_id = $2",
        )
        .bind(integration_id)
        .bind(storable(order_id).as_ref())
        .fetch_optional(&self.pool)
        .await?;
        Ok(stored
            .map(|b| unpack_text(Kind::Request, b))
            .transpose()
            .map_err(|e| sqlx::Error::Decode(Box::new(e)))?)
    }
}
