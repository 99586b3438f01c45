use serde_json::{Value, json};

use super::*;

const CALLS: &[CallSpec<&str>] = &[CallSpec {
    name: "thing.create",
    call: "thing.create",
    required: &["id", "lines", "lines[].sku"],
    fields: &[
        "id",
        "amount",
        "who",
        "who.email",
        "lines",
        "lines[].sku",
        "lines[].total",
        "tags",
        "meta",
        "meta.*",
        "note",
    ],
}];

fn minimal() -> Value {
    json!({
        "version": 1,
        "mappings": [{
            "name": "thing",
            "events": ["purchase", "order_completed"],
            "call": "thing.create",
            "fields": [
                {"to": "id", "from": ["event.properties.order_id", "event.properties.transaction_id"], "transform": ["string"],
                 "required": {"message": "no order id", "hint": "map order_id"}},
                {"to": "lines", "each": ["event.properties.products", "event.properties.items"], "fields": [
                    {"to": "sku", "from": ["item.sku", "item.item_id"], "required": true},
                    {"to": "total", "from": "item.price", "transform": [
                        {"multiply": {"from": "item.quantity", "default": 1}},
                        {"minor_units": {"currency": "event.properties.currency"}}]}
                ]}
            ]
        }]
    })
}

fn compile(doc: Value) -> Blueprint<&'static str> {
    Blueprint::compile(&doc, CALLS).expect("blueprint compiles")
}

fn errors(doc: Value) -> Vec<BlueprintError> {
    Blueprint::compile(&doc, CALLS).expect_err("blueprint must be refused")
}

fn map(bp: &Blueprint<&'static str>, event: Value) -> Mapped<&'static str> {
    bp.map(&event, &json!({"application_id": "app-1"}))
}

#[test]
fn maps_an_event_through_fallbacks_and_transforms() {
    let bp = compile(minimal());
    let out = map(
        &bp,
        json!({
            "type": "track", "event": "order_completed",
            "properties": {"transaction_id": 42, "currency": "USD",
                           "items": [{"item_id": "a", "price": 19.99, "quantity": 3}, {"sku": "b", "price": "0.10"}]}
        }),
    );
    assert_eq!(
        out,
        Mapped::Request {
            call: "thing.create",
            body: json!({"id": "42", "lines": [{"sku": "a", "total": 5997}, {"sku": "b", "total": 10}]}),
            warnings: vec![],
        }
    );
}

#[test]
fn unsubscribed_and_non_track_events_are_not_mapped() {
    let bp = compile(minimal());
    assert_eq!(
        map(&bp, json!({"type": "track", "event": "page_view"})),
        Mapped::NotSubscribed
    );
    assert_eq!(
        map(&bp, json!({"type": "identify", "event": "purchase"})),
        Mapped::NotSubscribed
    );
    for name in ["purchase", "order_completed"] {
        assert!(
            matches!(
                map(&bp, json!({"type": "track", "event": name})),
                Mapped::Failed { .. }
            ),
            "{name} is taken (and fails: it carries nothing to map)"
        );
    }
}

#[test]
fn missing_required_fields_are_reported_with_message_and_hint() {
    let bp = compile(minimal());
    let out = map(
        &bp,
        json!({"event": "purchase", "properties": {"currency": "USD", "products": [{"price": 1}]}}),
    );
    let Mapped::Failed { errors, .. } = out else {
        panic!("expected a failure, got {out:?}")
    };
    assert_eq!(
        errors,
        vec![
            Issue {
                field: "id".into(),
                message: "no order id".into(),
                hint: Some("map order_id".into())
            },
            Issue {
                field: "lines[0].sku".into(),
                message: "is required but missing from the event".into(),
                hint: None
            },
        ]
    );
}

#[test]
fn empty_strings_nulls_and_empty_lists_count_as_missing() {
    let bp = compile(minimal());
    let out = map(
        &bp,
        json!({"event": "purchase", "properties": {
        "order_id": "", "transaction_id": "t-1", "currency": "EUR", "products": [], "items": [{"sku": "s", "price": null}]}}),
    );
    let Mapped::Request { body, .. } = out else {
        panic!("{out:?}")
    };
    assert_eq!(body, json!({"id": "t-1", "lines": [{"sku": "s"}]}));
}

#[test]
fn transform_errors_name_the_destination_field() {
    let bp = compile(minimal());
    let out = map(
        &bp,
        json!({"event": "purchase", "properties": {
        "order_id": "o", "currency": "ZZZ", "products": [{"sku": "s", "price": 1}]}}),
    );
    let Mapped::Failed { errors, .. } = out else {
        panic!("{out:?}")
    };
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].field, "lines[0].total");
    assert!(
        errors[0].message.contains("ISO 4217"),
        "{}",
        errors[0].message
    );
}

