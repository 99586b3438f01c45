//! Blueprints: the mapping from Signal events to a destination's requests, as data.
//!
//! A blueprint is a JSON document stored per integration. This module compiles it
//! (refusing a bad one with errors that point at the offending entry) and interprets
//! it. It knows nothing about Button: the destination's call names and required fields
//! come in as [`CallSpec`]s, and the default Button blueprint lives with the catalog.
//!
//! ```json
//! {"version": 1,
//!  "consent": {"from": "event.context.consent.canonical.marketing"},
//!  "mappings": [
//!    {"name": "order", "events": ["purchase", "order_completed"], "call": "order.create",
//!     "fields": [
//!       {"to": "order_id", "from": ["event.properties.order_id", "event.properties.transaction_id"],
//!        "transform": ["string"], "required": {"message": "...", "hint": "..."}},
//!       {"to": "currency", "from": "event.properties.currency", "transform": ["trim", "upper"]},
//!       {"to": "line_items", "each": ["event.properties.products", "event.properties.items"],
//!        "fields": [{"to": "identifier", "from": ["item.product_id", "item.sku"]}]}]}]}
//! ```
//!
//! A field takes its value `from` a source (a path, a quoted literal `"'USD'"`, a nested
//! `{"from", "transform", "default"}`, or `{"all": [...]}` collecting several paths into
//! a list), from a list of sources tried in order (the first present one wins), from a
//! literal `value`, or builds a list with `each` over a source list and its own
//! `fields`, where `item.` names the current element. A value is missing when it is
//! absent, `null`, `""` or `[]`. Then `transform`s apply in order; when the value is
//! missing, `warn_if_missing` reports a warning, and `default` fills it in or else
//! `required` reports an error. Transforms: `string`, `integer`, `upper`, `lower`, `trim`,
//! `timestamp`, `sha256_email`, `array`, `{"minor_units": {"currency": source}}`,
//! `{"url_param": "name"}`, `{"subtract": [sources]}`, `{"multiply": source}`.

pub mod path;
pub mod transform;

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use path::{Path, Root, Scope};

pub const VERSION: u64 = 1;

/// A destination call a mapping may target, and the fields it needs.
#[derive(Debug, Clone, Copy)]
pub struct CallSpec {
    pub name: &'static str,
    /// Destination fields the mapping must produce (`line_items[].total` is a field of
    /// each element of the list `line_items`).
    pub required: &'static [&'static str],
    /// Every destination field the call accepts.
    pub fields: &'static [&'static str],
}

impl CallSpec {
    /// Whether the call accepts destination field `path`; a field listed as `x.*`
    /// accepts every key under `x` (free-form maps such as `attributes`).
    pub fn accepts(&self, path: &str) -> bool {
        self.fields.iter().any(|f| match f.strip_suffix('*') {
            Some(prefix) => path.starts_with(prefix) && path.len() > prefix.len(),
            None => *f == path,
        })
    }
}

/// A problem found in a blueprint, located by a path into the document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct BlueprintError {
    /// Where in the document, e.g. `mappings[0].fields[3].transform[1]`.
    pub at: String,
    pub message: String,
}

