//! The Button catalog entry: its config fields and help text (from the product page),
//! its default blueprint, the Button calls a blueprint may target, and the step from a
//! blueprint's output to a typed Button call.

use serde::de::DeserializeOwned;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::{CatalogEntry, ConfigField, EventMapping, Variant};
use crate::blueprint::{CallSpec, Issue};
use crate::button::model::{Activity, Order, OrderRef, Refund, Violation};
use crate::button::{Call, CallKind, hints};

pub const KEY: &str = "button";
pub const SERVER_SIDE: &str = "server_side";

const ORDER_REQUIRED: &[&str] = &[
    "order_id",
    "total",
    "currency",
    "purchase_date",
    "line_items",
    "line_items[].identifier",
    "line_items[].total",
];
const ORDER_FIELDS: &[&str] = &[
    "order_id",
    "total",
    "currency",
    "purchase_date",
    "btn_ref",
    "customer",
    "customer.id",
    "customer.email_sha256",
    "customer.device_id",
    "customer.is_new",
    "customer_order_id",
    "finalization_date",
    "line_items",
    "line_items[].identifier",
    "line_items[].total",
    "line_items[].amount",
    "line_items[].quantity",
    "line_items[].description",
    "line_items[].sku",
    "line_items[].upc",
    "line_items[].category",
    "line_items[].attributes",
    "line_items[].attributes.*",
];
const ACTIVITY_REQUIRED: &[&str] = &[
    "application_id",
    "activity_data.products",
    "activity_data.products[].id",
];
const ACTIVITY_FIELDS: &[&str] = &[
    "application_id",
    "btn_ref",
    "session_id",
    "ifa",
    "activity_data",
    "activity_data.products",
    "activity_data.products[].id",
    "activity_data.products[].upc",
    "activity_data.products[].name",
    "activity_data.products[].currency",
    "activity_data.products[].value",
    "activity_data.products[].quantity",
    "activity_data.products[].url",
    "activity_data.products[].categories",
    "activity_data.products[].attributes",
    "activity_data.products[].attributes.*",
];

/// A Button call as blueprints know it.
const fn call(
    call: CallKind,
    required: &'static [&'static str],
    fields: &'static [&'static str],
) -> CallSpec<CallKind> {
    CallSpec {
        name: call.as_str(),
        call,
        required,
        fields,
    }
}

/// The calls a Button blueprint may map to: the Orders API's create, update (the
/// whole order as it now stands) and cancel (the order id alone), and one per activity
/// (the adapter sets `activity_data.name` from the call).
pub const CALLS: &[CallSpec<CallKind>] = &[
    call(CallKind::OrderCreate, ORDER_REQUIRED, ORDER_FIELDS),
    call(CallKind::OrderUpdate, ORDER_REQUIRED, ORDER_FIELDS),
    call(CallKind::OrderCancel, &["order_id"], &["order_id"]),
    call(
        CallKind::OrderRefund,
        &["order_id"],
        &[
            "order_id",
            "line_items",
            "line_items[].identifier",
            "line_items[].quantity",
        ],
    ),
    call(
        CallKind::ActivityAddToCart,
        ACTIVITY_REQUIRED,
        ACTIVITY_FIELDS,
    ),
    call(
        CallKind::ActivityProductViewed,
        ACTIVITY_REQUIRED,
        ACTIVITY_FIELDS,
    ),
    call(
        CallKind::ActivityCartViewed,
        ACTIVITY_REQUIRED,
        ACTIVITY_FIELDS,
    ),
];

/// The default blueprint, as written (served and stored as is, so it reads as written).
pub const DEFAULT_BLUEPRINT: &str = include_str!("button_blueprint.json");

pub fn entry() -> CatalogEntry {
    CatalogEntry {
        key: KEY,
        name: "Button",
        description: "Send conversion and commerce event data to Button for mobile commerce attribution, partnership optimisation, and revenue tracking.",
        category: "attribution",
        status: "ga",
        website: "https://www.usebutton.com",
        documentation_url: "https://developer.usebutton.com",
        config_fields: vec![
            ConfigField {
                key: "application_id",
                label: "Application ID",
                kind: "string",
                required: true,
                placeholder: "app-abc123def456",
                help_text: "Your Button application ID from Settings > Applications. It typically follows the format app-xxxxxxxxxxxxxxxx.",
                pattern: Some("^app-[0-9a-zA-Z]+$"),
            },
            ConfigField {
                key: "api_key",
                label: "API Key",
                kind: "secret",
                required: true,
                placeholder: "sk-...",
                help_text: "Your Button API key from Settings > API Keys. It authenticates all server-to-server event delivery from Signal.",
                pattern: None,
            },
        ],
        variants: vec![Variant {
            key: "default",
            name: "Default",
            description: "Server-side delivery: purchases to Button Orders, add-to-cart and product views to Button activity.",
            default_config: Map::new(),
        }],
        delivery_modes: vec![SERVER_SIDE],
        event_mappings: vec![
            EventMapping {
                signal_event: "purchase",
                destination_mapping: "Order event (POST /v1/order)",
                notes: "Requires order_id, total, currency, and line items",
            },
            EventMapping {
                signal_event: "add_to_cart",
                destination_mapping: "Add-to-cart event (activity add-to-cart)",
                notes: "Map product ID, quantity, and price",
            },
            EventMapping {
                signal_event: "product_view",
                destination_mapping: "Product view event (activity product-viewed)",
                notes: "Map product details for attribution",
            },
        ],
        default_blueprint: RawValue::from_string(DEFAULT_BLUEPRINT.to_owned())
            .expect("the default blueprint is valid JSON"),
        calls: CALLS,
    }
}