#[test]
fn consent_false_filters_and_absent_consent_sends() {
    let mut doc = minimal();
    doc["consent"] = json!({"from": "event.context.consent.canonical.marketing"});
    let bp = compile(doc);
    let event = |consent: Value| {
        json!({"event": "purchase", "context": consent,
               "properties": {"order_id": "o", "currency": "USD", "products": [{"sku": "s", "price": 1}]}})
    };
    assert!(matches!(
        map(
            &bp,
            event(json!({"consent": {"canonical": {"marketing": false}}}))
        ),
        Mapped::Filtered { .. }
    ));
    assert!(matches!(map(&bp, event(json!({}))), Mapped::Request { .. }));
    assert!(matches!(
        map(
            &bp,
            event(json!({"consent": {"canonical": {"marketing": true}}}))
        ),
        Mapped::Request { .. }
    ));
    // Spelled values: a clear yes sends, a no or anything unclear is kept back.
    for (value, sends) in [
        (json!("true"), true),
        (json!("Yes"), true),
        (json!("granted"), true),
        (json!(1), true),
        (json!(null), true),
        (json!("false"), false),
        (json!("no"), false),
        (json!("denied"), false),
        (json!(0), false),
        (json!("maybe"), false),
        // An empty string reads as absent, as everywhere in blueprints.
        (json!(""), true),
        (json!(2), false),
        (json!({"marketing": true}), false),
    ] {
        let mapped = map(
            &bp,
            event(json!({"consent": {"canonical": {"marketing": value.clone()}}})),
        );
        match mapped {
            Mapped::Request { .. } => assert!(sends, "{value} must not send"),
            Mapped::Filtered { reason, .. } => {
                assert!(!sends, "{value} must send: {reason}");
                assert!(reason.contains(&value.to_string()), "{reason}");
            }
            other => panic!("{value}: {other:?}"),
        }
    }
}

#[test]
fn literals_defaults_collections_and_warnings() {
    let doc = json!({"version": 1, "mappings": [{"name": "t", "events": ["e"], "call": "thing.create", "fields": [
        {"to": "id", "from": "'fixed'"},
        {"to": "note", "value": null},
        {"to": "who.email", "from": "event.traits.email", "transform": ["sha256_email"],
         "warn_if_missing": {"message": "no email", "hint": "send traits.email"}},
        {"to": "tags", "from": [{"all": ["event.properties.c1", "event.properties.c2", "event.properties.c3"]}, "event.properties.category"],
         "transform": ["array"]},
        {"to": "meta.source", "value": "signal"},
        {"to": "amount", "from": {"from": "event.properties.total", "transform": [{"subtract": ["event.properties.tax", "event.properties.shipping"]}]},
         "transform": [{"minor_units": {"currency": "'JPY'"}}]},
        {"to": "lines", "each": {"from": "event.properties", "transform": ["array"]}, "fields": [{"to": "sku", "from": "item.sku"}]}
    ]}]});
    let bp = compile(doc);
    let out = map(
        &bp,
        json!({"event": "e", "properties": {"c1": "A", "c3": "C", "total": "1000.4", "tax": 100, "sku": "x"}}),
    );
    assert_eq!(
        out,
        Mapped::Request {
            call: "thing.create",
            body: json!({"id": "fixed", "note": null, "tags": ["A", "C"], "meta": {"source": "signal"},
                         "amount": 900, "lines": [{"sku": "x"}]}),
            warnings: vec![Issue {
                field: "who.email".into(),
                message: "no email".into(),
                hint: Some("send traits.email".into())
            }],
        }
    );
    let out = map(
        &bp,
        json!({"event": "e", "properties": {"category": "Shoes", "sku": "x"}}),
    );
    let Mapped::Request { body, .. } = out else {
        panic!("{out:?}")
    };
    assert_eq!(body["tags"], json!(["Shoes"]));
}