/// Something to report about one destination field of one event: a missing required
/// field, a value that could not be transformed, or a warning.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, ToSchema)]
pub struct Issue {
    pub field: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

/// What a blueprint makes of one event.
#[derive(Debug, Clone, PartialEq)]
pub enum Mapped {
    /// No mapping of the blueprint takes this event.
    NotSubscribed,
    /// Subscribed, but the consent rule keeps it from this destination.
    Filtered {
        mapping: String,
        call: String,
        reason: String,
    },
    /// The request body for `call`.
    Request {
        mapping: String,
        call: String,
        body: Value,
        warnings: Vec<Issue>,
    },
    /// Subscribed, but the event lacks what the request needs.
    Failed {
        mapping: String,
        call: String,
        errors: Vec<Issue>,
        warnings: Vec<Issue>,
    },
}

#[derive(Debug, Clone)]
pub struct Blueprint {
    consent: Option<Source>,
    mappings: Vec<Mapping>,
    by_event: HashMap<String, usize>,
}

#[derive(Debug, Clone)]
struct Mapping {
    name: String,
    call: String,
    fields: Vec<Field>,
}

#[derive(Debug, Clone)]
struct Field {
    to: Vec<String>,
    /// `to` joined with dots, for messages.
    name: String,
    value: FieldValue,
    /// Used when the value is missing (after any warning is noted).
    default: Option<Value>,
    required: Option<Report>,
    warn: Option<Report>,
}

#[derive(Debug, Clone)]
struct Report {
    message: String,
    hint: Option<String>,
}

#[derive(Debug, Clone)]
enum FieldValue {
    Source(Source),
    Each { over: Source, fields: Vec<Field> },
}

#[derive(Debug, Clone)]
enum Source {
    Path(Path),
    Literal(Value),
    First(Vec<Source>),
    All(Vec<Source>),
    Piped {
        from: Box<Source>,
        transforms: Vec<Transform>,
        default: Option<Value>,
    },
}

#[derive(Debug, Clone)]
enum Transform {
    String,
    Integer,
    Upper,
    Lower,
    Trim,
    Timestamp,
    Sha256Email,
    Array,
    MinorUnits { currency: Source },
    UrlParam(String),
    Subtract(Vec<Source>),
    Multiply(Source),
}

const TRANSFORMS: &str = "string, integer, upper, lower, trim, timestamp, sha256_email, array, {\"minor_units\": {\"currency\": source}}, {\"url_param\": \"name\"}, {\"subtract\": [sources]}, {\"multiply\": source}";

impl Blueprint {
    /// Compiles a blueprint document for a destination offering `calls`. Every problem
    /// found is reported, each with its location.
    pub fn compile(doc: &Value, calls: &[CallSpec]) -> Result<Self, Vec<BlueprintError>> {
        let mut c = Compiler::default();
        let blueprint = c.blueprint(doc, calls);
        match (blueprint, c.errors.is_empty()) {
            (Some(b), true) => Ok(b),
            _ => Err(c.errors),
        }
    }

    /// Whether some mapping takes events named `name`.
    pub fn subscribes(&self, name: &str) -> bool {
        self.by_event.contains_key(name)
    }

    /// The event names the blueprint takes.
    pub fn events(&self) -> impl Iterator<Item = &str> {
        self.by_event.keys().map(String::as_str)
    }

    /// Maps one event. `config` is the integration's non-secret config (`config.` paths).
    pub fn map(&self, event: &Value, config: &Value) -> Mapped {
        let Some(mapping) = event_name(event)
            .and_then(|name| self.by_event.get(name))
            .map(|&i| &self.mappings[i])
        else {
            return Mapped::NotSubscribed;
        };
        let scope = Scope {
            event,
            config,
            item: None,
        };
        let (name, call) = (mapping.name.clone(), mapping.call.clone());
        if let Some(consent) = &self.consent
            && let Ok(Some(Value::Bool(false))) =
                eval(consent, &scope).as_ref().map(|v| v.as_deref())
        {
            return Mapped::Filtered {
                mapping: name,
                call,
                reason: "no marketing consent: context.consent.canonical.marketing is false".into(),
            };
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
                mapping: name,
                call,
                body: Value::Object(out),
                warnings,
            }
        } else {
            Mapped::Failed {
                mapping: name,
                call,
                errors,
                warnings,
            }
        }
    }
}

