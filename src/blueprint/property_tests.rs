//! Property tests over arbitrary input: the envelope checks, the blueprint compiler and
//! interpreter (with the default Button blueprint and the catalog's typing), and money
//! parsing never panic, and every problem they report names where it is.

use proptest::prelude::*;
use serde_json::{Map, Value, json};

use super::transform::{decimal, minor_units};
use super::{Blueprint, Mapped};
use crate::catalog::button::{CALLS, DEFAULT_BLUEPRINT, to_call};

/// Any JSON value, a few levels deep, with the keys and shapes events use.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        (-1e9f64..1e9).prop_map(|f| json!(f)),
        "[a-zA-Z0-9 .:_\\-+é\u{0}]{0,12}".prop_map(Value::String),
        prop_oneof![
            Just("USD"),
            Just("JPY"),
            Just("KWD"),
            Just("XAU"),
            Just("usd"),
            Just("1e-400"),
            Just("19.995"),
            Just("2024-05-01T10:00:00Z"),
            Just("9999-12-31T00:00:00Z"),
            Just("https://shop.example/p?btn_ref=srctok-1"),
            Just("")
        ]
        .prop_map(|s| json!(s)),
    ];
    let key = prop_oneof![
        Just("order_id".to_owned()),
        Just("transaction_id".to_owned()),
        Just("revenue".to_owned()),
        Just("value".to_owned()),
        Just("total".to_owned()),
        Just("currency".to_owned()),
        Just("products".to_owned()),
        Just("items".to_owned()),
        Just("product_id".to_owned()),
        Just("price".to_owned()),
        Just("quantity".to_owned()),
        Just("page".to_owned()),
        Just("url".to_owned()),
        Just("consent".to_owned()),
        Just("canonical".to_owned()),
        Just("marketing".to_owned()),
        Just("email".to_owned()),
        "[a-z_]{1,8}",
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map(key.clone(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// An event-like object: a known or unknown name, anything in the usual places.
fn any_event() -> impl Strategy<Value = Value> {
    let name = prop_oneof![
        Just(json!("purchase")),
        Just(json!("Order Completed")),
        Just(json!("add_to_cart")),
        Just(json!("Product Viewed")),
        Just(json!("view_item")),
        Just(json!("Order Refunded")),
        Just(json!("Order Cancelled")),
        Just(json!("Order Updated")),
        any_json(),
    ];
    (
        name,
        any_json(),
        any_json(),
        any_json(),
        any_json(),
        any_json(),
    )
        .prop_map(
            |(event, properties, context, traits, timestamp, message_id)| {
                json!({"type": "track", "event": event, "messageId": message_id,
                   "timestamp": timestamp, "properties": properties,
                   "context": context, "traits": traits, "userId": "u1"})
            },
        )
}

const ENVELOPE_FIELDS: [&str; 8] = [
    "messageId",
    "type",
    "event",
    "timestamp",
    "properties",
    "context",
    "traits",
    "integrations",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn the_envelope_check_names_every_problem(event in prop_oneof![any_event(), any_json()]) {
        if let Err(errors) = crate::ingest::validate(&event) {
            prop_assert!(!errors.is_empty());
            for e in &errors {
                if event.is_object() {
                    prop_assert!(ENVELOPE_FIELDS.contains(&e.field.as_str()), "{:?}", e);
                } else {
                    prop_assert_eq!(e.field.as_str(), "");
                }
                prop_assert!(!e.message.is_empty());
            }
        }
    }

    #[test]
    fn the_default_blueprint_maps_anything_without_panic_and_names_each_problem(
        event in any_event(),
        application in prop_oneof![Just(json!("app-abc123")), any_json()],
    ) {
        let doc: Value = serde_json::from_str(DEFAULT_BLUEPRINT).unwrap();
        let blueprint = Blueprint::compile(&doc, CALLS).unwrap();
        let config = json!({"application_id": application});
        match blueprint.map(&event, &config) {
            Mapped::Failed { errors, .. } => {
                prop_assert!(!errors.is_empty());
                for e in &errors {
                    prop_assert!(!e.field.is_empty(), "{:?}", e);
                }
            }
            Mapped::Request { call, body, warnings } => {
                for w in &warnings {
                    prop_assert!(!w.field.is_empty(), "{:?}", w);
                }
                // The catalog's typing either makes a Button call or names the field.
                if let Err(issues) = to_call(call, body) {
                    for i in &issues {
                        prop_assert!(!i.field.is_empty(), "{:?}", i);
                    }
                }
            }
            Mapped::Filtered { reason, .. } => prop_assert!(!reason.is_empty()),
            Mapped::NotSubscribed => {}
        }
    }

    #[test]
    fn the_compiler_refuses_any_document_with_located_errors(doc in any_json()) {
        if let Err(errors) = Blueprint::compile(&doc, CALLS) {
            prop_assert!(!errors.is_empty());
            for e in &errors {
                prop_assert!(!e.message.is_empty(), "{:?}", e);
            }
        }
    }

    #[test]
    fn a_mangled_default_blueprint_is_refused_with_a_place(
        path in prop::collection::vec(0usize..8, 1..5),
        replacement in any_json(),
    ) {
        // Replace one node of the default blueprint with anything.
        let mut doc: Value = serde_json::from_str(DEFAULT_BLUEPRINT).unwrap();
        let mut pointer = String::new();
        let mut node = &doc;
        for step in path {
            let next = match node {
                Value::Object(map) if !map.is_empty() => {
                    let key = map.keys().nth(step % map.len()).unwrap();
                    pointer.push('/');
                    pointer.push_str(&key.replace('~', "~0").replace('/', "~1"));
                    map.get(key)
                }
                Value::Array(items) if !items.is_empty() => {
                    let at = step % items.len();
                    pointer.push_str(&format!("/{at}"));
                    items.get(at)
                }
                _ => None,
            };
            match next {
                Some(n) => node = n,
                None => break,
            }
        }
        *doc.pointer_mut(&pointer).unwrap() = replacement;
        if let Err(errors) = Blueprint::compile(&doc, CALLS) {
            for e in &errors {
                prop_assert!(!e.at.is_empty() || !e.message.is_empty(), "{:?}", e);
            }
        }
    }

    #[test]
    fn money_parsing_never_panics(text in "[-+0-9.eE]{0,40}", currency in "[A-Z]{3}") {
        if let Ok(amount) = decimal(&json!(text)) {
            let _ = minor_units(amount, &currency);
        }
    }
}
