//! The mapping stage: from one Signal event and one integration to the exact Button
//! request, through the integration's blueprint, the catalog's adapter and the Button
//! client's request builder. Ingest, Preview and Test Event all map through here, so
//! what Preview shows is what delivery sends.

use serde_json::Value;

use crate::blueprint::{Issue, Mapped};
use crate::button::{CallKind, Client, PreparedRequest};
use crate::catalog::button;
use crate::integrations::Integration;

#[derive(Debug, Clone)]
pub enum Prepared {
    /// The integration's blueprint does not take this event.
    NotSubscribed,
    /// Kept from this destination (consent).
    Filtered { call: CallKind, reason: String },
    /// The request to send, with what to warn about (a missing `btn_ref`), and the
    /// order it creates or changes (its changes are sent in order, one at a time).
    Request {
        request: PreparedRequest,
        warnings: Vec<Issue>,
        order: Option<String>,
    },
    /// The event lacks what the request needs.
    Failed {
        call: CallKind,
        errors: Vec<Issue>,
        warnings: Vec<Issue>,
    },
}

impl Prepared {
    pub fn call(&self) -> Option<CallKind> {
        match self {
            Self::NotSubscribed => None,
            Self::Filtered { call, .. } | Self::Failed { call, .. } => Some(*call),
            Self::Request { request, .. } => Some(request.call),
        }
    }
}

pub fn prepare(integration: &Integration, client: &Client, event: &Value) -> Prepared {
    match integration.blueprint.map(event, &integration.config) {
        Mapped::NotSubscribed => Prepared::NotSubscribed,
        Mapped::Filtered { call, reason } => Prepared::Filtered { call, reason },
        Mapped::Failed {
            call,
            errors,
            warnings,
        } => Prepared::Failed {
            call,
            errors,
            warnings,
        },
        Mapped::Request {
            call,
            body,
            warnings,
        } => match button::to_call(call, body) {
            Ok(button_call) => Prepared::Request {
                request: client.prepare(&button_call),
                warnings,
                order: button_call.order_id().map(str::to_owned),
            },
            Err(errors) => Prepared::Failed {
                call,
                errors,
                warnings,
            },
        },
    }
}

/// One line for Live Logs out of a list of issues: `order_id: the event has no order
/// id; total: ...`.
pub fn summarize(issues: &[Issue]) -> String {
    issues
        .iter()
        .map(|i| format!("{}: {}", i.field, i.message))
        .collect::<Vec<_>>()
        .join("; ")
}

/// The first hint among the issues.
pub fn first_hint(issues: &[Issue]) -> Option<String> {
    issues.iter().find_map(|i| i.hint.clone())
}
