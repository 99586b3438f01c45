//! Evaluation: what `Blueprint::map` does to each event. It runs on every delivery
//! and trusts the compiled blueprint, so it only reports what the event lacks.

use std::borrow::Cow;

use serde_json::{Map, Value};

use super::language::{Field, FieldValue, Report, Source, Transform};
use super::path::Scope;
use super::{Blueprint, Issue, Mapped, event_name, transform};

pub(super) fn map<C: Copy>(blueprint: &Blueprint<C>, event: &Value, config: &Value) -> Mapped<C> {
    let Some(mapping) = event_name(event)
        .and_then(|name| blueprint.by_event.get(name))
        .map(|&i| &blueprint.mappings[i])
    else {
        return Mapped::NotSubscribed;
    };
    let scope = Scope {
        event,
        config,
        item: None,
    };
    let call = mapping.call;
    if let Some(consent) = &blueprint.consent {
        let value = eval(consent, &scope).ok().flatten();
        if let Some(reason) = consent_refusal(value.as_deref()) {
            return Mapped::Filtered { call, reason };
        }
    }
    let mut out = Map::new();
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    build(
        &mapping.fields,
        &scope,
        &String::new,
        &mut out,
        &mut errors,
        &mut warnings,
    );
    if errors.is_empty() {
        Mapped::Request {
            call,
            body: Value::Object(out),
            warnings,
        }
    } else {
        Mapped::Failed {
            call,
            errors,
            warnings,
        }
    }
}

fn present(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        _ => true,
    }
}

/// Builds `fields` into `out`. `prefix` makes the name of the enclosing list element
/// (`line_items[2].`), only when there is something to report.
fn build(
    fields: &[Field],
    scope: &Scope<'_>,
    prefix: &dyn Fn() -> String,
    out: &mut Map<String, Value>,
    errors: &mut Vec<Issue>,
    warnings: &mut Vec<Issue>,
) {
    for field in fields {
        let name = || format!("{}{}", prefix(), field.name);
        let value = match &field.value {
            FieldValue::Source(source) => eval(source, scope).map(|v| v.map(Cow::into_owned)),
            FieldValue::Each { over, fields } => each(over, fields, scope, &name, errors, warnings),
        };
        match value {
            Ok(Some(v)) => set(out, &field.to, v),
            Ok(None) => {
                if let Some(r) = &field.warn {
                    warnings.push(r.issue(&name()));
                }
                match (&field.default, &field.required) {
                    (Some(d), _) => set(out, &field.to, d.clone()),
                    (None, Some(r)) => errors.push(r.issue(&name())),
                    (None, None) => {}
                }
            }
            Err(message) => errors.push(Issue {
                field: name(),
                message,
                hint: field.required.as_ref().and_then(|r| r.hint.clone()),
            }),
        }
    }
}

/// Why a consent value keeps the event from the destination, if it does. Consent is
/// given by `true`, `"true"`, `"yes"`, `"granted"` or `1` (any case), refused by
/// `false`, `"false"`, `"no"`, `"denied"` or `0`; absent (or null) sends, as Signal's
/// default is. Anything else is not a clear yes, so the event is kept back.
pub(super) fn consent_refusal(value: Option<&Value>) -> Option<String> {
    let given = match value {
        None | Some(Value::Null) => return None,
        Some(Value::Bool(b)) => Some(*b),
        Some(Value::String(s)) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" | "granted" | "1" => Some(true),
            "false" | "no" | "denied" | "0" => Some(false),
            _ => None,
        },
        Some(Value::Number(n)) => match n.to_string().as_str() {
            "1" => Some(true),
            "0" => Some(false),
            _ => None,
        },
        Some(_) => None,
    };
    match given {
        Some(true) => None,
        Some(false) => Some(format!(
            "no marketing consent: the consent flag is {}",
            value.map(Value::to_string).unwrap_or_default()
        )),
        None => Some(format!(
            "marketing consent {} is not a clear yes (true, \"yes\", \"granted\" or 1), so the event is kept from this destination",
            value.map(Value::to_string).unwrap_or_default()
        )),
    }
}

fn each(
    over: &Source,
    fields: &[Field],
    scope: &Scope<'_>,
    name: &dyn Fn() -> String,
    errors: &mut Vec<Issue>,
    warnings: &mut Vec<Issue>,
) -> Result<Option<Value>, String> {
    let list = match eval(over, scope)? {
        None => return Ok(None),
        Some(list) => list,
    };
    let Value::Array(list) = list.as_ref() else {
        return Err(format!(
            "expected a list to map, found {}",
            transform::kind(&list)
        ));
    };
    let mut items = Vec::with_capacity(list.len());
    for (i, element) in list.iter().enumerate() {
        let inner = Scope {
            event: scope.event,
            config: scope.config,
            item: Some(element),
        };
        let mut obj = Map::new();
        let prefix = || format!("{}[{i}].", name());
        build(fields, &inner, &prefix, &mut obj, errors, warnings);
        items.push(Value::Object(obj));
    }
    Ok((!items.is_empty()).then_some(Value::Array(items)))
}