/// The name a blueprint subscribes by: `event` of a `track` call (or of an event
/// without a `type`).
pub fn event_name(event: &Value) -> Option<&str> {
    match event.get("type").and_then(Value::as_str) {
        None | Some("track") => event.get("event").and_then(Value::as_str),
        Some(_) => None,
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

/// Compiles a document, collecting every error with its location.
#[derive(Default)]
struct Compiler {
    errors: Vec<BlueprintError>,
}

impl Compiler {
    fn err(&mut self, at: &str, message: impl Into<String>) {
        self.errors.push(BlueprintError {
            at: at.to_owned(),
            message: message.into(),
        });
    }

    fn object<'v>(
        &mut self,
        v: &'v Value,
        at: &str,
        allowed: &[&str],
    ) -> Option<&'v Map<String, Value>> {
        let Some(obj) = v.as_object() else {
            self.err(at, format!("must be an object, not {}", transform::kind(v)));
            return None;
        };
        for key in obj.keys() {
            if !allowed.contains(&key.as_str()) {
                self.err(
                    &join(at, key),
                    format!("unknown key; expected one of: {}", allowed.join(", ")),
                );
            }
        }
        Some(obj)
    }

    fn blueprint(&mut self, doc: &Value, calls: &[CallSpec]) -> Option<Blueprint> {
        let obj = self.object(
            doc,
            "",
            &["version", "name", "description", "consent", "mappings"],
        )?;
        match obj.get("version").and_then(Value::as_u64) {
            Some(VERSION) => {}
            _ => self.err("version", format!("must be {VERSION}")),
        }
        let consent = obj.get("consent").and_then(|c| {
            let o = self.object(c, "consent", &["from"])?;
            match o.get("from") {
                Some(from) => self.source(from, "consent.from", false),
                None => {
                    self.err("consent.from", "is required: the path of the consent flag");
                    None
                }
            }
        });
        let Some(list) = obj.get("mappings").and_then(Value::as_array) else {
            self.err("mappings", "must be a list of mappings");
            return None;
        };
        if list.is_empty() {
            self.err("mappings", "must hold at least one mapping");
        }
        let mut mappings = Vec::new();
        let mut by_event = HashMap::new();
        let mut names = HashSet::new();
        for (i, m) in list.iter().enumerate() {
            let at = format!("mappings[{i}]");
            let Some(mapping) = self.mapping(m, &at, calls) else {
                continue;
            };
            if !names.insert(mapping.0.name.clone()) {
                self.err(
                    &join(&at, "name"),
                    format!("{:?} is the name of another mapping", mapping.0.name),
                );
            }
            for event in mapping.1 {
                if let Some(&other) = by_event.get(&event) {
                    self.err(
                        &join(&at, "events"),
                        format!("{event:?} is already taken by mappings[{other}]; an event can have one mapping"),
                    );
                } else {
                    by_event.insert(event, mappings.len());
                }
            }
            mappings.push(mapping.0);
        }
        Some(Blueprint {
            consent,
            mappings,
            by_event,
        })
    }

    fn mapping(
        &mut self,
        m: &Value,
        at: &str,
        calls: &[CallSpec],
    ) -> Option<(Mapping, Vec<String>)> {
        let obj = self.object(m, at, &["name", "description", "events", "call", "fields"])?;
        let name = match obj.get("name").and_then(Value::as_str) {
            Some(n) if !n.trim().is_empty() => n.to_owned(),
            _ => {
                self.err(&join(at, "name"), "is required: a name for the mapping");
                String::new()
            }
        };
        let mut events = Vec::new();
        match obj.get("events").and_then(Value::as_array) {
            Some(list) if !list.is_empty() => {
                for (i, e) in list.iter().enumerate() {
                    match e.as_str() {
                        Some(s) if !s.trim().is_empty() => events.push(s.to_owned()),
                        _ => self.err(&format!("{at}.events[{i}]"), "must be an event name"),
                    }
                }
            }
            _ => self.err(
                &join(at, "events"),
                "must list the event names this mapping takes",
            ),
        }
        let call = obj.get("call").and_then(Value::as_str).unwrap_or_default();
        let spec = calls.iter().find(|c| c.name == call);
        if spec.is_none() {
            let known: Vec<&str> = calls.iter().map(|c| c.name).collect();
            self.err(
                &join(at, "call"),
                format!(
                    "{call:?} is not a call of this destination; expected one of: {}",
                    known.join(", ")
                ),
            );
        }
        let fields_at = join(at, "fields");
        let errors_before = self.errors.len();
        let fields = match obj.get("fields").and_then(Value::as_array) {
            Some(list) => self.fields(list, &fields_at, false),
            None => {
                self.err(&fields_at, "must be a list of fields");
                Vec::new()
            }
        };
        if let Some(spec) = spec {
            let mut produced = Vec::new();
            destination_paths(&fields, "", &mut produced);
            // Fields that failed to compile produce nothing; checking the call's
            // required fields then would only repeat those errors.
            if self.errors.len() == errors_before {
                for required in spec.required {
                    if !produced.iter().any(|p| p == required) {
                        self.err(
                            &fields_at,
                            format!("{call} needs the field {required:?}, which no entry produces"),
                        );
                    }
                }
            }
            for p in &produced {
                if !spec.accepts(p) {
                    self.err(
                        &fields_at,
                        format!(
                            "{call} has no field {p:?}; its fields are: {}",
                            spec.fields.join(", ")
                        ),
                    );
                }
            }
        }
        Some((
            Mapping {
                name,
                call: call.to_owned(),
                fields,
            },
            events,
        ))
    }

    fn fields(&mut self, list: &[Value], at: &str, in_item: bool) -> Vec<Field> {
        let mut fields = Vec::new();
        let mut seen = HashSet::new();
        for (i, f) in list.iter().enumerate() {
            let at = format!("{at}[{i}]");
            if let Some(field) = self.field(f, &at, in_item) {
                if !seen.insert(field.to.join(".")) {
                    self.err(
                        &join(&at, "to"),
                        format!("{:?} is set by an earlier entry", field.to.join(".")),
                    );
                }
                fields.push(field);
            }
        }
        fields
    }

    fn field(&mut self, f: &Value, at: &str, in_item: bool) -> Option<Field> {
        let obj = self.object(
            f,
            at,
            &[
                "to",
                "from",
                "value",
                "each",
                "fields",
                "transform",
                "default",
                "required",
                "warn_if_missing",
                "description",
            ],
        )?;
        let to: Vec<String> = match obj.get("to").and_then(Value::as_str) {
            Some(t)
                if !t.is_empty()
                    && t.split('.').all(|s| {
                        !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    }) =>
            {
                t.split('.').map(str::to_owned).collect()
            }
            _ => {
                self.err(
                    &join(at, "to"),
                    "is required: the destination field, dotted (customer.email_sha256)",
                );
                return None;
            }
        };
        let kinds = ["from", "value", "each"]
            .iter()
            .filter(|k| obj.contains_key(**k))
            .count();
        if kinds != 1 {
            self.err(at, "needs exactly one of from, value or each");
            return None;
        }
        if obj.contains_key("fields") != obj.contains_key("each") {
            self.err(
                at,
                "each and fields go together: each names the list, fields map one element",
            );
        }
        let required = obj
            .get("required")
            .and_then(|r| self.report(r, &join(at, "required"), true));
        let warn = obj
            .get("warn_if_missing")
            .and_then(|r| self.report(r, &join(at, "warn_if_missing"), false));
        let value = if let Some(over) = obj.get("each") {
            if obj.contains_key("transform") {
                self.err(
                    at,
                    "each takes no transform; put transforms on the element's fields",
                );
            }
            let over = self.source(over, &join(at, "each"), in_item)?;
            let list = obj
                .get("fields")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or_default();
            let fields = self.fields(list, &join(at, "fields"), true);
            FieldValue::Each { over, fields }
        } else {
            let from = match (obj.get("from"), obj.get("value")) {
                (Some(from), _) => self.source(from, &join(at, "from"), in_item)?,
                (None, Some(v)) => Source::Literal(v.clone()),
                (None, None) => unreachable!("checked above"),
            };
            FieldValue::Source(self.transformed(from, obj, at, in_item))
        };
        let default = obj.get("default").cloned();
        Some(Field {
            name: to.join("."),
            to,
            value,
            default,
            required,
            warn,
        })
    }

    /// `from` with the entry's transforms (a field's default is the field's own).
    fn transformed(
        &mut self,
        from: Source,
        obj: &Map<String, Value>,
        at: &str,
        in_item: bool,
    ) -> Source {
        match self.piped(from, obj, at, in_item) {
            Source::Piped {
                from, transforms, ..
            } if transforms.is_empty() => *from,
            Source::Piped {
                from, transforms, ..
            } => Source::Piped {
                from,
                transforms,
                default: None,
            },
            other => other,
        }
    }

    fn piped(&mut self, from: Source, obj: &Map<String, Value>, at: &str, in_item: bool) -> Source {
        let transforms = match obj.get("transform") {
            None => Vec::new(),
            Some(Value::Array(list)) => list
                .iter()
                .enumerate()
                .filter_map(|(i, t)| self.transform(t, &format!("{at}.transform[{i}]"), in_item))
                .collect(),
            Some(_) => {
                self.err(&join(at, "transform"), "must be a list of transforms");
                Vec::new()
            }
        };
        let default = obj.get("default").cloned();
        if transforms.is_empty() && default.is_none() {
            from
        } else {
            Source::Piped {
                from: Box::new(from),
                transforms,
                default,
            }
        }
    }

    fn report(&mut self, r: &Value, at: &str, allow_true: bool) -> Option<Report> {
        match r {
            Value::Bool(true) if allow_true => Some(Report {
                message: "is required but missing from the event".into(),
                hint: None,
            }),
            Value::Bool(false) if allow_true => None,
            Value::Object(_) => {
                let obj = self.object(r, at, &["message", "hint"])?;
                let message = obj.get("message").and_then(Value::as_str);
                if message.is_none() {
                    self.err(&join(at, "message"), "is required: what to report");
                }
                Some(Report {
                    message: message.unwrap_or_default().to_owned(),
                    hint: obj.get("hint").and_then(Value::as_str).map(str::to_owned),
                })
            }
            _ => {
                self.err(
                    at,
                    if allow_true {
                        "must be true or {\"message\", \"hint\"}"
                    } else {
                        "must be {\"message\", \"hint\"}"
                    },
                );
                None
            }
        }
    }

    fn source(&mut self, v: &Value, at: &str, in_item: bool) -> Option<Source> {
        match v {
            Value::String(s) if s.len() >= 2 && s.starts_with('\'') && s.ends_with('\'') => {
                Some(Source::Literal(Value::String(s[1..s.len() - 1].to_owned())))
            }
            Value::String(s) => match Path::parse(s) {
                Ok(p) if p.root() == Root::Item && !in_item => {
                    self.err(at, format!("{s:?}: item. paths exist only inside each"));
                    None
                }
                Ok(p) => Some(Source::Path(p)),
                Err(e) => {
                    self.err(at, e);
                    None
                }
            },
            Value::Array(list) if !list.is_empty() => {
                let sources: Vec<Source> = list
                    .iter()
                    .enumerate()
                    .filter_map(|(i, s)| self.source(s, &format!("{at}[{i}]"), in_item))
                    .collect();
                (sources.len() == list.len()).then_some(Source::First(sources))
            }
            Value::Object(obj) if obj.contains_key("all") => {
                self.object(v, at, &["all"])?;
                let Some(Value::Array(list)) = obj.get("all") else {
                    self.err(&join(at, "all"), "must be a list of sources");
                    return None;
                };
                let sources: Vec<Source> = list
                    .iter()
                    .enumerate()
                    .filter_map(|(i, s)| self.source(s, &format!("{at}.all[{i}]"), in_item))
                    .collect();
                (sources.len() == list.len()).then_some(Source::All(sources))
            }
            Value::Object(obj) if obj.contains_key("value") => {
                self.object(v, at, &["value"])?;
                Some(Source::Literal(obj["value"].clone()))
            }
            Value::Object(obj) => {
                self.object(v, at, &["from", "transform", "default"])?;
                let Some(from) = obj.get("from") else {
                    self.err(at, "a nested source needs from");
                    return None;
                };
                let from = self.source(from, &join(at, "from"), in_item)?;
                Some(self.piped(from, obj, at, in_item))
            }
            _ => {
                self.err(at, "must be a path (event.properties.x), a quoted literal ('USD'), a list of sources, or {\"from\": ...}");
                None
            }
        }
    }

    fn transform(&mut self, t: &Value, at: &str, in_item: bool) -> Option<Transform> {
        let simple = |name: &str| match name {
            "string" => Some(Transform::String),
            "integer" => Some(Transform::Integer),
            "upper" => Some(Transform::Upper),
            "lower" => Some(Transform::Lower),
            "trim" => Some(Transform::Trim),
            "timestamp" => Some(Transform::Timestamp),
            "sha256_email" => Some(Transform::Sha256Email),
            "array" => Some(Transform::Array),
            _ => None,
        };
        match t {
            Value::String(name) => {
                let found = simple(name);
                if found.is_none() {
                    self.err(
                        at,
                        format!("unknown transform {name:?}; transforms are: {TRANSFORMS}"),
                    );
                }
                found
            }
            Value::Object(obj) if obj.len() == 1 => {
                let (name, arg) = obj.iter().next().expect("one entry");
                let arg_at = join(at, name);
                match name.as_str() {
                    "minor_units" => {
                        let o = self.object(arg, &arg_at, &["currency"])?;
                        let Some(currency) = o.get("currency") else {
                            self.err(
                                &join(&arg_at, "currency"),
                                "is required: where the ISO 4217 currency code is",
                            );
                            return None;
                        };
                        let currency =
                            self.source(currency, &join(&arg_at, "currency"), in_item)?;
                        Some(Transform::MinorUnits { currency })
                    }
                    "url_param" => match arg.as_str() {
                        Some(p) if !p.is_empty() => Some(Transform::UrlParam(p.to_owned())),
                        _ => {
                            self.err(&arg_at, "must name the query parameter");
                            None
                        }
                    },
                    "subtract" => {
                        let Some(list) = arg.as_array() else {
                            self.err(
                                &arg_at,
                                "must be a list of sources to subtract when present",
                            );
                            return None;
                        };
                        let sources: Vec<Source> = list
                            .iter()
                            .enumerate()
                            .filter_map(|(i, s)| self.source(s, &format!("{arg_at}[{i}]"), in_item))
                            .collect();
                        (sources.len() == list.len()).then_some(Transform::Subtract(sources))
                    }
                    "multiply" => self.source(arg, &arg_at, in_item).map(Transform::Multiply),
                    other if simple(other).is_some() => {
                        self.err(
                            at,
                            format!("{other:?} takes no argument; write it as a plain string"),
                        );
                        None
                    }
                    other => {
                        self.err(
                            at,
                            format!("unknown transform {other:?}; transforms are: {TRANSFORMS}"),
                        );
                        None
                    }
                }
            }
            _ => {
                self.err(
                    at,
                    format!(
                        "must be a transform name or a one-key object; transforms are: {TRANSFORMS}"
                    ),
                );
                None
            }
        }
    }
}

fn join(at: &str, key: &str) -> String {
    if at.is_empty() {
        key.to_owned()
    } else {
        format!("{at}.{key}")
    }
}

/// The destination fields a list of fields produces (`line_items`, `line_items[].total`).
fn destination_paths(fields: &[Field], prefix: &str, out: &mut Vec<String>) {
    for f in fields {
        let mut path = prefix.to_owned();
        for (i, segment) in f.to.iter().enumerate() {
            if i > 0 || !prefix.is_empty() {
                path.push('.');
            }
            path.push_str(segment);
            if i + 1 < f.to.len() && !out.contains(&path) {
                out.push(path.clone());
            }
        }
        out.push(path.clone());
        if let FieldValue::Each { fields, .. } = &f.value {
            destination_paths(fields, &format!("{path}[]"), out);
        }
    }
}

#[cfg(test)]
mod tests;