#[test]
fn bad_blueprints_are_refused_with_a_pointer_to_each_offending_entry() {
    let mut doc = minimal();
    doc["mappings"][0]["fields"][0]["transform"] = json!(["string", "reverse"]);
    doc["mappings"][0]["fields"][1]["fields"][0]["from"] = json!("properties.sku");
    let errs = errors(doc);
    let at: Vec<&str> = errs.iter().map(|e| e.at.as_str()).collect();
    assert_eq!(
        at,
        [
            "mappings[0].fields[0].transform[1]",
            "mappings[0].fields[1].fields[0].from"
        ],
        "{errs:?}"
    );
    assert!(errs[0].message.contains("unknown transform \"reverse\""));
    assert!(errs[1].message.contains("must start with event."));
}

#[test]
fn a_mapping_that_cannot_produce_the_calls_required_fields_is_refused() {
    let mut doc = minimal();
    doc["mappings"][0]["fields"]
        .as_array_mut()
        .unwrap()
        .remove(0);
    let errs = errors(doc);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0].at, "mappings[0].fields");
    assert!(
        errs[0].message.contains("needs the field \"id\""),
        "{}",
        errs[0].message
    );
}

#[test]
fn structural_mistakes_are_each_reported() {
    let doc = json!({"version": 2, "extra": 1, "mappings": [
        {"name": "a", "events": ["x"], "call": "nope", "fields": []},
        {"name": "a", "events": ["x"], "call": "thing.create", "fields": [
            {"to": "id", "from": "event.a", "value": 1},
            {"to": "unknown_field", "from": "event.a"},
            {"to": "lines", "each": "event.p", "fields": [{"to": "sku", "from": "item.s"}]},
            {"to": "id", "from": "item.x"},
            {"to": "amount", "from": "event.a", "transform": [{"minor_units": {}}, {"upper": 1}, 7]}
        ]}
    ]});
    let errs = errors(doc);
    let has = |at: &str, text: &str| errs.iter().any(|e| e.at == at && e.message.contains(text));
    assert!(has("extra", "unknown key"), "{errs:#?}");
    assert!(has("version", "must be 1"), "{errs:#?}");
    assert!(
        has("mappings[0].call", "\"nope\" is not a call"),
        "{errs:#?}"
    );
    assert!(
        has("mappings[1].name", "name of another mapping"),
        "{errs:#?}"
    );
    assert!(
        has("mappings[1].events", "already taken by mappings[0]"),
        "{errs:#?}"
    );
    assert!(
        has(
            "mappings[1].fields[0]",
            "exactly one of from, value or each"
        ),
        "{errs:#?}"
    );
    assert!(
        has("mappings[1].fields[3].from", "only inside each"),
        "{errs:#?}"
    );
    assert!(
        has(
            "mappings[1].fields[4].transform[0].minor_units.currency",
            "is required"
        ),
        "{errs:#?}"
    );
    assert!(
        has("mappings[1].fields[4].transform[1]", "takes no argument"),
        "{errs:#?}"
    );
    assert!(
        has(
            "mappings[1].fields[4].transform[2]",
            "must be a transform name"
        ),
        "{errs:#?}"
    );
    assert!(
        has("mappings[1].fields", "has no field \"unknown_field\""),
        "{errs:#?}"
    );
}

#[test]
fn non_object_documents_are_refused() {
    let errs = errors(json!([1, 2]));
    assert_eq!(errs[0].at, "");
    assert!(errs[0].message.contains("must be an object"));
}