/// Turns what a blueprint produced for `call` into a Button call, checked against
/// Button's rules. Problems name the Button field.
pub fn to_call(call: CallKind, mut body: Value) -> Result<Call, Vec<Issue>> {
    let Some(activity) = call.activity() else {
        if call == CallKind::OrderCancel {
            let order: OrderRef = decode(body)?;
            check(order.violations())?;
            return Ok(Call::CancelOrder(order));
        }
        if call == CallKind::OrderRefund {
            let refund: Refund = decode(body)?;
            check(refund.violations())?;
            // Nothing listed: the whole order came back, which is a cancellation.
            return Ok(if refund.line_items.is_empty() {
                Call::CancelOrder(OrderRef {
                    order_id: refund.order_id,
                })
            } else {
                Call::RefundOrder(refund)
            });
        }
        let order: Order = decode(body)?;
        check(order.violations())?;
        return Ok(if call == CallKind::OrderUpdate {
            Call::UpdateOrder(order)
        } else {
            Call::CreateOrder(order)
        });
    };
    if let Some(data) = body.get_mut("activity_data").and_then(Value::as_object_mut) {
        data.insert("name".into(), Value::String(activity.as_str().to_owned()));
    }
    let activity: Activity = decode(body)?;
    check(activity.violations())?;
    Ok(Call::Activity(activity))
}

/// Types `body`. Most bodies fit, so the first pass reads it as it is; only one that
/// does not is read again, tracking the path, to name the field at fault (tracking
/// copies every key it passes: 13% of the request workers' time in a profile of
/// batch ingest, a quarter of their mapping).
fn decode<T: DeserializeOwned>(body: Value) -> Result<T, Vec<Issue>> {
    if let Ok(typed) = T::deserialize(&body) {
        return Ok(typed);
    }
    serde_path_to_error::deserialize(body).map_err(|e| {
        let field = e.path().to_string();
        vec![Issue {
            hint: hint_for(&field),
            message: e.into_inner().to_string(),
            field,
        }]
    })
}

fn check(violations: Vec<Violation>) -> Result<(), Vec<Issue>> {
    if violations.is_empty() {
        return Ok(());
    }
    Err(violations
        .into_iter()
        .map(|v| Issue {
            hint: hint_for(&v.field),
            field: v.field,
            message: v.message,
        })
        .collect())
}

fn hint_for(field: &str) -> Option<String> {
    match field {
        "order_id" | "total" => Some(hints::MISSING_FIELDS.to_owned()),
        "application_id" => Some(hints::WRONG_APPLICATION.to_owned()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_blueprint_compiles_against_buttons_calls() {
        let doc: Value = serde_json::from_str(DEFAULT_BLUEPRINT).unwrap();
        crate::blueprint::Blueprint::compile(&doc, CALLS).expect("default blueprint compiles");
    }

    #[test]
    fn a_blueprint_may_name_every_button_call_by_its_name() {
        let named: Vec<CallKind> = CALLS.iter().map(|c| c.call).collect();
        assert_eq!(named, CallKind::ALL);
        assert!(CALLS.iter().all(|c| c.name == c.call.as_str()));
    }

    /// A body that fits is typed in one pass; one that does not names the field at
    /// fault by its whole path, nested lists included.
    #[test]
    fn a_body_that_does_not_fit_names_the_field_at_fault() {
        let order = |line: serde_json::Value| {
            serde_json::json!({
                "order_id": "o-1", "total": 1000, "currency": "USD",
                "purchase_date": "2026-11-28T00:00:00Z",
                "line_items": [{"identifier": "a", "total": 500}, line],
            })
        };
        let Ok(Call::CreateOrder(typed)) = to_call(
            CallKind::OrderCreate,
            order(serde_json::json!({"identifier": "b", "total": 500})),
        ) else {
            panic!("a body that fits is typed")
        };
        assert_eq!(typed.line_items[1].identifier, "b");

        let wrong = [
            (
                serde_json::json!({"identifier": "b", "total": "500"}),
                "line_items[1].total",
                "invalid type",
            ),
            (
                serde_json::json!({"identifier": "b", "total": 500, "colour": "red"}),
                "line_items[1].colour",
                "unknown field `colour`",
            ),
        ];
        for (line, field, message) in wrong {
            let Err(issues) = to_call(CallKind::OrderCreate, order(line)) else {
                panic!("{field}: a body that does not fit is refused")
            };
            assert_eq!(issues.len(), 1);
            assert_eq!(issues[0].field, field);
            assert!(issues[0].message.contains(message), "{}", issues[0].message);
        }
    }

    #[test]
    fn the_activity_name_comes_from_the_call() {
        let body = serde_json::json!({"application_id": "app-1", "activity_data": {"products": [{"id": "p"}]}});
        let Ok(Call::Activity(a)) = to_call(CallKind::ActivityProductViewed, body) else {
            panic!()
        };
        assert_eq!(
            a.activity_data.name,
            crate::button::model::ActivityName::ProductViewed
        );
    }
}