fn set(out: &mut Map<String, Value>, to: &[String], value: Value) {
    let (last, parents) = to.split_last().expect("a destination path has a segment");
    let mut node = out;
    for key in parents {
        if !node.get(key).is_some_and(Value::is_object) {
            node.insert(key.clone(), Value::Object(Map::new()));
        }
        node = node
            .get_mut(key)
            .and_then(Value::as_object_mut)
            .expect("made an object above");
    }
    node.insert(last.clone(), value);
}

impl Report {
    fn issue(&self, field: &str) -> Issue {
        Issue {
            field: field.to_owned(),
            message: self.message.clone(),
            hint: self.hint.clone(),
        }
    }
}

/// Evaluates a source: `Ok(None)` when missing. What is read from the event or the
/// blueprint is borrowed, not copied, until a transform makes something new or the
/// value is placed in the request.
fn eval<'a>(source: &'a Source, scope: &Scope<'a>) -> Result<Option<Cow<'a, Value>>, String> {
    match source {
        Source::Path(p) => Ok(p.lookup(scope).filter(|v| present(v)).map(Cow::Borrowed)),
        Source::Literal(v) => Ok(Some(Cow::Borrowed(v))),
        Source::First(list) => {
            for s in list {
                if let Some(v) = eval(s, scope)? {
                    return Ok(Some(v));
                }
            }
            Ok(None)
        }
        Source::All(list) => {
            let mut values = Vec::new();
            for s in list {
                if let Some(v) = eval(s, scope)? {
                    values.push(v.into_owned());
                }
            }
            Ok((!values.is_empty()).then_some(Cow::Owned(Value::Array(values))))
        }
        Source::Piped {
            from,
            transforms,
            default,
        } => {
            let mut value = eval(from, scope)?;
            for t in transforms {
                value = match value {
                    Some(v) if !v.is_null() => apply(t, &v, scope)?.filter(present).map(Cow::Owned),
                    other => other,
                };
            }
            Ok(value.or_else(|| default.as_ref().map(Cow::Borrowed)))
        }
    }
}

fn apply(t: &Transform, v: &Value, scope: &Scope<'_>) -> Result<Option<Value>, String> {
    let named =
        |name: &str, r: Result<Value, String>| r.map(Some).map_err(|e| format!("{name}: {e}"));
    match t {
        Transform::String => named("string", transform::to_string(v)),
        Transform::Integer => named("integer", transform::to_integer(v)),
        Transform::Upper => named("upper", transform::map_str(v, str::to_uppercase)),
        Transform::Lower => named("lower", transform::map_str(v, str::to_lowercase)),
        Transform::Trim => named("trim", transform::map_str(v, |s| s.trim().to_owned())),
        Transform::Timestamp => named("timestamp", transform::timestamp(v)),
        Transform::Sha256Email => {
            transform::sha256_email(v).map_err(|e| format!("sha256_email: {e}"))
        }
        Transform::Array => Ok(Some(match v {
            Value::Array(_) => v.clone(),
            other => Value::Array(vec![other.clone()]),
        })),
        Transform::UrlParam(name) => {
            transform::url_param(v, name).map_err(|e| format!("url_param: {e}"))
        }
        Transform::MinorUnits { currency } => {
            let code = match eval(currency, scope)?.as_deref() {
                Some(Value::String(s)) => s.trim().to_uppercase(),
                Some(other) => {
                    return Err(format!(
                        "minor_units: the currency is {}, not a code",
                        transform::kind(other)
                    ));
                }
                None => return Err("minor_units: no currency to convert the amount with".into()),
            };
            let amount = transform::decimal(v).map_err(|e| format!("minor_units: {e}"))?;
            transform::minor_units(amount, &code)
                .map(|n| Some(Value::Number(n.into())))
                .map_err(|e| format!("minor_units: {e}"))
        }
        Transform::Subtract(operands) => {
            let mut d = transform::decimal(v).map_err(|e| format!("subtract: {e}"))?;
            for operand in operands {
                if let Some(x) = eval(operand, scope)? {
                    d -= transform::decimal(&x).map_err(|e| format!("subtract: {e}"))?;
                }
            }
            Ok(Some(transform::decimal_value(d)))
        }
        Transform::Multiply(operand) => {
            let d = transform::decimal(v).map_err(|e| format!("multiply: {e}"))?;
            let x = eval(operand, scope)?.ok_or("multiply: the operand is missing")?;
            let x = transform::decimal(&x).map_err(|e| format!("multiply: {e}"))?;
            let product = d
                .checked_mul(x)
                .ok_or("multiply: the product is too large")?;
            Ok(Some(transform::decimal_value(product)))
        }
    }
}
